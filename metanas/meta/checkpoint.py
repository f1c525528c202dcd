"""Checkpoints on disk: the file format, reading (with migrations of older versions) and writing.

* :func:`read`: a checkpoint's dict, checked and migrated to the current version. Only this module and
  :class:`metanas.meta.warm_start.WarmStart` (the typed view every caller uses) read a checkpoint's raw dict.
* :class:`TrainingState`: what meta-training saves and restores for an exact resume.
* :func:`write_adaptation`: the adaptation setting chosen for a warm start, kept in its checkpoint.
* :func:`write_domain`: a copy of a checkpoint whose alpha was moved to a new domain (``metanas adapt-domain``).
* :func:`resolve`, :func:`checkpoint_path`: where a run's checkpoint is.

Checkpoints are written atomically (temp file, fsync, rename): a process
killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from metanas.config import Config, experiment, from_yaml, resolved, to_yaml
from metanas.data.images import ImageFormat
from metanas.core.errors import MetanasError, describe
from metanas.core.files import atomic_write

FORMAT = "metanas-checkpoint"
# 2: search spaces as objects (architectures tagged with their space), policy generator state
# 3: the input's ImageFormat (channels, size, normalisation); version 2 (grayscale only) still reads
VERSION = 3
READS = (2, 3)


def read(path: Path) -> dict:
    """The checkpoint at ``path``, checked (format, version) and migrated to what this metanas reads."""
    if path.is_dir():
        raise MetanasError(f"checkpoint {path} is a folder: pass the .pt file of a meta-training run "
                           "(RUN/checkpoints/RUN_ID.pt), or --run-id ID")
    if not path.is_file():
        raise MetanasError(f"checkpoint {path} not found: pass --checkpoint PATH or --run-id ID of a meta-training run")
    if path.stat().st_size == 0:
        raise MetanasError(f"checkpoint {path} is empty (0 bytes): "
                           "use another checkpoint or re-run meta-training")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file (RuntimeError, KeyError, UnpicklingError...)
        raise MetanasError(f"checkpoint {path} is truncated or not a torch file ({_cause(path, e)}): "
                           "use another checkpoint or re-run meta-training") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MetanasError(f"{path} is not a metanas checkpoint: pass a file written by python -m metanas.meta_train")
    if state.get("version") not in READS:
        raise MetanasError(f"checkpoint {path} has format version {state.get('version')}, this metanas reads "
                           f"{' and '.join(map(str, READS))}: re-run meta-training with this version")
    _check_entries(path, state)
    return _migrate(state)


def _cause(path: Path, e: Exception) -> str:
    """Why torch could not read ``path``, in a few words: a checkpoint is a zip archive (torch.save's format); an
    image, a text or random bytes is not, and torch's own message then speaks of weights_only or pickles."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(8)
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):  # not a zip, nor a legacy torch pickle
        kinds = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image"}
        kind = next((k for magic, k in kinds.items() if head.startswith(magic)), None)
        return f"it is {kind}" if kind else f"not a zip archive; it starts with {head!r}"
    return describe(e, 120)


# entry -> (types it may have, what it is): a file with the format's tag but not these was damaged or edited
ENTRIES = {"config": (str, "the config's YAML"), "params": (dict, "the weights"), "ways": (int, "the ways"),
           "family": (str, "the task family"), "run_id": (str, "the run id"), "iteration": (int, "the iteration"),
           "image": (dict, "the input format"), "adaptation": ((dict, type(None)), "the adaptation"),
           "arch": ((dict, list, str, type(None)), "the architecture")}


def _check_entries(path: Path, state: dict) -> None:
    """Every entry a reader uses is there with its type (``image`` only from version 3 on)."""
    damaged = f"checkpoint {path} is damaged or was edited"
    fix = "use another checkpoint or re-run meta-training"
    for key, (types, what) in ENTRIES.items():
        if key not in state:
            if key in ("image", "adaptation", "arch") and (key != "image" or state["version"] == 2):
                continue
            raise MetanasError(f"{damaged}: it has no '{key}' entry ({what}): {fix}")
        if not isinstance(state[key], types) or isinstance(state[key], bool):
            raise MetanasError(f"{damaged}: its '{key}' entry ({what}) is a {type(state[key]).__name__}: {fix}")
    try:
        saved = OmegaConf.create(state["config"])
    except Exception as e:
        raise MetanasError(f"{damaged}: its config is not YAML ({describe(e)}): {fix}") from None
    if not isinstance(saved, DictConfig):
        raise MetanasError(f"{damaged}: its config is not a mapping of sections: {fix}")
    image = state.get("image") or {}
    if "image" in state and not (image.get("channels") in (1, 3) and isinstance(image.get("size"), int)):
        raise MetanasError(f"{damaged}: its input format {image} has no channels (1 or 3) and size: {fix}")
    adaptation = state.get("adaptation")
    if adaptation and not all(isinstance(adaptation.get(k), (int, float)) for k in ("steps", "lr_alpha")):
        raise MetanasError(f"{damaged}: its adaptation {adaptation} has no numeric steps and lr_alpha: {fix}")


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


def _on_cpu(value):
    """``value`` with every tensor in it (dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


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
    # the adaptation chosen on validation tasks ({"steps", "lr_alpha", ...}), which the warm start adapts with
    adaptation: dict | None = None

    def save(self, path: str | os.PathLike, cfg: Config) -> Path:
        """Written with every tensor on the CPU, so a machine without the training run's GPU reads it."""
        state = {"format": FORMAT, "version": VERSION, "config": to_yaml(resolved(cfg)), **_on_cpu(self.__dict__)}
        return atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | os.PathLike, cfg: Config) -> "TrainingState":
        state = read(Path(path))
        # the experiment must be the same; the machine may differ (a run started on a GPU resumes on the CPU)
        if experiment(from_yaml(state["config"])) != experiment(resolved(cfg)):
            raise MetanasError(f"--resume {path}: the checkpoint was written with a different config; resume with "
                               "the same --config and overrides as the original run")
        return cls(**{k: state[k] for k in cls.__dataclass_fields__ if k in state})


def write_adaptation(path: str | os.PathLike, adaptation: dict) -> Path:
    """Keep ``adaptation`` (``{"steps", "lr_alpha", ...}``, chosen on validation tasks) in the checkpoint at
    ``path``: the warm start then adapts with it (atomic: a killed process leaves the old file)."""
    state = read(Path(path))
    state["adaptation"] = dict(adaptation)
    return atomic_write(path, lambda f: torch.save(state, f))


def write_domain(path: str | os.PathLike, out: str | os.PathLike, params: dict, *, arch: dict, domain: dict,
                 adaptation: dict) -> Path:
    """A copy of the checkpoint at ``path`` at ``out`` with the alphas of ``params`` (the rest of its weights are
    the same), its derived architecture ``arch`` (the space's JSON), ``domain`` (what calibrated the alphas) and the
    ``adaptation`` (``{"steps", "lr_alpha"}``) the domain's tasks adapt with."""
    from metanas.space.base import is_alpha

    state = read(Path(path))
    state["params"] = {k: params[k].detach().cpu().clone() if is_alpha(k) else v
                       for k, v in state["params"].items()}
    state["arch"], state["domain"], state["adaptation"] = arch, dict(domain), dict(adaptation)
    if Path(out).is_dir():
        raise MetanasError(f"--out {out} is a folder: pass the new checkpoint's file path, e.g. {Path(out) / 'domain.pt'}")
    try:
        return atomic_write(out, lambda f: torch.save(state, f))
    except OSError as e:  # a parent that is a file, no permission, a full disk
        raise MetanasError(f"cannot write the checkpoint {out} ({describe(e)}): pass --out a path in a writable "
                           "folder") from None
