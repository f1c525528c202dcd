"""MLflow tracking: one MLflow run per meta-training or adaptation.

The store is SQLite (``sqlite:///<abs output_dir>/mlflow.db``) with artifacts
under ``<output_dir>/artifacts``; MLflow 3's plain file store is deprecated.
Everything goes through an explicit ``MlflowClient`` (no global active run), so
library calls never leak run state into each other.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from metanas.config import Config, flatten, to_yaml
from metanas.core.errors import MetanasError

# Tags that link runs to each other (an adaptation run to its warm start).
KIND = "metanas.kind"
PARENT = "mlflow.parentRunId"  # shows adaptation runs nested under their meta-training run in the UI
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, "evaluation runs"); with it, in
# the model-training view (runs, their metrics, datasets and logged models).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# The runs table shows no metric until one picks its columns: a view with them, stored in the experiment the way the
# UI's Share button does (``metanas ui`` prints its link: ``...#/experiments/ID/runs?viewStateShareKey=metanas``).
VIEW = "metanas"
RUNS_VIEW = {
    "selectedColumns": ["attributes.`Dataset`", "attributes.`Duration`", "attributes.`Source`", "attributes.`Models`",
                        "metrics.`test/accuracy`", "metrics.`test/ci95`", "metrics.`val/accuracy`",
                        "metrics.`adapt/accuracy`", "tags.`metanas.kind`", "tags.`metanas.family`",
                        "tags.`metanas.space`"],
    "orderByKey": "attributes.start_time", "orderByAsc": False,
}
EXPERIMENT_TAGS = {**EXPERIMENT_KIND, f"mlflow.sharedViewState.{VIEW}": json.dumps(RUNS_VIEW)}
CONTEXT = "mlflow.data.context"  # the input tag MLflow reads as a dataset's role: training, validation, test


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


def _entry_point() -> str:
    """The command that runs: ``metanas.meta_train`` (``python -m``), ``metanas adapt`` (the CLI, either way it
    is started), else the script's file name (``python -c``, a notebook: ``python``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name.removesuffix(".__main__")
    else:
        name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] not in ("", "-c") else "python"
    if name in ("metanas", "metanas.cli"):
        command = next((a for a in sys.argv[1:2] if not a.startswith("-")), None)
        return f"metanas {command}" if command else "metanas"
    return name


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the metanas checkout this code runs from; None for an installed wheel (or without git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    # only the package's own repository: a wheel installed into a virtualenv inside some other work tree is not
    if out.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root or len(lines[1]) != 40:
        return None
    return lines[1]


def source_tags() -> dict[str, str]:
    """What MLflow's run page shows as Source (and User): the entry point, LOCAL, the git commit when known."""
    tags = {"mlflow.source.name": _entry_point(), "mlflow.source.type": "LOCAL"}
    if commit := _git_commit():
        tags["mlflow.source.git.commit"] = commit
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        pass
    return tags


def mark_experiment(client, exp) -> None:
    """Tag an experiment as model training, with the runs view (:data:`EXPERIMENT_TAGS`): at its creation, and
    later for one of an older metanas (or created elsewhere)."""
    for k, v in EXPERIMENT_TAGS.items():
        if exp.tags.get(k) != v:
            retry(client.set_experiment_tag, exp.experiment_id, k, v)


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


@lru_cache(maxsize=1)
def _task_dataset_class():
    from mlflow.data.meta_dataset import MetaDataset

    class TaskDataset(MetaDataset):
        """One split of a task family as an ``mlflow.data`` dataset: metadata only (its source folder and a
        profile: data set, split, ways, shots, classes), its digest over all of it."""

        def __init__(self, source, name: str, profile: dict):
            self._profile = profile
            super().__init__(source, name=name)

        def _compute_digest(self) -> str:
            import hashlib

            config = {"name": self.name, "source": self.source.to_json(), "profile": self._profile}
            return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]

        @property
        def profile(self) -> dict:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return TaskDataset


def task_dataset(name: str, source: str, context: str, **profile):
    """The ``mlflow.data`` dataset of one split (``context``: training, validation, test) of a task family."""
    from mlflow.data.sources import LocalArtifactDatasetSource

    return _task_dataset_class()(LocalArtifactDatasetSource(str(source)), name, profile)


class Tracker:
    """Logs one run. ``run_id`` given: continue that run (resume)."""

    def __init__(self, cfg: Config, kind: str, run_name: str | None = None, tags: dict | None = None,
                 run_id: str | None = None):
        self.client = client_for(cfg)
        if run_id is not None:
            self.run_id = run_id
            self._call("update_run", run_id, status="RUNNING")
            self.experiment_id = self._call("get_run", run_id).info.experiment_id
            mark_experiment(self.client, self.client.get_experiment(self.experiment_id))
            return
        exp_id = retry(self._experiment_id, cfg)
        run = self._call("create_run", exp_id, run_name=run_name or cfg.run.name,
                         tags={KIND: kind, **source_tags(), **(tags or {})})
        self.run_id = run.info.run_id
        self.experiment_id = exp_id

    def _experiment_id(self, cfg: Config) -> str:
        exp = self.client.get_experiment_by_name(cfg.run.experiment)
        if exp is None:
            artifacts = (Path(cfg.run.output_dir).resolve() / "artifacts").as_uri()
            return self.client.create_experiment(cfg.run.experiment, artifact_location=artifacts, tags=EXPERIMENT_TAGS)
        mark_experiment(self.client, exp)
        return exp.experiment_id

    def _call(self, method: str, *args, **kwargs):
        return retry(getattr(self.client, method), *args, **kwargs)

    def log_config(self, cfg: Config) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in flatten(cfg).items()]
        for i in range(0, len(params), 100):  # MLflow's batch limit
            self._call("log_batch", self.run_id, params=params[i:i + 100])
        self.log_text(to_yaml(cfg), "config.yaml")

    def log_metric_steps(self, rows: list[tuple[int, dict]]) -> None:
        """Many steps' metrics, ``[(step, {name: value})]``, in one write per 1000 values (MLflow's batch limit)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for step, values in rows for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self._call("log_batch", self.run_id, metrics=metrics[i:i + 1000])

    def log_metrics(self, metrics: dict, step: int, model_id: str | None = None, context: str | None = None) -> None:
        """``model_id``: the metrics are also the logged model's (its page and the Models table show them), measured
        on the run's dataset input of ``context`` (test: "test/accuracy on omniglot-5way/test")."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        name, digest = self._dataset(context) if model_id and context else (None, None)
        self._call("log_batch", self.run_id, metrics=[Metric(k, float(v), now, step, model_id=model_id,
                                                             dataset_name=name, dataset_digest=digest)
                                                      for k, v in metrics.items()])

    def _dataset(self, context: str) -> tuple[str | None, str | None]:
        """(name, digest) of this run's dataset input of ``context``, read back (a resumed run logged it before)."""
        inputs = self._call("get_run", self.run_id).inputs.dataset_inputs
        found = [i.dataset for i in inputs if any(t.key == CONTEXT and t.value == context for t in i.tags)]
        return (found[-1].name, found[-1].digest) if found else (None, None)

    def log_datasets(self, datasets: list[dict]) -> None:
        """Dataset inputs of the run, what the UI lists under Datasets. Each a dict: ``name``, ``source`` (a local
        path), ``context`` (training, validation, test) and the rest its profile (ways, shots, classes, ...).
        A description, not the data: no images are read or copied."""
        from mlflow.entities import DatasetInput, InputTag

        inputs = [DatasetInput(task_dataset(**d)._to_mlflow_entity(), [InputTag(CONTEXT, d["context"])])
                  for d in datasets]
        self._call("log_inputs", self.run_id, datasets=inputs)

    def log_model(self, name: str, files: dict, step: int, model_type: str, params: dict | None = None,
                  tags: dict | None = None) -> str:
        """A logged model of this run (MLflow 3's LoggedModel: the run page's "Logged models", the experiment's
        Models tab) holding ``files`` (``{artifact name: local path}``); its id. No model serialization: cheap.
        Log its metrics with :meth:`log_metrics` (``model_id=``)."""
        from mlflow.entities import LoggedModelOutput

        model = self._call("create_logged_model", self.experiment_id, name=name, source_run_id=self.run_id,
                           model_type=model_type, params={k: str(v) for k, v in (params or {}).items()},
                           tags={k: str(v) for k, v in (tags or {}).items()})
        try:
            # staged beside the first file: on its file system, where a link works
            with tempfile.TemporaryDirectory(dir=Path(next(iter(files.values()))).parent if files else None) as d:
                for artifact, local in files.items():
                    try:  # a link, not a copy, where the file system allows
                        os.link(local, Path(d) / artifact)
                    except OSError:
                        shutil.copyfile(local, Path(d) / artifact)
                self._call("log_model_artifacts", model.model_id, d)
        except BaseException:
            self._call("finalize_logged_model", model.model_id, "FAILED")
            raise
        self._call("finalize_logged_model", model.model_id, "READY")
        self._call("log_outputs", self.run_id, [LoggedModelOutput(model.model_id, step)])
        return model.model_id

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
                   tags={PARENT: warm_start_run_id, "metanas.warm_start": warm_start_run_id, **tags})


class NullTracker:
    """What ranks other than 0 log to under torchrun: nothing (one MLflow run per training, not one per rank)."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def _skip(self, *args, **kwargs) -> None:
        pass

    log_config = log_metrics = log_metric_steps = log_datasets = log_model = set_tags = log_text = log_dict = log_artifact = _skip
    log_figure = end = _skip


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
