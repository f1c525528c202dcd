"""The network a config describes: a supernet run by its execution policy, or the child of a fixed architecture."""

from __future__ import annotations

from typing import Any

from torch import nn

from metanas.policy.execution import create_policy
from metanas.space.base import SearchSpace, attach_learned_lrs, create_space


def build_model(cfg, n_classes: int, arch: Any = None, in_channels: int = 1) -> tuple[nn.Module, SearchSpace, Any]:
    """``(model, space, arch)`` of a :class:`metanas.config.Config`: the supernet of ``search.*`` (with its
    ``search.policy``, and learned alpha step sizes with ``inner.learn_lr_alpha``), or the child of ``arch``
    (default: the architecture ``search.genotype`` names; ``arch`` is then returned)."""
    space = create_space(cfg.search)
    if arch is None:
        arch = space.resolve(cfg.search.genotype, cfg.run.seed)
    if arch is None:
        model = space.supernet(n_classes, create_policy(cfg.search.policy), in_channels)
        if cfg.inner.learn_lr_alpha:
            attach_learned_lrs(model, cfg.inner.lr_alpha)
        return model, space, None
    return space.child(arch, n_classes, in_channels), space, arch
