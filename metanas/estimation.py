"""Performance estimation: adapt to many fresh tasks and score the query sets.

A warm start is judged the way it will be used: for each task, DARTS
adaptation on the support set from the meta-learned ``(w, alpha)``, then
accuracy on the query set. Reported as mean and 95% confidence interval over
tasks (Student's t), with the accuracy after every adaptation step on request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
from torch.func import vmap
from tqdm import tqdm

from metanas.inner_loop import InnerLoop, Params
from metanas.space.base import is_alpha

# Offsets from run.seed of the validation, test, adaptation-choice, domain-calibration and set-encoder task
# sequences: every evaluation of a run, and every method compared at the same seed, adapts to the same tasks.
VAL_SEED, TEST_SEED, SELECT_SEED, DOMAIN_SEED, ENCODER_SEED = 1, 2, 3, 4, 5


def mean_ci95(values: torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval of the mean, from Student's t with ``n - 1`` degrees of
    freedom: with few values (a 20-task validation, a 30-task pilot) the normal approximation's 1.96 is too narrow;
    at 600 tasks t is 1.964, so large evaluations read the same. ``nan`` for one value."""
    from scipy.stats import t

    v = values.double()
    n = v.numel()
    # float(): scipy's quantile is a numpy scalar, which torch.load(weights_only=True) refuses in a checkpoint
    return v.mean().item(), float(t.ppf(0.975, n - 1)) * v.std().item() / math.sqrt(n) if n > 1 else float("nan")


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


def paired_difference(a: Evaluation, b: Evaluation) -> tuple[float, float]:
    """Mean and 95% CI half-width of the per-task difference ``a - b`` on the same tasks (a paired comparison:
    the task-to-task spread that both share cancels)."""
    if a.accuracies.shape != b.accuracies.shape:
        raise ValueError("a paired difference needs the same tasks in both evaluations")
    return mean_ci95(a.accuracies - b.accuracies)


def evaluate(model, params: Params, taskset, n_tasks: int, inner: InnerLoop, generator: torch.Generator,
             chunk: int = 10, curve: bool = False, progress: bool = False, device="cpu", dist=None,
             skip: int = 0, start=None) -> Evaluation:
    """Adapt ``params`` to ``n_tasks`` tasks drawn from ``taskset`` with ``generator`` (after drawing and
    dropping ``skip`` tasks, so tasks ``[skip, skip + n_tasks)`` of the seeded sequence are adapted).
    ``start(params, support_x)``: where each task's adaptation starts (e.g. a set encoder's alpha), default ``params``.

    ``chunk`` tasks are adapted together under ``vmap`` (chunk=1 gives honest per-task latency). ``dist`` (a :class:`metanas.distributed.Dist`):
    each rank adapts its slice of the same task sequence and every rank gets all tasks' results, in order.
    """

    def one_task(p, sx, sy):  # -> (adapted params, every param stacked over [before, after each step] or [after])
        p = p if start is None else start(p, sx)
        adapted = inner.adapt(model, p, sx, sy, trajectory=curve)
        return adapted if curve else (adapted, {k: v[None] for k, v in adapted.items()})

    def scores(path, qx, qy):  # query accuracy at each point of one task's path: [points]
        # A plain loop, not vmap: the query forward with per-task weights under vmap is a grouped conv,
        # ~2x slower on CPU than one forward per task (measured); the support steps gain from vmap.
        points = next(iter(path.values())).shape[0]
        return torch.stack([(inner.logits(model, {k: v[s] for k, v in path.items()}, qx).argmax(-1) == qy)
                            .float().mean() for s in range(points)])

    mine = dist.shard(n_tasks) if dist is not None else range(n_tasks)
    for _ in range(skip + mine.start):  # lower ranks' tasks: drawn and dropped, so the sequence is a 1-rank run's
        taskset.sample(generator)
    batched = vmap(one_task, in_dims=(None, 0, 0))
    traces, alphas, seconds = [], [], []
    bar = tqdm(total=len(mine), desc="adapting", leave=False, disable=not progress)
    with torch.no_grad():  # grad() inside adapt is a transform: it ignores this, the query forward does not
        for s in range(mine.start, mine.stop, chunk):
            n = min(chunk, mine.stop - s)
            sx, sy, qx, qy = [t.to(device) for t in taskset.sample_batch(n, generator)]
            t0 = time.perf_counter()
            if n > 1:
                adapted, path = batched(params, sx, sy)
            else:
                adapted, path = (_unsqueezed(o) for o in one_task(params, sx[0], sy[0]))
            trace = torch.stack([scores({k: v[i] for k, v in path.items()}, qx[i], qy[i]) for i in range(n)]).cpu()
            seconds += [(time.perf_counter() - t0) / n] * n  # .cpu() above waits for the device: the time is real
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


def select_adaptation(model, params: Params, taskset, n_tasks: int, inner: InnerLoop, steps: list[int],
                      lr_alphas: list[float], seed: int, device="cpu", dist=None,
                      progress: bool = False) -> tuple[dict, list[dict]]:
    """The adaptation setting (steps, alpha's step) that scores best on ``n_tasks`` tasks of ``taskset``:
    ``(best, table)``, each a ``{"steps", "lr_alpha", "accuracy", "ci95", "arch_gain", "arch_gain_ci95"}`` dict,
    the table in the order tried; ``arch_gain``: the paired gain over alpha step 0 at the same steps (where 0
    is a candidate and this one is not).

    Every candidate adapts the same seeded tasks (common random numbers), so the table is a paired comparison;
    ``lr_alpha = 0`` keeps the architecture fixed, so adapting it is chosen only where it pays on these tasks.
    Empty lists keep ``inner``'s own value; a network without alphas tries its steps only. Ties (within 1e-6)
    go to the candidate tried first (:func:`best_row`). Choose on a validation split: the chosen setting's
    score there is biased upwards.
    """
    if not any(is_alpha(k) for k in params):
        lr_alphas = []
    grid = [(s, a) for s in (steps or [inner.steps]) for a in (lr_alphas or [inner.lr_alpha])]
    table, scores = [], {}
    for s, a in tqdm(grid, desc="choosing the adaptation", leave=False, disable=not progress):
        ev = evaluate(model, params, taskset, n_tasks, replace(inner, steps=s, lr_alpha=a),
                      torch.Generator().manual_seed(seed), device=device, dist=dist)
        scores[s, a] = ev.accuracies
        table.append({"steps": int(s), "lr_alpha": float(a), "accuracy": ev.mean, "ci95": ev.ci95})
    for row in table:  # with alpha step 0 among the candidates: what adapting the architecture gains, paired
        fixed = scores.get((row["steps"], 0.0))
        row["arch_gain"], row["arch_gain_ci95"] = (None, None) if fixed is None or not row["lr_alpha"] \
            else mean_ci95(scores[row["steps"], row["lr_alpha"]] - fixed)
    return best_row(table), table


def first_best(scores: list[float]) -> int:
    """The index of the first score within 1e-6 of the highest: the float32 means of two candidates with the same
    correct answers differ in the ninth digit (one query in 200 tasks of 75 is 6.7e-5), and that noise must not
    pick a later candidate over an equal earlier one. (Rounding both to 1e-6 would still split a tie that
    straddles a rounding boundary.)"""
    top = max(scores)
    return next(i for i, s in enumerate(scores) if s >= top - 1e-6)


def best_row(table: list[dict]) -> dict:
    """The row of highest accuracy, the first tried among ties (:func:`first_best`): a larger step never wins
    over an equal smaller one tried before it."""
    return table[first_best([row["accuracy"] for row in table])]


def rank_agreement(validation: dict[str, list[float]], target: dict[str, list[float]]) -> dict:
    """How well a validation score chooses among methods for a target: each maps a method to its warm starts'
    scores (one per seed, the same seeds in the same order). Kendall's tau between the two over every warm start
    (``tau``, its ``p``) and over the method means (``tau_methods``), the method the validation ranks first
    (``picked``, the first listed on a tie, :func:`first_best`) and its target mean minus the best method's there
    (``regret``, <= 0: what choosing on this validation loses on the target)."""
    from scipy.stats import kendalltau

    methods = list(validation)
    if len(methods) < 2 or set(target) != set(methods) or any(len(validation[m]) != len(target[m]) for m in methods):
        raise ValueError("rank_agreement: the same >= 2 methods on both sides, the same number of scores each")
    mean = lambda scores: {m: sum(v) / len(v) for m, v in scores.items()}
    v_mean, t_mean = mean(validation), mean(target)
    tau, p = kendalltau([a for m in methods for a in validation[m]], [a for m in methods for a in target[m]])
    picked = methods[first_best([v_mean[m] for m in methods])]
    return {"tau": float(tau), "p": float(p), "picked": picked, "regret": t_mean[picked] - max(t_mean.values()),
            "tau_methods": float(kendalltau([v_mean[m] for m in methods], [t_mean[m] for m in methods])[0])}


class ChildNetScorer:
    """A genotype's quality for a task family, with weight sharing (as in ENAS).

    ``build_child(genotype)`` is the child net holding the meta-learned supernet weights it inherits (alpha is
    dropped); it adapts its weights for ``inner.steps`` steps on each task's support set and is scored on
    the query set. Every candidate sees the same seeded sequence of ``tasks`` tasks from ``taskset`` (common random
    numbers: candidates differ by architecture, not by luck of the draw). ``spent`` counts evaluations: tasks
    adapted / ``tasks``, so one candidate scored on all tasks costs 1 whatever the strategy.
    """

    def __init__(self, build_child, taskset, tasks: int, inner: InnerLoop, seed: int, device="cpu"):
        self.build_child, self.taskset = build_child, taskset
        self.tasks, self.inner, self.seed, self.device = tasks, inner, seed, device
        self.spent = 0.0

    def evaluate(self, genotype, start: int = 0, stop: int | None = None) -> Evaluation:
        """``genotype``'s child adapted to tasks ``[start, stop)`` of the sequence."""
        stop = self.tasks if stop is None else stop
        child = self.build_child(genotype).to(self.device)
        ev = evaluate(child, {k: v.detach() for k, v in child.named_parameters()}, self.taskset, stop - start,
                      self.inner, torch.Generator().manual_seed(self.seed), device=self.device, skip=start)
        self.spent += (stop - start) / self.tasks
        return ev

    def accuracies(self, genotype, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Query accuracy of ``genotype``'s child on tasks ``[start, stop)`` of the sequence."""
        return self.evaluate(genotype, start, stop).accuracies


def _unsqueezed(params: Params) -> Params:
    return {k: v[None] for k, v in params.items()}
