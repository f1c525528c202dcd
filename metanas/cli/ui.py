"""``metanas ui``: the MLflow UI on the project's store, and the links that open it on the runs and models."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from metanas.track.runs import EXPERIMENT_KIND, EXPERIMENT_TAGS, KIND, VIEW, mark_experiment


def register(sub) -> None:
    u = sub.add_parser("ui", help="open the MLflow UI on the project's store")
    u.add_argument("--output-dir", default="runs")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)


def ui_command(output_dir: str, host: str, port: int) -> list[str]:
    uri = f"sqlite:///{Path(output_dir).resolve()}/mlflow.db"
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def mark_older_experiments(output_dir: str) -> list[str]:
    """Tag the experiments holding metanas runs but not (or differently) tagged as model training with the runs
    view, as a run of this metanas would (a store of an older one): their ids. MLflow is imported only then."""
    store = Path(output_dir).resolve() / "mlflow.db"
    if not store.is_file():
        return []
    try:
        with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True) as db:
            ids = [i for (i,) in db.execute("SELECT DISTINCT r.experiment_id FROM runs r JOIN tags t ON t.run_uuid = "
                                            "r.run_uuid WHERE t.key = ?", (KIND,))]
            tags = db.execute("SELECT experiment_id, key, value FROM experiment_tags").fetchall()
    except sqlite3.Error:
        return []
    stale = [str(i) for i in ids if not set(EXPERIMENT_TAGS.items()) <= {(k, v) for e, k, v in tags if e == i}]
    if stale:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{store}")
        for i in stale:
            mark_experiment(client, client.get_experiment(i))
    return stale


def experiment_links(output_dir: str, host: str, port: int) -> list[str]:
    """Per metanas experiment of the store: its runs table (test accuracy and all, in MLflow's model-training view;
    the UI alone opens on its GenAI view) and its logged models. Empty without a store."""
    store = Path(output_dir).resolve() / "mlflow.db"
    if not store.is_file():
        return []
    (key, kind), = EXPERIMENT_KIND.items()
    try:  # read-only and without importing MLflow (seconds): its two tables, stable since MLflow 1
        with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT e.experiment_id, e.name FROM experiments e JOIN experiment_tags t ON "
                              "t.experiment_id = e.experiment_id WHERE t.key = ? AND t.value = ? AND "
                              "e.lifecycle_stage = 'active' ORDER BY e.experiment_id", (key, kind)).fetchall()
    except sqlite3.Error:
        return []
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/#/experiments"
    return [line for exp_id, name in rows for line in (
        f"{name}: runs   {base}/{exp_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW}",
        f"{name}: models {base}/{exp_id}/models?workflowType=machine_learning")]


def cmd_ui(args) -> None:
    from metanas.core.errors import MetanasError

    if not (Path(args.output_dir) / "mlflow.db").is_file():
        raise MetanasError(f"--output-dir {args.output_dir} holds no MLflow store (mlflow.db): give the runs folder of "
                           "a meta-training run (run.output_dir, default runs)")
    cmd = ui_command(args.output_dir, args.host, args.port)
    print(" ".join(cmd), flush=True)
    mark_older_experiments(args.output_dir)
    for line in experiment_links(args.output_dir, args.host, args.port):
        print(line, flush=True)
    os.execv(cmd[0], cmd)  # become the MLflow server: Ctrl-C and SIGTERM reach it (and its workers) directly
