"""Meta-training across processes with torchrun (gloo on CPU): real worker processes, real Omniglot, real MLflow.

One 1-process run and one 2-rank run of the same tiny experiment (global meta-batch 4) must end with the same
parameters; a 2-rank run whose rank 1 is SIGKILLed must fail fast and then resume under torchrun to exactly the
uninterrupted 2-rank result.

Bit-exactness holds on the CPU, where these run (the suite hides GPUs); on CUDA it needs run.deterministic=true
(docs/operations.md, GPUs).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, client, run_cli

from metanas.config import load_config
from metanas.training.distributed import Dist, checksum

# meta.task_chunk=2: the 1-process run adapts its 4 tasks 2 at a time, as each of the 2 ranks does, so both sum the
# same per-task gradients in the same order and must agree bit for bit (see metanas/distributed.py).
# run.threads=1: one thread per process, so that the 1-process reference does not fight other tests for the cores.
ARGS = ["--config", "configs/smoke.yaml", "meta.meta_batch=4", "meta.task_chunk=2", "meta.iterations=8",
        "meta.checkpoint_every=2", "meta.eval_every=4", "meta.eval_tasks=3", "meta.test_tasks=3",
        "run.progress=false", "run.dist_timeout=20", "run.threads=1"]


def torchrun(*args, nproc=2) -> subprocess.Popen:
    # --standalone: a local rendezvous on a free port, so runs never collide.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout=240) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_id_of(out: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith("run id:")]  # rank 0 alone prints
    return line.split()[-1]


def params_of(runs_dir: Path, run_id: str) -> dict:
    state = torch.load(runs_dir / "checkpoints" / f"{run_id}.pt", weights_only=True)
    assert state["iteration"] == 8
    return state["params"]


def mlflow_runs(runs_dir: Path, experiment: str):
    c = client(runs_dir)
    return c.search_runs([c.get_experiment_by_name(experiment).experiment_id])


@pytest.fixture(scope="module")
def one_rank(runs_dir):
    out = run_cli("-m", "metanas.meta_train", *ARGS, f"run.output_dir={runs_dir}", "run.experiment=dist-1")
    assert out.returncode == 0, out.stderr
    return params_of(runs_dir, run_id_of(out.stdout))


@pytest.fixture(scope="module")
def two_ranks(runs_dir):
    out = finish(torchrun("-m", "metanas.meta_train", *ARGS, f"run.output_dir={runs_dir}", "run.experiment=dist-2"))
    assert out.returncode == 0, out.stderr
    return out


@pytest.mark.slow
def test_two_ranks_match_one_rank_and_log_one_run(two_ranks, one_rank, runs_dir):
    out = two_ranks
    assert out.stdout.count("test accuracy:") == 1 and "on 2 rank(s)" in out.stdout  # the other rank is quiet
    (run,) = mlflow_runs(runs_dir, "dist-2")  # exactly one MLflow run for the two processes
    assert run.info.run_id == run_id_of(out.stdout) and run.info.status == "FINISHED"
    assert run.data.tags["metanas.ranks"] == "2"
    params = params_of(runs_dir, run.info.run_id)
    # Each rank sends the sha256 of its parameters to rank 0, which records them: both ranks hold the same bits.
    rank0, rank1 = run.data.tags["metanas.rank_checksums"].split(",")
    assert rank0 == rank1 == checksum(params)
    # 2 ranks x 2 tasks compute the run of 1 process x 4 tasks exactly, and training did move the parameters.
    assert params.keys() == one_rank.keys()
    diff = max((params[k] - one_rank[k]).abs().max().item() for k in params)
    assert diff == 0, diff
    initial = _initial_params()
    moved = max((params[k] - initial[k]).abs().max().item() for k in params)
    assert moved > 1e-3, moved


def _initial_params() -> dict:
    from metanas.space import build_model
    from metanas.core.runtime import seed_everything

    cfg = load_config(ROOT / "configs" / "smoke.yaml")
    seed_everything(cfg.run.seed)
    return build_model(cfg, 5)[0].state_dict()


def _workers(parent: int) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes (its children carrying RANK in their environment)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != parent:
                continue
            env = dict(kv.split("=", 1) for kv in (stat.parent / "environ").read_text().split("\0") if "=" in kv)
        except (OSError, ValueError, IndexError):  # exited meanwhile
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(stat.parent.name)
    return found


def _wait_for_checkpoint(path: Path, proc: subprocess.Popen, deadline: float) -> None:
    while time.time() < deadline and proc.poll() is None:
        try:
            if torch.load(path, weights_only=True)["iteration"] >= 2:
                return
        except Exception:  # not there yet, or being replaced right now
            pass
        time.sleep(0.02)
    pytest.fail(f"no checkpoint at iteration >= 2 while the run was alive: {proc.communicate()}")


@pytest.mark.slow
def test_a_dead_rank_fails_the_run_fast_and_it_resumes_under_torchrun(runs_dir, two_ranks):
    args = ["-m", "metanas.meta_train", *ARGS, f"run.output_dir={runs_dir}", "run.experiment=dist-killed"]
    proc = torchrun(*args)
    deadline = time.time() + 120
    while len(workers := _workers(proc.pid)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert set(workers) == {0, 1}, proc.communicate()
    while not (runs := _runs_or_none(runs_dir, "dist-killed")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert runs, proc.communicate()
    run_id = runs[0].info.run_id
    _wait_for_checkpoint(runs_dir / "checkpoints" / f"{run_id}.pt", proc, deadline)
    os.kill(workers[1], signal.SIGKILL)
    killed_at = time.time()
    out = finish(proc, timeout=90)  # run.dist_timeout=20 bounds the wait even if the death went unnoticed
    assert out.returncode != 0 and time.time() - killed_at < 60
    assert "rank 0: lost contact with the other ranks" in out.stderr, out.stderr
    assert torch.load(runs_dir / "checkpoints" / f"{run_id}.pt", weights_only=True)["iteration"] < 8
    (run,) = mlflow_runs(runs_dir, "dist-killed")
    assert run.info.status == "FAILED"

    resumed = finish(torchrun(*args, "--resume", run_id))
    assert resumed.returncode == 0, resumed.stderr
    assert run_id_of(resumed.stdout) == run_id
    (run,) = mlflow_runs(runs_dir, "dist-killed")
    assert run.info.status == "FINISHED"
    final, reference = params_of(runs_dir, run_id), params_of(runs_dir, run_id_of(two_ranks.stdout))
    assert all(torch.equal(final[k], reference[k]) for k in reference)


def _runs_or_none(runs_dir, experiment):
    try:
        return mlflow_runs(runs_dir, experiment)
    except Exception:  # the experiment or the store does not exist yet
        return []


@pytest.mark.slow
def test_adapt_splits_its_tasks_across_ranks(two_ranks, runs_dir):
    ckpt = runs_dir / "checkpoints" / f"{run_id_of(two_ranks.stdout)}.pt"
    args = ["-m", "metanas.cli", "adapt", "--checkpoint", str(ckpt), "--tasks", "5", "--no-track"]
    single = run_cli(*args)
    split = finish(torchrun(*args))  # 5 tasks: rank 0 adapts tasks 0-1, rank 1 tasks 2-4
    assert single.returncode == 0 and split.returncode == 0, split.stderr

    def accuracies(out):  # "task   3: accuracy  60.0%  2 steps  0.012 s  normal: ..." without the time
        return [re.sub(r"[0-9.]+ s  ", "", line) for line in out.splitlines() if line.startswith("task ")]

    assert len(accuracies(split.stdout)) == 5 and accuracies(split.stdout) == accuracies(single.stdout)
    summary = [line for line in split.stdout.splitlines() if line.startswith("query accuracy:")]
    assert summary == [line for line in single.stdout.splitlines() if line.startswith("query accuracy:")]


def test_shards_partition_the_items_in_rank_order():
    for n in (4, 5, 600):
        for world in (1, 2, 3):
            shards = [Dist(rank=r, world=world).shard(n) for r in range(world)]
            assert [i for s in shards for i in s] == list(range(n))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_meta_batch_must_split_over_the_ranks(runs_dir):
    out = finish(torchrun("-m", "metanas.meta_train", "--config", "configs/smoke.yaml", "meta.meta_batch=3",
                          f"run.output_dir={runs_dir}"), timeout=120)
    assert out.returncode != 0
    assert out.stderr.count("metanas: error: meta.meta_batch=3 does not split evenly over 2 ranks") == 2  # each rank


class FakeCuda:
    """``torch.cuda`` on a machine with ``count`` GPUs, for the device logic alone (no kernel runs)."""

    def __init__(self, monkeypatch, count: int):
        import torch.distributed as tdist

        self.set = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: self.set.append(str(d)))
        self.groups = []
        monkeypatch.setattr(tdist, "init_process_group", lambda backend, timeout: self.groups.append(backend))


def _under_torchrun(monkeypatch, rank: int, local_world: int):
    for k, v in {"RANK": rank, "WORLD_SIZE": local_world, "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": local_world,
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(k, str(v))


def test_ranks_map_to_gpus_modulo_the_device_count_and_nccl_refusals_are_one_line(monkeypatch):
    from metanas.core.errors import MetanasError
    from metanas.core.runtime import resolve_device
    from metanas.training import distributed

    cuda = FakeCuda(monkeypatch, count=2)
    for rank in range(2):  # one GPU per rank under NCCL
        _under_torchrun(monkeypatch, rank, 2)
        dist = distributed.init(load_config(None, ["run.device=cuda", "run.threads=1"]))
        assert (str(dist.device), cuda.set[-1], cuda.groups[-1]) == (f"cuda:{rank}",) * 2 + ("nccl",)
    _under_torchrun(monkeypatch, 3, 4)  # gloo may share GPUs: rank 3 of 4 on 2 GPUs takes cuda:1
    assert str(distributed.init(load_config(None, ["run.device=cuda", "run.backend=gloo", "run.threads=1"])).device) \
        == "cuda:1"
    with pytest.raises(MetanasError, match=r"4 ranks on this machine but 2 GPU\(s\): NCCL needs one GPU per rank"):
        distributed.init(load_config(None, ["run.device=cuda", "run.threads=1"]))
    _under_torchrun(monkeypatch, 1, 2)
    with pytest.raises(MetanasError, match="puts all 2 local ranks on one GPU, which NCCL refuses"):
        distributed.init(load_config(None, ["run.device=cuda:0", "run.threads=1"]))
    # a GPU index the machine does not have, and a typo, are one line too (before any CUDA call)
    with pytest.raises(MetanasError, match=r"run.device=cuda:2 but this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    with pytest.raises(MetanasError, match="'cdua' is not a device: use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("cdua")
    with pytest.raises(MetanasError, match="run.device"):
        load_config(None, ["run.device=cuda:x"])


def test_the_cli_validates_the_device_before_any_work(smoke_run, runs_dir):
    run_id, _ = smoke_run
    for device, words in (("cdua", "run.device"), ("cuda:7", "run.device")):
        out = run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--tasks", "2", "--no-track",
                      "--output-dir", str(runs_dir), "--device", device)
        assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and words in out.stderr, out.stderr


def test_run_deterministic_sets_torchs_flags_and_off_leaves_them(monkeypatch):
    from metanas.training import distributed

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        distributed.init(load_config(None, ["run.device=cpu"]))
        assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic) == before[:2]
        distributed.init(load_config(None, ["run.device=cpu", "run.deterministic=true"]))
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not (torch.backends.cudnn.benchmark or torch.backends.cudnn.allow_tf32
                    or torch.backends.cuda.matmul.allow_tf32)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = before[1:]
