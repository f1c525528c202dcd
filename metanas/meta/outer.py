"""The outer loop: meta-learn the initial ``(w, alpha)`` across tasks.

* ``maml``: the gradient of the query loss after adaptation w.r.t. the initial
  parameters, differentiating through the inner DARTS steps (second order).
* ``fomaml``: the same with inner gradients treated as constants, so the
  meta-gradient is the query-loss gradient at the adapted parameters.
* ``reptile``: adapt on support + query, the meta-gradient is the difference
  between the initial and the adapted parameters (Nichol et al. 2018).

Tasks of a meta-batch are processed together with ``torch.func.vmap``
(``meta.task_chunk`` bounds how many at a time, trading speed for memory; 0 picks it from
``meta.memory_budget``);
``vectorize=False`` loops instead, which the tests use as the reference.
The meta-learner owns the optimizer; the model owns neither loss nor optimizer.
An execution policy that samples (``gumbel``) gets one sample per vmap call, drawn here, outside
``vmap``, from the meta-learner's own seeded generator (saved with every checkpoint).
With ``meta.cost_weight``, the expected cost of the architecture under alpha (a differentiable
function of alpha, from the search space) is added to alpha's meta-objective.
Under torchrun each rank computes the mean over its share of the meta-batch and
``reduce`` (:meth:`metanas.training.distributed.Dist.all_reduce_mean`) averages it over
ranks before the update, so every rank applies the same step.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import grad_and_value, vmap

from metanas.config import Config
from metanas.core.errors import MetanasError
from metanas.policy.execution import executing
from metanas.meta.inner import HEAD, InnerLoop, Params, activation_bytes
from metanas.space.base import alphas_of, is_alpha

POLICY_SEED = 3  # offset from run.seed of the generator that draws the execution policy's samples


class NonFiniteError(MetanasError):
    pass


def _accuracy(logits, y):
    return (logits.argmax(-1) == y).float().mean()


class Episodes(list):
    """A meta-batch of tasks of several shapes (Meta-Dataset episodes): ``[(ways, batched Task)]``, one group per
    shape, each a ``vmap`` call of its own (:func:`metanas.data.episodes.bucket_tasks`)."""


class MetaLearner:
    max_nonfinite = 5  # consecutive skipped steps before the run stops

    def __init__(self, model, cfg: Config, ways: int,
                 reduce: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
                 cost: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None):
        self.model, self.cfg, self.ways = model, cfg, ways
        self.reduce = reduce  # mean over ranks of gradients and metrics; None: one process
        self.cost = cost  # alphas -> expected cost relative to the space's reference (for meta.cost_weight)
        self.inner = InnerLoop.for_meta_training(cfg, ways)
        self.generator = torch.Generator().manual_seed(cfg.run.seed + POLICY_SEED)
        named = dict(model.named_parameters())
        weights = [p for k, p in named.items() if not is_alpha(k)]
        alphas = [p for k, p in named.items() if is_alpha(k)]
        groups = [{"params": weights, "lr": cfg.meta.lr, "name": "weights"}]
        if alphas:
            groups.append({"params": alphas, "lr": cfg.meta.lr_alpha, "name": "alpha"})
        self.optimizer = torch.optim.Adam(groups)
        self.nonfinite = 0  # consecutive
        self.skipped = 0  # total
        self._auto_chunk: int | None = None  # meta.task_chunk=0: estimated once, on the first meta-batch

    def params(self) -> Params:
        return {k: p.detach() for k, p in self.model.named_parameters()}

    # -- per-task objectives (pure functions of params and one task) --------------------------------------------
    def _inner(self, alpha_frozen: bool) -> InnerLoop:
        return self.inner.weights_only() if alpha_frozen else self.inner

    def _query_objective(self, params, sx, sy, qx, qy, inner):
        adapted = inner.adapt(self.model, params, sx, sy, second_order=self.cfg.meta.algorithm == "maml")
        logits = inner.logits(self.model, adapted, qx)
        return F.cross_entropy(logits, qy), _accuracy(logits, qy).detach()

    def _reptile_delta(self, params, sx, sy, qx, qy, inner):
        x, y = torch.cat([sx, qx]), torch.cat([sy, qy])
        adapted = inner.adapt(self.model, params, x, y)
        logits = inner.logits(self.model, adapted, x)
        # a prototype head replaces the classifier per task (any ways): nothing of it moves the meta-learned one
        delta = {k: torch.zeros_like(params[k]) if inner.head == "proto" and k in HEAD else params[k] - adapted[k]
                 for k in params}
        return delta, (F.cross_entropy(logits, y).detach(), _accuracy(logits, y).detach())

    def task_gradients(self, params, task, alpha_frozen=False, vectorize=True, ways: int | None = None):
        """Per-task meta-gradients, stacked on a leading task dim, plus per-task (loss, accuracy); ``ways``: the
        tasks' ways where they are not the meta-learner's (a prototype head)."""
        inner = self._inner(alpha_frozen)
        inner = inner if ways is None else inner.with_ways(ways)
        if self.cfg.meta.algorithm == "reptile":
            fn = lambda p, *t: self._reptile_delta(p, *t, inner)
        else:
            fn = grad_and_value(lambda p, *t: self._query_objective(p, *t, inner), has_aux=True)
        if vectorize:
            return vmap(fn, in_dims=(None, 0, 0, 0, 0))(params, *task)
        outs = [fn(params, *(t[b] for t in task)) for b in range(task[0].shape[0])]
        grads = {k: torch.stack([o[0][k] for o in outs]) for k in params}
        return grads, tuple(torch.stack([o[1][i] for o in outs]) for i in range(2))

    def task_bytes(self, task) -> int:
        """Activation memory of one task's meta-gradient, estimated from the tensors autograd saves in a plain
        forward of its support and its query set (first order: one inner step's graph at a time; second order:
        all of them)."""
        sx, _, qx, _ = (t[0] for t in task)
        steps = self.inner.steps + 1 if self.cfg.meta.algorithm == "maml" else 1
        return steps * activation_bytes(self.model, sx) + activation_bytes(self.model, qx)

    def chunk_size(self, task) -> int:
        """``meta.task_chunk``, or (0) as many tasks per vmap call as ``meta.memory_budget`` GB of activations
        hold, estimated once by :meth:`task_bytes`."""
        B = task[0].shape[0]
        if self.cfg.meta.task_chunk:
            return self.cfg.meta.task_chunk
        if self._auto_chunk is None:
            self._auto_chunk = max(1, min(B, int(self.cfg.meta.memory_budget * 2**30 // max(1, self.task_bytes(task)))))
        return self._auto_chunk

    def meta_gradient(self, task, alpha_frozen=False, vectorize=True):
        """Mean meta-gradient over the meta-batch, :meth:`chunk_size` tasks per vmap call; a meta-batch of
        :class:`Episodes` (tasks of several shapes) is the task-weighted mean over its groups."""
        if isinstance(task, Episodes):
            parts = [(t[0].shape[0], self._meta_gradient(t, alpha_frozen, vectorize, ways)) for ways, t in task]
            total = sum(n for n, _ in parts)
            grads = {k: sum(n * g[k] for n, (g, _, _) in parts) / total for k in parts[0][1][0]}
            return (grads, sum(n * loss for n, (_, loss, _) in parts) / total,
                    sum(n * acc for n, (_, _, acc) in parts) / total)
        return self._meta_gradient(task, alpha_frozen, vectorize)

    def _meta_gradient(self, task, alpha_frozen, vectorize, ways=None):
        params = self.params()
        B = task[0].shape[0]
        chunk = self.chunk_size(task)
        total, losses, accs = None, [], []
        policy = getattr(self.model, "policy", None)
        for s in range(0, B, chunk):
            part = tuple(t[s:s + chunk] for t in task)
            # one sample per vmap call (see metanas/execution.py), drawn whether or not it is then vectorized
            sample = policy.draw(alphas_of(params), self.generator) if policy is not None and policy.samples else None
            with executing(self.model, sample=sample):
                g, (loss, acc) = self.task_gradients(params, part, alpha_frozen, vectorize, ways)
            g = {k: v.sum(0) for k, v in g.items()}
            total = g if total is None else {k: total[k] + g[k] for k in g}
            losses.append(loss)
            accs.append(acc)
        grads = {k: v / B for k, v in total.items()}
        if self.cost is not None and self.cfg.meta.cost_weight and not alpha_frozen:
            for k, g in self._cost_gradient(params).items():
                grads[k] = grads[k] + g
        return grads, torch.cat(losses).mean(), torch.cat(accs).mean()  # tensors: read on the host only when logged

    def _cost_gradient(self, params) -> Params:
        """Gradient of ``meta.cost_weight x expected cost / reference cost`` w.r.t. each alpha."""
        alphas = {k: v.detach().requires_grad_() for k, v in alphas_of(params).items()}
        penalty = self.cfg.meta.cost_weight * self.cost(alphas)
        # an alpha that costs nothing (the chain's pooling) gets a zero gradient
        grads = torch.autograd.grad(penalty, list(alphas.values()), allow_unused=True, materialize_grads=True)
        return dict(zip(alphas, grads))

    def step(self, task, iteration: int) -> dict:
        """One meta-update; returns its metrics as tensors on the device (``loss``, ``accuracy``; the caller reads
        them when it logs) and the skipped-step count. Non-finite gradients skip the step.

        One host sync per step, the finiteness test: every gradient's and the loss's finiteness are stacked on the
        device and read once (a test counts the syncs of a step)."""
        alpha_frozen = iteration < self.cfg.meta.warmup
        grads, loss, acc = self.meta_gradient(task, alpha_frozen)
        if self.reduce is not None:
            # Metrics travel with the gradients (one collective), and the finiteness test below runs on the
            # reduced values: a NaN on any rank is a NaN on all, so every rank skips the same steps.
            out = self.reduce({**grads, "metric/loss": loss, "metric/accuracy": acc})
            loss, acc = out.pop("metric/loss"), out.pop("metric/accuracy")
            grads = out
        finite = torch.stack([torch.isfinite(g).all() for g in grads.values()] + [torch.isfinite(loss)]).all()
        if not finite:
            self.nonfinite += 1
            self.skipped += 1
            if self.nonfinite >= self.max_nonfinite:
                raise NonFiniteError(
                    f"{self.nonfinite} meta-steps in a row had a non-finite loss or gradient (iteration {iteration}): "
                    "lower meta.lr / inner.lr / inner.lr_alpha; the last good checkpoint is kept")
            return {"loss": loss, "accuracy": acc, "skipped_steps": self.skipped}
        self.nonfinite = 0
        for k, p in self.model.named_parameters():
            p.grad = None if (alpha_frozen and is_alpha(k)) else grads[k]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss, "accuracy": acc, "skipped_steps": self.skipped}
