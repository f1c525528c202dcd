"""Execution policies: how a supernet runs its choices (``search.policy``).

A search space says *what* can be built (its choice points and their alphas); an execution
policy says *how* the supernet is run on a batch (NNI keeps ``LayerChoice`` apart from the
mixed layer that executes it; quark0/darts's ``MixedOp`` is the one place that mixes an edge).
A policy turns one alpha tensor ``[rows, choices]`` (a row: an edge of a DARTS cell, a layer of
the chain) into a :class:`Choice`, the one object the space's layers read (DARTS' ``MixedOp``,
NNI's ``LayerChoice``), in one of three forms:

* dense: ``[rows, choices]`` weights; every choice is computed and weighted (a weight may be 0);
  works per task under ``vmap``, where each task holds its own alpha;
* sampled: one static choice per row (Python ints, the same for every task of a ``vmap`` call) and
  a gate per row whose value is 1 and whose gradient reaches alpha (straight-through): only the
  chosen ops are computed;
* child: a discrete child net's fixed choices (no alpha, no gate), made by the space itself.

A space computes a row with :meth:`Choice.mix` (the weighted sum, or the picked candidate) or
reads :meth:`Choice.picked` / :attr:`Choice.gate` where its layers run a choice their own way
(the chain's sliced kernels); it never looks at which policy made the choice.

Policies:

* ``mixture`` (DARTS): ``softmax(alpha / T)`` over all choices.
* ``gumbel`` (GDAS, Dong & Yang 2019): one choice per row sampled by hard Gumbel-softmax,
  ``argmax(alpha + g)``, straight-through gradient ``softmax((alpha + g) / T)``. ``vmap`` refuses
  random ops, and a sampled choice must be a Python int to skip the other ops, so the noise is drawn
  *outside* the vmapped function from the meta-learner's seeded generator (saved in every checkpoint),
  **once per vmap call** (``meta.task_chunk`` tasks, the whole meta-batch by default), and reused by
  every inner step and the query of those tasks: the tasks of a chunk train one path together. A
  per-task sample would need ``meta.task_chunk=1`` (no batching). Without a sample (evaluation,
  adaptation), each task runs the argmax of its own alpha, straight-through, as GDAS derives its child.

The temperature ``T`` (``inner.temperature`` annealed to ``inner.final_temperature`` over the inner
steps) is set per step by the inner loop through :func:`executing`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from metanas.core.registry import Registry

POLICIES = Registry("execution policy", key="search.policy")


@dataclass(frozen=True)
class Choice:
    """A choice point's decision for each of its rows: dense weights, a sampled path, or a child's fixed choice."""

    weights: torch.Tensor | None = None  # dense: [rows, choices]
    index: tuple[int, ...] | None = None  # sampled or child: the one choice per row (None: a child built only its own)
    gate: torch.Tensor | None = None  # sampled: [rows] straight-through ones

    @classmethod
    def dense(cls, weights: torch.Tensor) -> "Choice":
        return cls(weights=weights)

    @classmethod
    def sampled(cls, index, gate: torch.Tensor) -> "Choice":
        return cls(index=tuple(index), gate=gate)

    @classmethod
    def child(cls, index=None) -> "Choice":
        """A child net's choice: ``index`` per row, or ``None`` when the child built only its chosen candidates."""
        return cls(index=None if index is None else tuple(index))

    @property
    def is_dense(self) -> bool:
        return self.weights is not None

    @property
    def is_sampled(self) -> bool:
        return self.gate is not None

    @property
    def is_child(self) -> bool:
        return self.weights is None and self.gate is None

    def picked(self, row: int) -> int:
        """The one choice computed on ``row`` (sampled or child)."""
        return self.index[row]

    def mix(self, row: int, candidates, start=0):
        """``start`` plus row ``row``'s output, from ``candidates`` (``{choice: thunk}``, in order): every one
        weighted (dense), only the picked one times its gate (sampled), or every one the child built (child)."""
        out = start
        for c, compute in candidates.items():
            if self.weights is not None:
                out = out + self.weights[row, c] * compute()
            elif self.index is None or self.index[row] == c:
                out = out + (compute() if self.gate is None else self.gate[row] * compute())
        return out


@dataclass(frozen=True)
class Sample:
    """Gumbel noise per alpha name, drawn outside ``vmap``, and the choices it selects."""

    noise: dict[str, torch.Tensor]
    index: dict[str, tuple[int, ...]]  # the choice of each row, as Python ints (to run only that op)
    rows: dict[str, torch.Tensor]  # the same choices as a tensor (to pick their weights without a host copy)


@dataclass
class State:
    """What a supernet's forward reads besides its parameters; set by :func:`executing`."""

    temperature: float = 1.0
    sample: Sample | None = None


class Policy:
    name = ""
    samples = False  # needs a Sample per vmap call during meta-training

    def weights(self, name: str, alpha: torch.Tensor, state: State) -> Choice:
        raise NotImplementedError

    def draw(self, alphas: dict[str, torch.Tensor], generator: torch.Generator) -> Sample | None:
        return None


@POLICIES.register
class Mixture(Policy):
    name = "mixture"

    def weights(self, name, alpha, state):
        return Choice.dense(F.softmax(alpha / state.temperature, dim=-1))


@POLICIES.register
class Gumbel(Policy):
    name = "gumbel"
    samples = True

    def weights(self, name, alpha, state):
        if state.sample is not None and name in state.sample.index:
            index, rows = state.sample.index[name], state.sample.rows[name].to(alpha.device, non_blocking=True)
            soft = F.softmax((alpha + state.sample.noise[name].to(alpha, non_blocking=True)) / state.temperature, -1)
            picked = soft[torch.arange(len(index), device=alpha.device), rows]
            return Choice.sampled(index, picked - picked.detach() + 1.0)
        soft = F.softmax(alpha / state.temperature, dim=-1)
        hard = (soft == soft.max(-1, keepdim=True).values).to(soft)  # one_hot(argmax) is data-dependent under vmap
        return Choice.dense(hard - soft.detach() + soft)

    def draw(self, alphas, generator):
        """Noise drawn on the CPU from ``generator`` (so a CPU and a GPU run draw the same); on a GPU it is
        pinned and copied without blocking, and the choices of every alpha come back in one device read."""
        pin = next(iter(alphas.values())).device.type == "cuda"
        noise = {}
        for name, a in alphas.items():
            u = torch.rand(a.shape, generator=generator).clamp(1e-10, 1 - 1e-7)
            noise[name] = -torch.log(-torch.log(u))
            noise[name] = noise[name].pin_memory() if pin else noise[name]
        picks = torch.cat([(a.detach().float() + noise[n].to(a.device, non_blocking=True)).argmax(-1)
                           for n, a in alphas.items()]).tolist()  # the sample's one host sync
        index, rows, start = {}, {}, 0
        for name, a in alphas.items():
            index[name] = tuple(picks[start:start + a.shape[0]])
            rows[name] = torch.tensor(index[name])
            rows[name] = rows[name].pin_memory() if pin else rows[name]
            start += a.shape[0]
        return Sample(noise, index, rows)


def create_policy(name: str) -> Policy:
    return POLICIES.get(name)()


class Executed(torch.nn.Module):
    """Base of every supernet: holds its policy and its execution state."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.policy = policy
        self.execution = State()

    def mix(self, name: str, alpha: torch.Tensor) -> Choice:
        return self.policy.weights(name, alpha, self.execution)


@contextlib.contextmanager
def executing(model, **changes):
    """Temporarily change a supernet's execution state (temperature, sample); no-op on a child."""
    if not isinstance(model, Executed):
        yield
        return
    old = model.execution
    model.execution = replace(old, **changes)
    try:
        yield model.execution
    finally:
        model.execution = old
