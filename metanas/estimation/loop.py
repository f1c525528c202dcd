"""Performance estimation: adapt to many fresh tasks and score the query sets.

A warm start is judged the way it will be used: for each task, DARTS
adaptation on the support set from the meta-learned ``(w, alpha)``, then
accuracy on the query set. Reported as mean and 95% confidence interval over
tasks (Student's t), with the accuracy after every adaptation step on request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import torch
from torch.func import vmap
from tqdm import tqdm

from metanas.data.episodes import sample_groups, varies
from metanas.config import MetaConfig
from metanas.meta.inner import InnerLoop, Params, activation_bytes
from metanas.estimation.stats import mean_ci95
from metanas.space.base import is_alpha


@dataclass
class Evaluation:
    accuracies: torch.Tensor  # [tasks] query accuracy after adaptation
    curve: torch.Tensor  # [tasks, steps + 1] query accuracy before and after each step (only [:, -1:] if not traced)
    alphas: Params  # adapted alpha of each task, leading dim = tasks (empty for a child net)
    seconds: torch.Tensor  # [tasks] wall time of adaptation + query prediction per task

    @property
    def mean(self) -> float:
        return mean_ci95(self.accuracies)[0]

    @property
    def ci95(self) -> float:
        return mean_ci95(self.accuracies)[1]

    def summary(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f}% ({self.accuracies.numel()} tasks)"


def evaluate(model, params: Params, taskset, *, tasks: int, inner: InnerLoop, generator: torch.Generator,
             chunk: int = 10, curve: bool = False, progress: bool = False, device="cpu", dist=None,
             skip: int = 0, start=None, memory_budget: float = MetaConfig.memory_budget) -> Evaluation:
    """Adapt ``params`` to ``tasks`` tasks drawn from ``taskset`` with ``generator`` (after drawing and
    dropping ``skip`` tasks, so tasks ``[skip, skip + tasks)`` of the seeded sequence are adapted).
    ``start(params, support_x)``: where each task's adaptation starts (e.g. a set encoder's alpha), default ``params``.

    ``chunk`` tasks are drawn together and adapted together under ``vmap`` (chunk=1 gives honest per-task latency),
    as many of them per vmap call as ``memory_budget`` GB of activations hold (``meta.memory_budget``: a 50-shot
    task of 84 px images can take several GB alone). ``dist`` (a :class:`metanas.training.distributed.Dist`):
    each rank adapts its slice of the same task sequence and every rank gets all tasks' results, in order.
    """

    def one_task(inner, p, sx, sy):  # -> (adapted params, every param stacked over [before, after each step] or [after])
        p = p if start is None else start(p, sx)
        adapted = inner.adapt(model, p, sx, sy, trajectory=curve)
        return adapted if curve else (adapted, {k: v[None] for k, v in adapted.items()})

    def scores(inner, path, qx, qy):  # query accuracy at each point of one task's path: [points]
        # A plain loop, not vmap: the query forward with per-task weights under vmap is a grouped conv,
        # ~2x slower on CPU than one forward per task (measured); the support steps gain from vmap.
        points = next(iter(path.values())).shape[0]
        return torch.stack([(inner.logits(model, {k: v[s] for k, v in path.items()}, qx).argmax(-1) == qy)
                            .float().mean() for s in range(points)])

    def adapt_tasks(inner, sx, sy):  # the tasks of one vmap call: (adapted params, paths), leading dim = tasks
        if sx.shape[0] > 1:
            return vmap(partial(one_task, inner), in_dims=(None, 0, 0))(params, sx, sy)
        return tuple(_unsqueezed(o) for o in one_task(inner, params, sx[0], sy[0]))

    def groups(n):  # [(the inner loop for their ways, a batch of tasks of one shape)]
        if not variable:
            return [(inner, taskset.sample_batch(n, generator))]
        return [(inner.with_ways(ways), task) for ways, task in sample_groups(taskset, n, generator)]

    mine = dist.shard(tasks) if dist is not None else range(tasks)
    for _ in range(skip + mine.start):  # lower ranks' tasks: drawn and dropped, so the sequence is a 1-rank run's
        taskset.sample(generator)
    variable = varies(taskset)  # Meta-Dataset episodes: each group of one shape is a vmap call of its own
    traces, alphas, seconds = [], [], []
    per_image = None  # activation bytes of one support image's inner step
    bar = tqdm(total=len(mine), desc="adapting", leave=False, disable=not progress)
    with torch.no_grad():  # grad() inside adapt is a transform: it ignores this, the query forward does not
        for s in range(mine.start, mine.stop, chunk):
            n = min(chunk, mine.stop - s)
            for task_inner, task in groups(n):
                sx, sy, qx, qy = [t.to(device) for t in task]
                m = sx.shape[0]
                if m > 1 and per_image is None:  # measured once, untimed: a group's tasks differ in images only
                    per_image = activation_bytes(model, sx[0]) / sx.shape[1]
                fit = max(1, int(memory_budget * 2**30 // (per_image * sx.shape[1]))) if m > 1 else 1
                t0 = time.perf_counter()
                parts = [adapt_tasks(task_inner, sx[a:a + fit], sy[a:a + fit]) for a in range(0, m, fit)]
                adapted, path = parts[0] if len(parts) == 1 else \
                    ({k: torch.cat([p[i][k] for p in parts]) for k in parts[0][i]} for i in range(2))
                trace = torch.stack([scores(task_inner, {k: v[i] for k, v in path.items()}, qx[i], qy[i])
                                     for i in range(m)]).cpu()
                seconds += [(time.perf_counter() - t0) / m] * m  # .cpu() above waits for the device: the time is real
                traces.append(trace)
                alphas.append({k: v.cpu() for k, v in adapted.items() if is_alpha(k)})
            bar.update(n)
    bar.close()
    part = (torch.cat(traces), {k: torch.cat([a[k] for a in alphas]) for k in alphas[0]}, torch.tensor(seconds)) \
        if traces else None
    parts = [p for p in (dist.all_gather(part) if dist is not None else [part]) if p is not None]
    trace = torch.cat([p[0] for p in parts])
    return Evaluation(trace[:, -1], trace, {k: torch.cat([p[1][k] for p in parts]) for k in parts[0][1]},
                      torch.cat([p[2] for p in parts]))


def _unsqueezed(params: Params) -> Params:
    return {k: v[None] for k, v in params.items()}
