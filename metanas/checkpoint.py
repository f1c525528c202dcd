"""Warm starts on disk: the model a config describes, typed warm starts, training state.

* :func:`build_model`: the network a config describes (a supernet, or the child ``search.genotype`` names).
* :class:`WarmStart`: a meta-trained ``(w, alpha)`` with its config, space, ways, family, run id and
  iteration, loaded from a checkpoint path, a run id, or a registered model (``models:/NAME/VERSION``).
  Nothing outside this module reads a checkpoint's raw dict.
* :class:`TrainingState`: what meta-training saves and restores for an exact resume.

Checkpoints are written atomically (temp file, fsync, rename): a process
killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from metanas.config import Config, from_yaml, resolved, to_yaml
from metanas.data.images import ImageFormat
from metanas.errors import MetanasError
from metanas.execution import create_policy
from metanas.files import atomic_write
from metanas.inner_loop import attach_learned_lrs
from metanas.space import SearchSpace, alphas_of, create_space

FORMAT = "metanas-checkpoint"
# 2: search spaces as objects (architectures tagged with their space), policy generator state
# 3: the input's ImageFormat (channels, size, normalisation); version 2 (grayscale only) still reads
VERSION = 3
READS = (2, 3)


def build_model(cfg: Config, n_classes: int, arch: Any = None, in_channels: int = 1
                ) -> tuple[nn.Module, SearchSpace, Any]:
    """``(model, space, arch)``: the supernet, or the child of ``arch`` (default: ``search.genotype``)."""
    space = create_space(cfg.search)
    if arch is None:
        arch = space.resolve(cfg.search.genotype, cfg.run.seed)
    if arch is None:
        model = space.supernet(n_classes, create_policy(cfg.search.policy), in_channels)
        if cfg.inner.learn_lr_alpha:
            attach_learned_lrs(model, cfg.inner.lr_alpha)
        return model, space, None
    return space.child(arch, n_classes, in_channels), space, arch


def _read(path: Path) -> dict:
    if not path.is_file():
        raise MetanasError(f"checkpoint {path} not found: pass --checkpoint PATH or --run-id ID of a meta-training run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file (RuntimeError, KeyError, UnpicklingError...)
        raise MetanasError(f"checkpoint {path} is truncated or not a torch file ({str(e).splitlines()[0][:120]}): "
                           "use another checkpoint or re-run meta-training") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MetanasError(f"{path} is not a metanas checkpoint: pass a file written by python -m metanas.meta_train")
    if state.get("version") not in READS:
        raise MetanasError(f"checkpoint {path} has format version {state.get('version')}, this metanas reads "
                           f"{' and '.join(map(str, READS))}: re-run meta-training with this version")
    return _migrate(state)


def _migrate(state: dict) -> dict:
    """What older checkpoints of a format version this metanas reads lack, filled in as they were trained."""
    if "image" not in state:  # version 2: grayscale, unnormalised, read as its family says
        state["image"] = _family_image(state["family"]).to_dict()
    saved = OmegaConf.create(state["config"])
    if "search" in saved and "pools" not in saved.search:  # saved before the chain's pooling choice: max only
        saved.search.pools = ["max"]
        state["config"] = OmegaConf.to_yaml(saved)
    return state


def _family_image(name: str) -> ImageFormat:
    from metanas.data import load_family

    try:
        return load_family(name).image
    except MetanasError:  # the family's YAML is not on this machine: Omniglot's format
        return ImageFormat(1, 28, invert=True)


def checkpoint_path(output_dir: str, run_id: str) -> Path:
    return Path(output_dir).resolve() / "checkpoints" / f"{run_id}.pt"


def resolve(ref: str | os.PathLike | None, output_dir: str = "runs") -> Path:
    """A checkpoint file from a path, a run id (under ``output_dir``), or ``None`` (the newest checkpoint under
    ``output_dir``). A registered model (``models:/NAME/V``) is resolved by :func:`metanas.api.load`."""
    if ref is None:
        found = sorted((Path(output_dir) / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise MetanasError(f"no checkpoint under {Path(output_dir).resolve()}/checkpoints: run "
                               "python -m metanas.meta_train first, or pass --checkpoint PATH / --run-id ID")
        return found[-1]
    ref = str(ref)
    if ref.endswith(".pt") or os.sep in ref or Path(ref).is_file():
        return Path(ref)
    return checkpoint_path(output_dir, ref)


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

    @classmethod
    def load(cls, ref: str | os.PathLike | None = None, output_dir: str = "runs") -> "WarmStart":
        """From a checkpoint path, a run id, or the newest one under ``output_dir``."""
        path = resolve(ref, output_dir)
        state = _read(path)
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
        return cls(cfg, space, model, state["ways"], state["family"], state["run_id"], state["iteration"], image,
                   arch, path)

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.model.named_parameters()}

    @property
    def is_supernet(self) -> bool:
        return self.arch is None

    def derive(self, params: dict | None = None):
        """The architecture ``params``' alphas select (default: the warm start's own); a child's fixed one."""
        if not self.is_supernet:
            return self.arch
        return self.space.derive(alphas_of(self.params if params is None else params))

    def child(self, arch, params: dict | None = None) -> nn.Module:
        """The discrete child of ``arch`` holding the supernet weights it inherits (from ``params`` if given)."""
        if not self.is_supernet:
            raise MetanasError("a genotype can only be cut out of a supernet warm start; this checkpoint is already "
                               f"a fixed architecture ({self.space.describe(self.arch)})")
        net = self.space.child(arch, self.ways, self.image.channels)
        net.load_state_dict(self.space.inherit(net, self.params if params is None else params, arch))
        return net

    def fixed(self, arch) -> "WarmStart":
        """This warm start cut down to the child of ``arch`` (e.g. a genotype found by ``metanas search``)."""
        return WarmStart(self.config, self.space, self.child(arch), self.ways, self.family, self.run_id,
                         self.iteration, self.image, arch, self.path)

    def check_family(self, family) -> None:
        """A family this warm start can adapt to: the same ways and channels (one clear line if not)."""
        if family.ways != self.ways:
            raise MetanasError(f"the warm start {self.path} was meta-trained for {self.ways}-way tasks but "
                               f"{family.name} is {family.ways}-way: pick a {self.ways}-way family or meta-train "
                               f"with task.family={family.name}")
        if family.channels != self.image.channels:
            raise MetanasError(f"the warm start {self.path} takes {self.image.channels}-channel images "
                               f"({self.family}) but {family.name} has {family.channels}: pick a family with "
                               f"channels: {self.image.channels} or meta-train with task.family={family.name}")

    def to(self, device) -> "WarmStart":
        self.model.to(device)
        return self


@dataclass
class TrainingState:
    """Everything an exact resume needs, besides the config (which must be the same)."""

    run_id: str
    family: str
    ways: int
    iteration: int
    params: dict
    optimizer: dict
    skipped: int
    rng: dict
    arch: dict | None  # the derived (supernet) or fixed (child) architecture, as the space's JSON
    image: dict  # the input's ImageFormat, as a dict
    alpha_history: list = field(default_factory=list)

    def save(self, path: str | os.PathLike, cfg: Config) -> Path:
        state = {"format": FORMAT, "version": VERSION, "config": to_yaml(resolved(cfg)), **self.__dict__}
        return atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | os.PathLike, cfg: Config) -> "TrainingState":
        state = _read(Path(path))
        if state["config"] != to_yaml(resolved(cfg)):
            raise MetanasError(f"--resume {path}: the checkpoint was written with a different config; resume with "
                               "the same --config and overrides as the original run")
        return cls(**{k: state[k] for k in cls.__dataclass_fields__ if k in state})
