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


class NullTracker:
    """What ranks other than 0 log to under torchrun: nothing (one MLflow run per training, not one per rank)."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def _skip(self, *args, **kwargs) -> None:
        pass

    log_config = log_metrics = set_tags = log_text = log_dict = log_artifact = log_figure = end = _skip
