"""Warm starts on disk: build the model a config describes, save and load checkpoints.

Checkpoints are written atomically (temp file, fsync, rename): a process
killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from metanas.config import Config, from_yaml
from metanas.errors import MetanasError
from metanas.space import Conv4, Genotype, Network, genotype_from_json, random_genotype

FORMAT = "metanas-checkpoint"
VERSION = 1


def build_model(cfg: Config, n_classes: int, genotype: Genotype | None = None) -> Network | Conv4:
    """The model a config describes; ``genotype`` overrides ``search.genotype`` (a checkpoint's own)."""
    s = cfg.search
    if s.space == "conv4":
        return Conv4(n_classes, s.channels)
    if genotype is None and s.genotype == "random":
        genotype = random_genotype(s.ops, s.nodes, s.k, torch.Generator().manual_seed(cfg.run.seed))
    elif genotype is None and s.genotype:
        genotype = read_genotype(s.genotype)
    if genotype is not None and {len(genotype.normal), len(genotype.reduce)} != {s.nodes * s.k}:
        raise MetanasError(f"the genotype has {len(genotype.normal)} (op, input) pairs per cell but this search space "
                           f"has {s.nodes} nodes x k={s.k} inputs: use a genotype searched in the same space")
    return Network(n_classes, C=s.channels, cells=s.cells, nodes=s.nodes, ops=s.ops,
                   stem_multiplier=s.stem_multiplier, genotype=genotype)


def read_genotype(path: str | os.PathLike) -> Genotype:
    try:
        return genotype_from_json(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise MetanasError(f"cannot read genotype file {path}: {e}; pass a genotype JSON "
                           "(genotype.json of a run, of metanas search or of metanas export)") from None


def child_of(cfg: Config, params: dict, genotype: Genotype, n_classes: int) -> Network:
    """The discrete child of ``genotype`` with the supernet weights ``params`` it has (names are shared)."""
    if cfg.search.space != "darts" or cfg.search.genotype:
        raise MetanasError("a genotype can only be cut out of a DARTS supernet warm start; this checkpoint is "
                           f"{'conv4' if cfg.search.space == 'conv4' else 'already a fixed child net'}")
    child = build_model(cfg, n_classes, genotype)
    child.load_state_dict({k: params[k].detach().clone() for k in child.state_dict()})
    return child


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a crash
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MetanasError(f"checkpoint {path} not found: pass --checkpoint PATH or --run-id ID of a meta-training run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file (RuntimeError, KeyError, UnpicklingError...)
        raise MetanasError(f"checkpoint {path} is truncated or not a torch file ({str(e).splitlines()[0][:120]}): "
                           "use another checkpoint or re-run meta-training") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MetanasError(f"{path} is not a metanas checkpoint: pass a file written by python -m metanas.meta_train")
    if state.get("version") != VERSION:
        raise MetanasError(f"checkpoint {path} has format version {state.get('version')}, this metanas reads "
                           f"{VERSION}: re-run meta-training with this version")
    return state


def model_from_checkpoint(state: dict, path="checkpoint") -> tuple[Network, Config]:
    cfg = from_yaml(state["config"])
    fixed = genotype_from_json(state["genotype"]) if cfg.search.genotype and state.get("genotype") else None
    model = build_model(cfg, state["ways"], fixed)
    try:
        model.load_state_dict(state["params"])
    except RuntimeError as e:
        raise MetanasError(f"{path}: its weights do not match the search space in its own config "
                           f"({str(e).splitlines()[0][:160]}): the file is damaged or was edited") from None
    return model, cfg
