"""Execution policies: how a supernet runs its choices (``search.policy``).

A search space says *what* can be built (its choice points and their alphas); an execution
policy says *how* the supernet is run on a batch (NNI keeps ``LayerChoice`` apart from the
mixed layer that executes it; quark0/darts's ``MixedOp`` is the one place that mixes an edge).
A policy turns one alpha tensor ``[rows, choices]`` (a row: an edge of a DARTS cell, a layer of
the chain) into the weights the space's layers apply, in one of two forms:

* a dense ``[rows, choices]`` tensor: every choice is computed and weighted (a weight may be 0);
  works per task under ``vmap``, where each task holds its own alpha;
* :class:`Path`: one static choice per row (Python ints, the same for every task of a ``vmap``
  call) and a gate per row whose value is 1 and whose gradient reaches alpha (straight-through):
  only the chosen ops are computed.

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

from metanas.plugins import Registry

POLICIES = Registry("execution policy", key="search.policy")


@dataclass(frozen=True)
class Path:
    """One static choice per row, gated by a straight-through tensor of ones ``[rows]``."""

    index: tuple[int, ...]
    gate: torch.Tensor


@dataclass(frozen=True)
class Sample:
    """Gumbel noise per alpha name, drawn outside ``vmap``, and the choices it selects."""

    noise: dict[str, torch.Tensor]
    index: dict[str, tuple[int, ...]]


@dataclass
class State:
    """What a supernet's forward reads besides its parameters; set by :func:`executing`."""

    temperature: float = 1.0
    sample: Sample | None = None


class Policy:
    name = ""
    samples = False  # needs a Sample per vmap call during meta-training

    def weights(self, name: str, alpha: torch.Tensor, state: State) -> torch.Tensor | Path:
        raise NotImplementedError

    def draw(self, alphas: dict[str, torch.Tensor], generator: torch.Generator) -> Sample | None:
        return None


@POLICIES.register
class Mixture(Policy):
    name = "mixture"

    def weights(self, name, alpha, state):
        return F.softmax(alpha / state.temperature, dim=-1)


@POLICIES.register
class Gumbel(Policy):
    name = "gumbel"
    samples = True

    def weights(self, name, alpha, state):
        if state.sample is not None and name in state.sample.index:
            index = state.sample.index[name]
            soft = F.softmax((alpha + state.sample.noise[name].to(alpha)) / state.temperature, dim=-1)
            picked = soft[torch.arange(len(index)), torch.tensor(index)]
            return Path(index, picked - picked.detach() + 1.0)
        soft = F.softmax(alpha / state.temperature, dim=-1)
        hard = (soft == soft.max(-1, keepdim=True).values).to(soft)  # one_hot(argmax) is data-dependent under vmap
        return hard - soft.detach() + soft

    def draw(self, alphas, generator):
        noise, index = {}, {}
        for name, a in alphas.items():
            u = torch.rand(a.shape, generator=generator).clamp(1e-10, 1 - 1e-7)
            noise[name] = -torch.log(-torch.log(u))
            index[name] = tuple((a.detach().float().cpu() + noise[name]).argmax(-1).tolist())
        return Sample(noise, index)


def create_policy(name: str) -> Policy:
    return POLICIES.get(name)()


class Executed(torch.nn.Module):
    """Base of every supernet: holds its policy and its execution state."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.policy = policy
        self.execution = State()

    def mix(self, name: str, alpha: torch.Tensor) -> torch.Tensor | Path:
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
