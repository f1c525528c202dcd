"""MLflow store under concurrency (two meta-training processes share one fresh SQLite store), and what a
meta-training run records for MLflow's UI: the experiment's kind, dataset inputs, its logged model, its source."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, client

from metanas.config import load_config
from metanas.track.runs import RUNS_VIEW, retry, tracking_uri


@pytest.mark.slow
def test_two_processes_writing_one_store_both_finish_with_all_metrics(tmp_path):
    cmd = [sys.executable, "-m", "metanas.meta_train", "--config", "configs/smoke.yaml", "meta.iterations=8",
           f"run.output_dir={tmp_path}", "run.progress=false",
           "run.threads=1"]  # one core each: two 2-thread OpenMP pools on 2 cores spin-wait ~20x slower
    procs = [subprocess.Popen(cmd + [f"run.seed={seed}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    c = client(tmp_path)
    runs = c.search_runs([c.get_experiment_by_name("metanas").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        assert [m.step for m in c.get_metric_history(r.info.run_id, "train/loss")] == list(range(8))
        assert "test/accuracy" in r.data.metrics


def test_retry_rides_out_transient_sqlite_errors_and_raises_the_rest(tmp_path):
    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry(locked_twice) == "ok" and len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("no such column")

    with pytest.raises(ValueError):
        retry(broken)
    assert len(calls) == 4  # not transient: no second attempt
    cfg = load_config(None, [f"run.output_dir={tmp_path}"])
    assert tracking_uri(cfg) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"  # the store lives in the output dir


def test_a_run_records_model_training_its_datasets_its_logged_model_and_its_source(smoke_run, runs_dir):
    """What MLflow 3's UI reads (docs/operations.md, Tracking): without these it shows the GenAI view,
    "Datasets: None", "Logged models —" and "Source —"."""
    run_id, _ = smoke_run
    c = client(runs_dir)
    run = c.get_run(run_id)
    exp = c.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert json.loads(exp.tags["mlflow.sharedViewState.metanas"]) == RUNS_VIEW  # metanas ui's runs table

    inputs = {i.dataset.name: (i.dataset, {t.key: t.value for t in i.tags}) for i in run.inputs.dataset_inputs}
    assert {name: tags["mlflow.data.context"] for name, (_, tags) in inputs.items()} == {
        "omniglot-5way/train": "training", "omniglot-5way/validation": "validation", "omniglot-5way/test": "test"}
    train, _ = inputs["omniglot-5way/train"]
    profile = json.loads(train.profile)
    assert profile["dataset"] == "omniglot" and profile["split"] == "lake/train" and profile["image"] == "1x28x28"
    assert (profile["ways"], profile["shots"], profile["queries"], profile["tasks"]) == (5, 1, 5, 6 * 2)
    assert 0 < profile["classes"] and train.source_type == "local"
    assert Path(json.loads(train.source)["uri"]) == Path(os.environ["METANAS_DATA"]).resolve()
    assert len({d.digest for d, _ in inputs.values()}) == 3  # one per split

    from mlflow.entities import LoggedModelStatus

    outputs = {o.model_id: o for o in run.outputs.model_outputs}  # `metanas register` may have added its pt2 model
    (model,) = [m for m in map(c.get_logged_model, outputs) if m.model_type == "warm start"]
    assert outputs[model.model_id].step == 6  # the warm start, at the last meta-step
    assert model.name == "warm_start" and model.status == LoggedModelStatus.READY
    assert model.source_run_id == run_id and model.tags["metanas.family"] == "omniglot-5way"
    assert model.params["meta.iterations"] == "6"
    metrics = {m.key: m for m in model.metrics}
    assert set(metrics) == {"test/accuracy", "test/ci95"}
    assert metrics["test/accuracy"].value == run.data.metrics["test/accuracy"]
    test, _ = inputs["omniglot-5way/test"]
    assert (metrics["test/accuracy"].dataset_name, metrics["test/accuracy"].dataset_digest) == (test.name, test.digest)
    # The model's file is the checkpoint, byte for byte (`metanas adapt --model models:/<model id>` reads it).
    stored = Path(model.artifact_location.removeprefix("file://")) / "metanas_checkpoint.pt"
    assert stored.read_bytes() == (runs_dir / "checkpoints" / f"{run_id}.pt").read_bytes()

    tags = run.data.tags
    assert tags["mlflow.source.name"] == "metanas.meta_train" and tags["mlflow.source.type"] == "LOCAL"
    if (ROOT / ".git").exists():  # a checkout: the commit the run's code came from (HEAD then, an ancestor now)
        commit = tags["mlflow.source.git.commit"]
        assert subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit, "HEAD"]).returncode == 0


def test_the_source_names_the_entry_point(monkeypatch):
    from metanas.track import runs

    class Spec:
        name = "metanas.meta_train"

    main = type(sys)("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    main.__spec__ = Spec
    monkeypatch.setattr(sys, "argv", ["metanas/meta_train.py", "--config", "c.yaml"])
    assert runs.source_tags()["mlflow.source.name"] == "metanas.meta_train"
    Spec.name = "metanas.cli.__main__"
    monkeypatch.setattr(sys, "argv", ["metanas/cli/__main__.py", "adapt", "--tasks", "3"])
    assert runs.source_tags()["mlflow.source.name"] == "metanas adapt"
    main.__spec__ = None  # the console script (or a plain script)
    monkeypatch.setattr(sys, "argv", ["venv/bin/metanas", "export", "--task", "t/"])
    assert runs.source_tags()["mlflow.source.name"] == "metanas export"
    monkeypatch.setattr(sys, "argv", ["sweeps/my_sweep.py"])
    assert runs.source_tags()["mlflow.source.name"] == "my_sweep.py"
    assert runs.source_tags()["mlflow.source.type"] == "LOCAL"
