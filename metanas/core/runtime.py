"""Devices, seeds and random-number state (for reproducible and resumable runs)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from metanas.core.errors import MetanasError


DEVICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """The device ``run.device`` (or ``--device``) names, checked against this machine: one line naming the cause and
    the fix for a typo, a missing CUDA or MPS device, or a GPU index the machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise MetanasError("run.device=mps but this machine has no MPS (Apple GPU) device: use run.device=cpu or auto")
        return torch.device("mps")
    index = name.removeprefix("cuda:") if name.startswith("cuda:") else None
    if name != "cuda" and not (index and index.isdigit()):
        raise MetanasError(f"run.device={name!r} is not a device: use {DEVICES}")
    if not torch.cuda.is_available():
        raise MetanasError(f"run.device={name} but no CUDA device is available: use run.device=cpu or auto")
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise MetanasError(f"run.device={name} but this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}: "
                           "use one of those, or cuda (one GPU per rank under torchrun)")
    return torch.device(name)


def set_deterministic(on: bool) -> None:
    """``run.deterministic``: make CUDA as bit-exact as the CPU (deterministic kernels, where torch has one, with a
    warning naming any op that has none; deterministic cuDNN without autotuning; no TF32). Off leaves torch's
    settings as they are. Called once per process, before the first CUDA kernel (``CUBLAS_WORKSPACE_CONFIG`` is
    read when cuBLAS starts)."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


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
