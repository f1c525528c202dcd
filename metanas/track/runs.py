"""MLflow tracking: one MLflow run per meta-training or adaptation.

The store is SQLite (``sqlite:///<abs output_dir>/mlflow.db``) with artifacts
under ``<output_dir>/artifacts``; MLflow 3's plain file store is deprecated.
Everything goes through an explicit ``MlflowClient`` (no global active run), so
library calls never leak run state into each other.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
import time
from pathlib import Path

from metanas.config import Config, flatten, to_yaml
from metanas.core.errors import MetanasError

# Tags that link runs to each other (an adaptation run to its warm start).
KIND = "metanas.kind"
PARENT = "mlflow.parentRunId"  # shows adaptation runs nested under their meta-training run in the UI


def tracking_uri(cfg: Config) -> str:
    return cfg.run.tracking_uri or f"sqlite:///{Path(cfg.run.output_dir).resolve()}/mlflow.db"


def prepare_output_dir(cfg: Config) -> Path:
    out = Path(cfg.run.output_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise MetanasError(f"output directory {out} is not writable ({e.strerror}): "
                           "fix its permissions or set run.output_dir=PATH") from None
    return out


# SQLite allows one writer at a time: a second process logging to the same store can see "database is
# locked" (and, on a fresh store, a migration race). Such errors are transient: retry with backoff.
TRANSIENT = ("database is locked", "already exists", "UNIQUE constraint failed", "could not obtain lock")


def retry(fn, *args, attempts: int = 10, **kwargs):
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if attempt == attempts - 1 or not any(t in str(e) for t in TRANSIENT):
                raise
            time.sleep(min(5.0, 0.1 * 2**attempt) * (1 + random.random()))


def client_for(cfg: Config):
    import mlflow  # slow import: only where tracking happens
    from mlflow.tracking import MlflowClient

    out = prepare_output_dir(cfg)
    mlflow.set_tracking_uri(tracking_uri(cfg))  # for mlflow.pytorch & co. used beside the client
    # Creating the client creates and migrates the store; two processes doing that at once collide
    # ("table ... already exists"), so it is serialized with a file lock beside the store.
    with open(out / ".mlflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri(cfg))
        retry(client.search_experiments, max_results=1)
    return client


class Tracker:
    """Logs one run. ``run_id`` given: continue that run (resume)."""

    def __init__(self, cfg: Config, kind: str, run_name: str | None = None, tags: dict | None = None,
                 run_id: str | None = None):
        self.client = client_for(cfg)
        if run_id is not None:
            self.run_id = run_id
            self._call("update_run", run_id, status="RUNNING")
            return
        exp_id = retry(self._experiment_id, cfg)
        run = self._call("create_run", exp_id, run_name=run_name or cfg.run.name, tags={KIND: kind, **(tags or {})})
        self.run_id = run.info.run_id

    def _experiment_id(self, cfg: Config) -> str:
        exp = self.client.get_experiment_by_name(cfg.run.experiment)
        if exp is not None:
            return exp.experiment_id
        artifacts = (Path(cfg.run.output_dir).resolve() / "artifacts").as_uri()
        return self.client.create_experiment(cfg.run.experiment, artifact_location=artifacts)

    def _call(self, method: str, *args, **kwargs):
        return retry(getattr(self.client, method), *args, **kwargs)

    def log_config(self, cfg: Config) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in flatten(cfg).items()]
        for i in range(0, len(params), 100):  # MLflow's batch limit
            self._call("log_batch", self.run_id, params=params[i:i + 100])
        self.log_text(to_yaml(cfg), "config.yaml")

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._call("log_batch", self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def metric_histories(self, names: list[str]) -> dict[str, list[tuple[int, float]]]:
        """``{name: [(step, value), ...]}`` of this run, read back from the store."""
        return {n: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, n)] for n in names}

    def set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            self._call("set_tag", self.run_id, k, str(v))

    def log_text(self, text: str, path: str) -> None:
        self._call("log_text", self.run_id, text, path)

    def log_dict(self, d: dict, path: str) -> None:
        self._call("log_dict", self.run_id, d, path)

    def log_artifact(self, local_path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", self.run_id, str(local_path), artifact_path)

    def log_figure(self, fig, path: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            local = Path(d) / Path(path).name
            fig.savefig(local, dpi=110, bbox_inches="tight")
            self.log_artifact(local, str(Path(path).parent) if Path(path).parent != Path(".") else None)

    def end(self, status: str = "FINISHED") -> None:
        self._call("set_terminated", self.run_id, status=status)


def child_tracker(cfg: Config, kind: str, warm_start_run_id: str, run_name: str, **tags) -> Tracker:
    """A run that uses a warm start (adapt, evaluate, search, export): nested under its meta-training run."""
    return Tracker(cfg, kind, run_name=run_name,
                   tags={PARENT: warm_start_run_id, "metanas.meta.warm_start": warm_start_run_id, **tags})


class NullTracker:
    """What ranks other than 0 log to under torchrun: nothing (one MLflow run per training, not one per rank)."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def _skip(self, *args, **kwargs) -> None:
        pass

    log_config = log_metrics = set_tags = log_text = log_dict = log_artifact = log_figure = end = _skip


def recent_runs(output_dir: str, n: int = 10) -> list[dict]:
    """The ``n`` most recently started runs of every experiment in the store of ``output_dir``, newest first."""
    from mlflow.tracking import MlflowClient

    store = Path(output_dir).resolve() / "mlflow.db"
    if not store.is_file():  # opening a missing store would create (and migrate) an empty one
        raise MetanasError(f"no MLflow store at {store}: run python -m metanas.meta_train first, or pass "
                           "--output-dir of a runs folder")
    client = MlflowClient(f"sqlite:///{store}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"], max_results=n) if experiments else []
    return [{
        "run_id": r.info.run_id, "kind": r.data.tags.get(KIND, "-"), "status": r.info.status,
        "name": " / ".join(dict.fromkeys(v for v in (r.info.run_name, r.data.tags.get("metanas.family")) if v)) or "-",
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.info.start_time / 1000)),
        "metrics": dict(r.data.metrics),
    } for r in runs]
