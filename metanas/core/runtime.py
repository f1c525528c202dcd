"""Devices, seeds and random-number state (for reproducible and resumable runs)."""

from __future__ import annotations

import random

import numpy as np
import torch

from metanas.core.errors import MetanasError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MetanasError(f"run.device={name} but no CUDA device is available: use run.device=cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(**generators: torch.Generator) -> dict:
    """The global torch and Python RNG states and each named generator's (e.g. sampler=..., policy=...)."""
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            **{k: g.get_state() for k, g in generators.items()}}


def set_rng_state(state: dict, **generators: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    for k, g in generators.items():
        g.set_state(state[k])
