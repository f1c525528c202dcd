"""Shared test setup: real Omniglot, one decoded-image cache and one MLflow store per test run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Absolute, so that subprocesses started in other folders (the wheel test) find it too; CI passes a relative path.
os.environ["METANAS_DATA"] = str(Path(os.environ.get("METANAS_DATA") or ROOT / ".." / "shared" / "data").resolve())
os.environ.setdefault("METANAS_CACHE", str(ROOT / "runs" / "test-cache"))  # survives test runs: decode once
if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: one torch thread each, subprocesses included
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="package")  # tests/ is not a package: one for the whole run
def runs_dir(tmp_path_factory) -> Path:
    """One output dir (and so one MLflow SQLite store: a migration costs ~5 s) for the whole test run."""
    return tmp_path_factory.mktemp("runs")


def client(runs_dir):
    """An MlflowClient on the SQLite store of the output dir ``runs_dir`` (the same URI metanas itself uses)."""
    from mlflow.tracking import MlflowClient

    from metanas.config import load_config
    from metanas.track.runs import tracking_uri

    return MlflowClient(tracking_uri(load_config(None, [f"run.output_dir={runs_dir}"])))


def run_cli(*args, cwd=ROOT, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run a metanas entry point in a real subprocess: ``run_cli("-m", "metanas.meta_train", ...)``. The subprocess
    sees no GPU (``CUDA_VISIBLE_DEVICES=""``) unless ``env`` says otherwise: its ``run.device=auto`` is the CPU, where
    the suite's exactness claims hold, also on a machine with a GPU (the ``cuda`` tests use the GPU on purpose)."""
    full_env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="package")
def smoke_run(runs_dir):
    """One real smoke meta-training run (subprocess), shared by the CLI and tracking tests."""
    out = run_cli("-m", "metanas.meta_train", "--config", "configs/smoke.yaml", f"run.output_dir={runs_dir}",
                  "run.progress=false")
    assert out.returncode == 0, out.stderr
    run_id = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("run id:"))
    return run_id, out
