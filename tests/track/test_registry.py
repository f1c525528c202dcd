"""Warm starts through the MLflow model registry (real SQLite store), and the runs table."""

import os
from pathlib import Path

import pytest
import torch
from conftest import client, run_cli

from metanas.track.model_registry import PROGRESS_BAR_VAR, _no_progress_bar


@pytest.fixture(scope="module")
def registered(smoke_run, runs_dir):
    res = run_cli("-m", "metanas.cli", "register", "--run-id", smoke_run[0], "--name", "omniglot-warm",
                  "--output-dir", str(runs_dir))
    assert res.returncode == 0, res.stderr
    assert "registered: models:/omniglot-warm/1" in res.stdout
    return "models:/omniglot-warm/1"


@pytest.mark.slow
def test_registered_version_points_back_to_its_run(registered, smoke_run, runs_dir):
    mv = client(runs_dir).get_model_version("omniglot-warm", "1")
    assert mv.tags["metanas.warm_start"] == smoke_run[0] and mv.tags["metanas.ways"] == "5"
    assert mv.run_id == smoke_run[0]
    model = client(runs_dir).get_logged_model(mv.source.removeprefix("models:/"))
    assert model.source_run_id == smoke_run[0] and model.artifact_location.startswith(runs_dir.as_uri())


@pytest.mark.slow
def test_mlflow_loads_the_meta_learned_supernet(registered, smoke_run, runs_dir):
    """No pickle: the registered model loads with MLflow's defaults and computes the checkpoint's supernet."""
    import mlflow.pytorch

    from metanas.meta.warm_start import WarmStart
    from metanas.config import load_config
    from metanas.track.runs import client_for

    client_for(load_config(None, [f"run.output_dir={runs_dir}"]))
    loaded = mlflow.pytorch.load_model(registered)
    net = WarmStart.load(smoke_run[0], runs_dir).model
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-5)


@pytest.mark.slow
def test_adapt_from_the_registry_uses_the_same_warm_start(registered, smoke_run, runs_dir):
    res = run_cli("-m", "metanas.cli", "adapt", "--model", registered, "--tasks", "1", "--output-dir", str(runs_dir))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any(line.startswith("query accuracy:") for line in lines)
    used = next(line for line in lines if line.startswith("warm start:")).split()[2]
    # The round trip is exact: the registered model carries the checkpoint file byte for byte.
    original = runs_dir / "checkpoints" / f"{smoke_run[0]}.pt"
    assert Path(used).read_bytes() == original.read_bytes() and Path(used) != original
    run = client(runs_dir).get_run(lines[-1].split()[-1])
    assert run.data.tags["mlflow.parentRunId"] == smoke_run[0]


def test_unknown_registered_model_is_a_clear_error(runs_dir, smoke_run):
    res = run_cli("-m", "metanas.cli", "adapt", "--model", "models:/no-such-model/1", "--no-track",
                  "--output-dir", str(runs_dir))
    assert res.returncode == 2 and "models:/no-such-model/1" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_runs_lists_recent_runs_with_metrics(smoke_run, runs_dir, tmp_path):
    res = run_cli("-m", "metanas.cli", "runs", "--output-dir", str(runs_dir), "-n", "50")
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    assert "test/accuracy" in header and "adapt/accuracy" in header
    (row,) = [r for r in rows if r.startswith(smoke_run[0])]
    assert "meta_train" in row and "omniglot-5way" in row and "FINISHED" in row and "%" in row
    missing = run_cli("-m", "metanas.cli", "runs", "--output-dir", str(tmp_path))
    assert missing.returncode == 2 and "no MLflow store" in missing.stderr


def test_progress_bar_is_off_only_while_downloading_unless_the_user_set_it(monkeypatch):
    monkeypatch.delenv(PROGRESS_BAR_VAR, raising=False)
    with _no_progress_bar():
        assert os.environ[PROGRESS_BAR_VAR] == "false"
    assert PROGRESS_BAR_VAR not in os.environ  # restored: importing or calling the registry leaves no trace
    monkeypatch.setenv(PROGRESS_BAR_VAR, "true")
    with _no_progress_bar():
        assert os.environ[PROGRESS_BAR_VAR] == "true"
