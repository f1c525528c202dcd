"""The entry points end to end, in real subprocesses, against a real MLflow SQLite store."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ROOT, client, run_cli


def test_smoke_meta_training_prints_results_and_logs_everything(smoke_run, runs_dir):
    run_id, out = smoke_run
    assert "test accuracy:" in out.stdout and "±" in out.stdout and "genotype: normal:" in out.stdout
    run = client(runs_dir).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["meta.iterations"] == "6" and run.data.params["search.cells"] == "2"
    history = client(runs_dir).get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == list(range(6))
    assert 0 <= run.data.metrics["test/accuracy"] <= 1 and "val/accuracy" in run.data.metrics
    artifacts = {a.path for a in client(runs_dir).list_artifacts(run_id)}
    assert {"config.yaml", "genotype.json", "checkpoint", "plots"} <= artifacts
    local = client(runs_dir).download_artifacts(run_id, "genotype.json")
    assert set(json.load(open(local))) == {"space", "normal", "normal_concat", "reduce", "reduce_concat"}
    assert (runs_dir / "checkpoints" / f"{run_id}.pt").is_file()


@pytest.mark.slow
def test_adapt_from_the_latest_checkpoint_logs_a_linked_run(smoke_run, runs_dir):
    run_id, _ = smoke_run
    # other tests of this worker write checkpoints into runs_dir too: make the smoke run's the newest
    os.utime(runs_dir / "checkpoints" / f"{run_id}.pt")
    out = run_cli("-m", "metanas.cli", "adapt", "--task", "omniglot-5way", "--tasks", "3", "--steps", "3",
                  "--lr-alpha", "0.7", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sum(line.startswith("task ") and "genotype" not in line and "normal:" in line for line in lines) == 3
    assert any(line.startswith("query accuracy:") and "±" in line for line in lines)
    assert any(line.startswith("time per task:") for line in lines)
    adapt_id = lines[-1].split()[-1]
    run = client(runs_dir).get_run(adapt_id)
    assert run.data.tags["mlflow.parentRunId"] == run_id and run.data.tags["metanas.kind"] == "adapt"
    assert "adapt/accuracy" in run.data.metrics
    assert len(client(runs_dir).get_metric_history(adapt_id, "adapt/accuracy_at_step")) == 4  # 3 steps + before
    # the logged config is what ran: the adaptation settings of the command line, not the checkpoint's
    assert run.data.params["inner.eval_steps"] == "3" and run.data.params["inner.eval_lr_alpha"] == "0.7"


def test_adapt_by_run_id_and_console_script(smoke_run, runs_dir):
    run_id, _ = smoke_run
    out = subprocess.run(["metanas", "adapt", "--run-id", run_id, "--tasks", "2", "--no-track",
                          "--output-dir", str(runs_dir)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"run {run_id}" in out.stdout


def test_lr_alpha_sets_the_adaptation_step_of_alpha(smoke_run, runs_dir):
    """--lr-alpha 0 is --no-arch-adapt (the same tasks, the same accuracy); a negative step size or number of steps
    is one line, exit 2."""
    run_id, _ = smoke_run
    common = ["-m", "metanas.cli", "evaluate", "--run-id", run_id, "--tasks", "4", "--no-track", "--output-dir",
              str(runs_dir)]
    line = lambda out: next(x for x in out.stdout.splitlines() if x.startswith("query accuracy:"))
    zero, fixed = run_cli(*common, "--lr-alpha", "0"), run_cli(*common, "--no-arch-adapt")
    assert zero.returncode == fixed.returncode == 0, zero.stderr + fixed.stderr
    assert line(zero) == line(fixed) and "w only (architecture fixed)" in line(zero)
    for flag, value, name in (("--lr-alpha", "-1", "lr_alpha (--lr-alpha) -1.0"), ("--steps", "-2", "steps (--steps) -2")):
        bad = run_cli(*common, flag, value)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [f"metanas: error: {name}: must be >= 0"]


def test_tasks_lists_the_families():
    out = run_cli("-m", "metanas.cli", "tasks")
    assert out.returncode == 0
    for name in ("omniglot-5way", "omniglot-5way-5shot", "omniglot-20way"):
        assert name in out.stdout


@pytest.mark.slow
def test_ui_serves_the_store(runs_dir, smoke_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "metanas.cli", "ui", "--output-dir", str(runs_dir), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=os.setpgrp)  # its own process group: the server's workers die with it
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("mlflow ui did not answer within 90 s")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?run_id={smoke_run[0]}")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.load(r)["run"]["info"]["run_id"] == smoke_run[0]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        time.sleep(1)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers (uvicorn / job workers)
        except ProcessLookupError:
            pass
