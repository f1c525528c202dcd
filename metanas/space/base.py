"""The search-space interface and its registry (:class:`metanas.core.registry.Registry`: ``register_space``, ``create_space``).

A search space owns everything that depends on what can be built: validating its ``search.*``
settings, building the supernet (alphas named ``alpha_*``) and a discrete child, deriving a child's
architecture from alpha, sampling one at random, the decision-vector encoding the discrete search
strategies work on, (de)serialisation, a distance between two architectures, a one-line
description, a drawing, and what an architecture costs. How the supernet is *run* (softmax mixture,
sampled path) is the execution policy's business (:mod:`metanas.policy.execution`), not the space's.

An architecture is whatever the space says it is (a DARTS ``Genotype``, a chain's tuple of layer
choices); nothing outside the space looks inside one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metanas.core.errors import MetanasError
from metanas.core.registry import Registry


def is_alpha(name: str) -> bool:
    """Architecture parameters are named ``alpha_*`` in every space."""
    return name.startswith("alpha_")


def alphas_of(params: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in params.items() if is_alpha(k)}


LEARNED_LR = "lr_"  # prefix of a meta-learned log step size: lr_alpha_op steps alpha_op (inner.learn_lr_alpha)


def is_learned_lr(name: str) -> bool:
    return name.startswith(LEARNED_LR)


def attach_learned_lrs(model: nn.Module, lr_alpha: float) -> None:
    """Give each alpha ``alpha_X [rows, choices]`` of ``model`` a log step size ``lr_alpha_X [rows, 1]``."""
    for k, p in list(model.named_parameters()):
        if is_alpha(k) and "." not in k:
            model.register_parameter(LEARNED_LR + k, nn.Parameter(torch.full((p.shape[0], 1), math.log(lr_alpha))))


def require(ok: bool, key: str, value: Any, rule: str) -> None:
    """The one config-error format: the key, the value, the rule."""
    if not ok:
        raise MetanasError(f"bad value for config key '{key}': {value!r} ({rule})")


class SearchSpace:
    """One search space, configured by a ``SearchConfig`` (``search.*``)."""

    name = ""
    description = ""
    default_ops: list[str] = []
    default_channels = 8

    def __init__(self, cfg):
        self.cfg = cfg
        self.ops = list(cfg.ops) if cfg.ops else list(self.default_ops)
        self.channels = cfg.channels or self.default_channels
        self.validate()

    # -- settings ------------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check the ``search.*`` keys this space reads; raise MetanasError naming the key."""

    def settings(self) -> dict:
        """The ``search.*`` values this space resolved from its defaults (written into checkpoints, so a warm start
        still describes its network after a default changes)."""
        return {"channels": self.channels, "ops": list(self.ops)}

    # -- networks ------------------------------------------------------------------------------------------------
    def supernet(self, n_classes: int, policy, in_channels: int = 1) -> nn.Module:
        raise NotImplementedError

    def child(self, arch, n_classes: int, in_channels: int = 1) -> nn.Module:
        raise NotImplementedError

    def inherit(self, child: nn.Module, params: dict, arch) -> dict:
        """The child's parameters from a supernet's (default: the keys it has, as DARTS names them alike)."""
        return {k: params[k].detach().clone() for k in child.state_dict()}

    # -- architectures ---------------------------------------------------------------------------------------------
    def derive(self, alphas: dict):
        """The discrete architecture that ``alphas`` (a params dict, or its ``alpha_*`` entries) select."""
        raise NotImplementedError

    def random(self, generator: torch.Generator):
        raise NotImplementedError

    def named(self) -> dict[str, Any]:
        """Architectures known by name (``search.genotype: NAME``), e.g. the chain space's ``conv4``."""
        return {}

    def encoding(self):
        """Decision vectors for the discrete strategies: ``decisions``, ``size``, ``encode``, ``decode``,
        ``sample``, ``mutate`` (see :class:`metanas.space.encoding.Encoding`)."""
        raise NotImplementedError

    def to_json(self, arch) -> dict:
        raise NotImplementedError

    def from_json(self, d: dict):
        raise NotImplementedError

    def distance(self, a, b) -> float:
        """Fraction of the decisions on which two architectures differ (0: same, 1: all differ)."""
        enc = self.encoding()
        x, y = enc.encode(a), enc.encode(b)
        return sum(u != v for u, v in zip(x, y)) / max(1, len(x))

    def describe(self, arch) -> str:
        raise NotImplementedError

    def draw(self, arch, title: str | None = None):
        """A matplotlib figure of ``arch``."""
        raise NotImplementedError

    def alpha_labels(self) -> dict[str, tuple[list[str], list[str]]]:
        """Per alpha name: (row labels, column labels), for the alpha plots."""
        raise NotImplementedError

    def choice_wins(self, archs: list) -> dict[str, torch.Tensor]:
        """Per alpha name, ``[rows, choices]``: the fraction of ``archs`` that pick each choice."""
        raise NotImplementedError

    # -- cost ------------------------------------------------------------------------------------------------------
    def cost(self, arch, n_classes: int, image_size: int, in_channels: int = 1) -> float:
        """FLOPs of one image's forward pass through the child ``arch`` (counted by torch's FLOP counter)."""
        from torch.utils.flop_counter import FlopCounterMode

        net = self.child(arch, n_classes, in_channels)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.zeros(2, in_channels, image_size, image_size))
        return counter.get_total_flops() / 2

    def expected_cost(self, alphas: dict, n_classes: int, image_size: int, in_channels: int = 1) -> torch.Tensor:
        """FLOPs per image expected under ``softmax(alpha)``, differentiable in alpha (the cost-aware objective)."""
        raise NotImplementedError

    def reference_cost(self, alphas: dict, n_classes: int, image_size: int, in_channels: int = 1) -> float:
        """What ``meta.cost_weight`` measures cost against (default: the expected cost at uniform alpha), so that
        the weight means the same in every space."""
        uniform = {k: torch.zeros_like(v) for k, v in alphas.items()}
        return float(self.expected_cost(uniform, n_classes, image_size, in_channels))

    # -- specs -----------------------------------------------------------------------------------------------------
    def resolve(self, spec: str | None, seed: int = 0):
        """``search.genotype``: None (the supernet), ``random`` (drawn with ``seed``), a name, or a JSON file."""
        if spec is None:
            return None
        if spec == "random":
            return self.random(torch.Generator().manual_seed(seed))
        if spec in self.named():
            return self.named()[spec]
        return self.read(spec)

    def read(self, path: str | os.PathLike):
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise MetanasError(f"cannot read genotype file {path}: {e}; pass a genotype JSON "
                               "(genotype.json of a run, of metanas search or of metanas export)") from None
        space = d.get("space", "darts") if isinstance(d, dict) else None
        if space != self.name:
            raise MetanasError(f"genotype file {path} is an architecture of the {space!r} space, not of {self.name!r}: "
                               "use one searched in the same space")
        return self.from_json(d)

    def dump(self, arch) -> dict | None:
        """JSON of ``arch`` tagged with this space's name (``None`` for no architecture)."""
        return None if arch is None else {"space": self.name, **self.to_json(arch)}


SPACES = Registry("search space", key="search.space")
register_space = SPACES.register  # a class decorator: registers the space under its ``name``


def create_space(cfg) -> SearchSpace:
    """The space ``cfg.space`` names, configured (and validated) by ``cfg`` (a ``SearchConfig``)."""
    return SPACES.get(cfg.space)(cfg)


def list_spaces() -> list[str]:
    return sorted(SPACES.names())
