"""MLflow tracking: one MLflow run per meta-training or adaptation.

The store is SQLite (``sqlite:///<abs output_dir>/mlflow.db``) with artifacts
under ``<output_dir>/artifacts``; MLflow 3's plain file store is deprecated.
Everything goes through an explicit ``MlflowClient`` (no global active run), so
library calls never leak run state into each other.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from metanas.config import Config, flatten, to_yaml
from metanas.errors import MetanasError

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


def client_for(cfg: Config):
    import mlflow  # slow import: only where tracking happens
    from mlflow.tracking import MlflowClient

    prepare_output_dir(cfg)
    mlflow.set_tracking_uri(tracking_uri(cfg))  # for mlflow.pytorch & co. used beside the client
    return MlflowClient(tracking_uri(cfg))


class Tracker:
    """Logs one run. ``run_id`` given: continue that run (resume)."""

    def __init__(self, cfg: Config, kind: str, run_name: str | None = None, tags: dict | None = None,
                 run_id: str | None = None):
        self.client = client_for(cfg)
        if run_id is not None:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            return
        name = cfg.run.experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            artifacts = (Path(cfg.run.output_dir).resolve() / "artifacts").as_uri()
            try:
                exp_id = self.client.create_experiment(name, artifact_location=artifacts)
            except Exception:  # another process created it first
                exp_id = self.client.get_experiment_by_name(name).experiment_id
        else:
            exp_id = exp.experiment_id
        run = self.client.create_run(exp_id, run_name=run_name or cfg.run.name, tags={KIND: kind, **(tags or {})})
        self.run_id = run.info.run_id

    def log_config(self, cfg: Config) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in flatten(cfg).items()]
        for i in range(0, len(params), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.log_text(to_yaml(cfg), "config.yaml")

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def metric_histories(self, names: list[str]) -> dict[str, list[tuple[int, float]]]:
        """``{name: [(step, value), ...]}`` of this run, read back from the store."""
        return {n: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, n)] for n in names}

    def set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_dict(self, d: dict, path: str) -> None:
        self.client.log_dict(self.run_id, d, path)

    def log_artifact(self, local_path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_figure(self, fig, path: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            local = Path(d) / Path(path).name
            fig.savefig(local, dpi=110, bbox_inches="tight")
            self.log_artifact(local, str(Path(path).parent) if Path(path).parent != Path(".") else None)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


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
