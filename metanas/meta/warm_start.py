"""A warm start: a meta-learned ``(w, alpha)`` (or a fixed architecture's ``w``) with what it was trained for.

:class:`WarmStart` is the typed view of a checkpoint that every caller uses (the API, the commands, export,
the model registry): its config, search space, network, ways, family, run id, iteration and input format,
loaded from a checkpoint path, a run id, or (through :func:`metanas.api.load`) a registered model
(``models:/NAME/VERSION``). The file format itself is :mod:`metanas.meta.checkpoint`'s business.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metanas.meta.checkpoint import read, resolve
from metanas.config import Config, from_yaml, replace as replace_config
from metanas.data.images import ImageFormat
from metanas.core.errors import MetanasError
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import HEAD, InnerLoop
from metanas.space import SearchSpace, alphas_of, build_model, create_space


@dataclass
class WarmStart:
    """A meta-learned ``(w, alpha)`` (or a fixed architecture's ``w``) and what it was trained for."""

    config: Config
    space: SearchSpace
    model: nn.Module
    ways: int
    family: str
    run_id: str
    iteration: int
    image: ImageFormat  # what the network takes (channels, size, normalisation), from the meta-train split
    arch: Any = None  # a child net's fixed architecture; None for a supernet
    path: Path | None = None
    # how a new task adapts: the checkpoint's (chosen on validation tasks by inner.select_* or metanas
    # select-adaptation, or set by adapt-domain), else the config's inner.eval_*; what every caller's inner loop reads
    adaptation: Adaptation | None = None
    # where ``metanas adapt-domain`` moved alpha to a new domain ({"family", "split", "tasks", ...}); None: as meta-trained
    domain: dict | None = None

    @classmethod
    def load(cls, ref: str | os.PathLike | None = None, output_dir: str = "runs") -> "WarmStart":
        """From a checkpoint path, a run id, or the newest one under ``output_dir``."""
        path = resolve(ref, output_dir)
        state = read(path)
        cfg = from_yaml(state["config"])
        space = create_space(cfg.search)
        arch = space.from_json(state["arch"]) if cfg.search.genotype and state.get("arch") else None
        image = ImageFormat.from_dict(state["image"])
        model, space, arch = build_model(cfg, state["ways"], arch, image.channels)
        try:
            model.load_state_dict(state["params"])
        except RuntimeError as e:
            raise MetanasError(f"{path}: its weights do not match the search space in its own config "
                               f"({str(e).splitlines()[0][:160]}): the file is damaged or was edited") from None
        adaptation = Adaptation.from_dict(state["adaptation"]) if state.get("adaptation") else None
        return cls(cfg, space, model, state["ways"], state["family"], state["run_id"], state["iteration"], image,
                   arch, path, adaptation, state.get("domain"))

    def __post_init__(self):
        if self.adaptation is None:
            self.adaptation = Adaptation.from_config(self.config)

    def with_adaptation(self, adaptation: Adaptation) -> "WarmStart":
        """This warm start (the same network) adapting with ``adaptation``."""
        return dataclasses.replace(self, adaptation=adaptation)

    def with_config(self, overrides: dict) -> "WarmStart":
        """This warm start (the same network) with ``overrides`` (dotted keys, e.g. ``{"run.device": "cpu"}``) in
        a new, validated config (:func:`metanas.config.replace`)."""
        return dataclasses.replace(self, config=replace_config(self.config, overrides))

    def inner_loop(self, adaptation: Adaptation | None = None, ways: int | None = None) -> InnerLoop:
        """How a new task adapts: ``adaptation`` (default: :attr:`adaptation`), to tasks of ``ways`` classes (default:
        its own; others need a prototype head); a fixed architecture has no alpha to step, so its alpha step is 0."""
        adaptation = self.adaptation if adaptation is None else adaptation
        if not self.is_supernet:
            adaptation = adaptation.replace(lr_alpha=0.0)
        return InnerLoop.for_adaptation(self.config, self.ways if ways is None else ways, adaptation)

    @property
    def variable_ways(self) -> bool:
        """Whether it adapts to any number of ways: its head is set from each task's prototypes (``inner.head``)."""
        return self.config.inner.head == "proto"

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.model.named_parameters()}

    @property
    def device(self) -> torch.device:
        """Where the network's weights are (the tasks' tensors go there)."""
        return next(self.model.parameters()).device

    @property
    def is_supernet(self) -> bool:
        return self.arch is None

    def derive(self, params: dict | None = None):
        """The architecture ``params``' alphas select (default: the warm start's own); a child's fixed one."""
        if not self.is_supernet:
            return self.arch
        return self.space.derive(alphas_of(self.params if params is None else params))

    def child(self, arch, params: dict | None = None) -> nn.Module:
        """The discrete child of ``arch`` holding the supernet weights it inherits (from ``params`` if given), on the
        warm start's device."""
        if not self.is_supernet:
            raise MetanasError("a genotype can only be cut out of a supernet warm start; this checkpoint is already "
                               f"a fixed architecture ({self.space.describe(self.arch)})")
        params = self.params if params is None else params
        net = self.space.child(arch, len(params[HEAD[1]]), self.image.channels).to(self.device)  # a task's ways
        net.load_state_dict(self.space.inherit(net, params, arch))
        return net

    def fixed(self, arch) -> "WarmStart":
        """This warm start cut down to the child of ``arch`` (e.g. a genotype found by ``metanas search``)."""
        return dataclasses.replace(self, model=self.child(arch), arch=arch, domain=None)

    def check_family(self, family) -> None:
        """A family this warm start can adapt to: no more ways than its head has (any with a prototype head), and its
        channels (one clear line if not)."""
        if family.ways > self.ways and not self.variable_ways:
            raise MetanasError(f"the warm start {self.path} was meta-trained for {self.ways}-way tasks with a fixed "
                               f"head but {family.name} is {family.ways}-way: pick a family of at most {self.ways} "
                               "ways, or meta-train with inner.head=proto (any ways)")
        if family.channels != self.image.channels:
            raise MetanasError(f"the warm start {self.path} takes {self.image.channels}-channel images "
                               f"({self.family}) but {family.name} has {family.channels}: pick a family with "
                               f"channels: {self.image.channels} or meta-train with task.family={family.name}")

    def to(self, device) -> "WarmStart":
        self.model.to(device)
        return self
