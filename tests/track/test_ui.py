"""``metanas ui`` as a user sees it: MLflow 3's model-training view of the store, rendered by a real headless
browser (Debian's ``chromium``; skipped without it), and the links ``metanas ui`` prints to open it."""

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ROOT, client

from metanas.cli.ui import experiment_links, mark_older_experiments
from metanas.track.runs import EXPERIMENT_TAGS, KIND

CHROMIUM = shutil.which("chromium")


def test_ui_prints_the_links_to_the_runs_and_models_of_each_metanas_experiment(smoke_run, runs_dir, tmp_path):
    exp_id = client(runs_dir).get_run(smoke_run[0]).info.experiment_id
    links = experiment_links(str(runs_dir), "0.0.0.0", 8080)
    base = f"http://127.0.0.1:8080/#/experiments/{exp_id}"
    assert f"metanas: runs   {base}/runs?workflowType=machine_learning&viewStateShareKey=metanas" in links
    assert f"metanas: models {base}/models?workflowType=machine_learning" in links
    assert experiment_links(str(tmp_path), "127.0.0.1", 5000) == []  # no store: nothing to link (and none made)
    assert not (tmp_path / "mlflow.db").exists()


def test_ui_marks_an_experiment_of_an_older_metanas(smoke_run, runs_dir):
    c = client(runs_dir)
    artifacts = (runs_dir / "artifacts").as_uri()  # not ./mlruns
    old = c.create_experiment("made-by-an-older-metanas", artifact_location=artifacts)
    c.create_run(old, tags={KIND: "meta_train"})
    bare = c.create_experiment("not-metanas", artifact_location=artifacts)  # no metanas runs: left alone
    assert old in mark_older_experiments(str(runs_dir))
    assert EXPERIMENT_TAGS.items() <= c.get_experiment(old).tags.items()
    assert "mlflow.experimentKind" not in c.get_experiment(bare).tags
    assert mark_older_experiments(str(runs_dir)) == []  # once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rendered_text(url: str, profile, *needles: str) -> str:
    """The text of ``url`` once the single-page app has rendered it (its DOM, scripts and styles dropped). Rendered
    again with more (virtual) time while any of ``needles`` is missing: a loaded machine answers slower."""
    for budget in (20_000, 40_000, 80_000):
        out = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                              f"--user-data-dir={profile}", "--window-size=2400,1200",  # wide: tables render
                              f"--virtual-time-budget={budget}", "--dump-dom", url],  # only the columns in view
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", out.stdout, flags=re.S)
        text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))
        if all(n in text for n in needles):
            return text
    missing = [n for n in needles if n not in text]
    raise AssertionError(f"{url} shows no {missing}; it shows: {text[:4000]}")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium): the browser check of "
                                             "metanas ui needs a real headless browser")
def test_the_browser_shows_the_run_under_model_training_with_its_test_accuracy(smoke_run, runs_dir, tmp_path):
    run_id = smoke_run[0]
    run = client(runs_dir).get_run(run_id)
    accuracy = repr(run.data.metrics["test/accuracy"])  # as JavaScript prints it: the shortest round trip
    port = free_port()
    log = tmp_path / "ui.out"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "metanas.cli", "ui", "--output-dir", str(runs_dir), "--port",
                                 str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=os.setpgrp)  # its own process group: the server's workers die with it
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(1)
        links = dict(line.split(None, 2)[1:] for line in log.read_text().splitlines() if line.startswith("metanas: "))

        name = run.info.run_name
        # the model-training view (its side bar has the model registry, GenAI's has evaluation runs instead); the run
        # with its source and test accuracy (the column, the value)
        runs = rendered_text(links["runs"], tmp_path / "chromium", "Model registry", name, "metanas.meta_train",
                             "test/accuracy", accuracy)
        assert "Evaluation runs" not in runs
        # the warm start with its test accuracy, measured on the family's test tasks
        rendered_text(links["models"], tmp_path / "chromium", "warm_start", name, accuracy, "omniglot-5way/test")
        # the run's page: its logged model (with `metanas register`'s, if that ran first), source, datasets
        rendered_text(links["runs"].split("?")[0] + f"/{run_id}", tmp_path / "chromium", "Logged models (",
                      "warm_start", "Source metanas.meta_train", "Datasets omniglot-5way/train")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            time.sleep(1)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers (uvicorn / job workers)
            except ProcessLookupError:
                pass
