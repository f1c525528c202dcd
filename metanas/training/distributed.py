"""Scale out with torchrun: one process per rank, each meta-batch and each evaluation split across ranks.

``torchrun`` (= ``python -m torch.distributed.run``) starts the processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without
them (a plain ``python -m metanas.meta_train``) :func:`init` returns a one-rank :class:`Dist` whose
collectives are the identity, so the training script has one code path.

How the work is split, and why it is exactly testable: every rank draws the *same* global meta-batch
of B tasks from one generator seeded identically on all ranks and keeps its contiguous slice
(:meth:`Dist.shard`), so each rank adapts different tasks while together they adapt exactly the tasks
of a 1-process run. Drawing the tasks a rank drops costs ~1-2 ms each (index sampling and a stack of
uint8 images), small next to a meta-step. The mean over ranks of the per-rank mean meta-gradients is
the mean over the B tasks; with W = 2 ranks and B a power of two it is even the same bits as one
process with ``meta.task_chunk = B/2`` (the same per-task gradients summed in the same order, and
dividing by powers of two is exact), which tests/test_distributed.py checks. Other chunkings sum in another order:
~1e-7 relative differences in tiny gradient entries, which Adam's normalisation and the inner loop
amplify (measured on the smoke config: 5e-7 after one step, 5e-4 after eight) -- the run is the same,
the bits are not. Evaluations split their tasks the same way and gather the per-task results.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as tdist

from metanas.config import Config
from metanas.core.errors import MetanasError
from metanas.core.runtime import resolve_device, set_deterministic

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Dist:
    """This process's place among the ranks, and the few collectives metanas needs."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs to MLflow, writes checkpoints, shows progress and prints."""
        return self.rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous slice of n items (sizes differ by at most one; rank r before rank r+1)."""
        return range(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def all_reduce_mean(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean over ranks of each tensor, in one collective (one flat buffer, not one call per tensor)."""
        if self.world == 1:
            return tensors
        dtype = torch.float32
        for v in tensors.values():
            dtype = torch.promote_types(dtype, v.dtype)
        flat = torch.cat([v.reshape(-1).to(self.device, dtype) for v in tensors.values()])
        with self._collective("all_reduce of the meta-gradients"):
            tdist.all_reduce(flat)  # SUM: gloo has no AVG
        flat /= self.world
        out, offset = {}, 0
        for k, v in tensors.items():
            out[k] = flat[offset:offset + v.numel()].view_as(v).to(v.dtype)
            offset += v.numel()
        return out

    def all_gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable; tensors on the CPU), in rank order."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        with self._collective("gathering results"):
            tdist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (what the others pass is ignored)."""
        if self.world == 1:
            return obj
        box = [obj]
        with self._collective("broadcast from rank 0"):
            tdist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn):
        """``fn()`` on rank 0 and its result on every rank; its MetanasError, too, so all ranks fail together."""
        if self.world == 1:
            return fn()
        outcome = None
        if self.is_main:
            try:
                outcome = (True, fn())
            except MetanasError as e:
                outcome = (False, str(e))
        ok, value = self.broadcast(outcome)
        if not ok:
            raise MetanasError(value)
        return value

    def any_rank(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        with self._collective("the stop vote"):
            tdist.all_reduce(t)
        return t.item() > 0

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Start every rank from rank 0's parameters (as DDP does): same seed is not a promise across machines."""
        if self.world == 1:
            return
        params = [p for p in module.parameters()]
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        with self._collective("broadcast of the initial parameters"):
            tdist.broadcast(flat, src=0)
        offset = 0
        with torch.no_grad():
            for p in params:
                p.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()

    def close(self) -> None:
        if self.world > 1 and tdist.is_initialized():
            tdist.destroy_process_group()

    @contextlib.contextmanager
    def _collective(self, what: str):
        """Turn a collective's failure (a peer's socket closed, or ``run.dist_timeout`` passed) into one line."""
        try:
            yield
        except RuntimeError as e:  # DistBackendError and gloo's errors are RuntimeErrors
            detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise MetanasError(
                f"rank {self.rank}: lost contact with the other ranks during {what} ({detail}); a rank died or the "
                "network failed (see the other ranks' output): fix the cause and resume from the last checkpoint "
                "with --resume RUN_ID") from None


def under_torchrun() -> bool:
    return all(v in os.environ for v in TORCHRUN_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def rank_device(device: torch.device, local_rank: int, local_world: int, backend: str) -> torch.device:
    """This rank's device: with ``cuda`` (no index) local rank ``r`` takes GPU ``r mod device_count``; NCCL needs a
    GPU of its own per rank, so more local ranks than GPUs, or every rank on one named GPU, is refused in one line
    (gloo may share a GPU)."""
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if backend == "nccl" and device.index is not None and local_world > 1:
        raise MetanasError(f"run.device={device} puts all {local_world} local ranks on one GPU, which NCCL refuses: "
                           "use run.device=cuda (one GPU per rank) or run.backend=gloo")
    if backend == "nccl" and local_world > count:
        raise MetanasError(f"{local_world} ranks on this machine but {count} GPU(s): NCCL needs one GPU per rank, so "
                           f"start at most {count} (torchrun --nproc-per-node {count}) or use run.backend=gloo")
    return device if device.index is not None else torch.device("cuda", local_rank % count)


def init(cfg: Config) -> Dist:
    """Join the process group torchrun set up (or return the one-rank Dist); also pick device and threads."""
    device = resolve_device(cfg.run.device)
    set_deterministic(cfg.run.deterministic)
    if not under_torchrun():
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        return Dist(device=device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    backend = cfg.run.backend if cfg.run.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise MetanasError(f"run.backend=nccl needs a CUDA device but run.device resolved to {device}: "
                           "use run.backend=gloo (or auto) on CPU")
    device = rank_device(device, local_rank, local_world, backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # torchrun sets OMP_NUM_THREADS=1 for every worker; on a many-core machine that leaves cores idle, so
    # share them: W local ranks x (cores / W) threads, never more threads than cores (oversubscription
    # makes every rank wait for the slowest at each all-reduce).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(cfg.run.threads or max(1, cores // local_world))
    try:
        tdist.init_process_group(backend, timeout=timedelta(seconds=cfg.run.dist_timeout))
    except (RuntimeError, ValueError) as e:
        raise MetanasError(f"rank {rank}: cannot join the process group with backend {backend} "
                           f"({str(e).strip().splitlines()[0][:200]}): check --rdzv-endpoint / MASTER_ADDR:MASTER_PORT "
                           "and that every node runs the same torchrun command") from None
    return Dist(rank, world, local_rank, local_world, device)


def check_same_experiment(cfg: Config, dist: Dist) -> None:
    """Every rank must run the same experiment (data paths, output dir, threads may differ per machine),
    and the meta-batch must split evenly over the ranks."""
    from metanas.config import experiment

    configs = dist.all_gather(experiment(cfg))
    if len(set(configs)) > 1:
        differ = [r for r, c in enumerate(configs) if c != configs[0]]
        raise MetanasError(f"ranks {differ} were started with another experiment config than rank 0: run the same "
                           "torchrun command, --config and overrides on every machine")
    if cfg.meta.meta_batch % dist.world:
        raise MetanasError(f"meta.meta_batch={cfg.meta.meta_batch} does not split evenly over {dist.world} ranks: "
                           f"use a multiple of {dist.world} (each rank adapts meta_batch / ranks tasks per step)")


def checksum(params: dict[str, torch.Tensor]) -> str:
    """sha256 over the exact bytes of the parameters, in key order: equal iff the parameters are identical."""
    h = hashlib.sha256()
    for k in sorted(params):
        h.update(k.encode())
        h.update(params[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
