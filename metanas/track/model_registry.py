"""The MLflow model registry: warm starts and exported task models as MLflow models.

* A **warm start** (a meta-training checkpoint) is logged as a ``mlflow.pytorch`` model of the
  meta-learned supernet, with the checkpoint file itself as an extra file, and registered under a
  name. ``metanas adapt --model models:/NAME/1`` reads the checkpoint (config, ways, parameters)
  from it with ``torch.load(weights_only=True)``; ``mlflow.pytorch.load_model("models:/NAME/1")``
  gives the supernet forward pass with the meta-learned ``(w, alpha)`` as a module.
  MLflow 3 registers only MLflow models (a folder with an ``MLmodel`` file), not a bare artifact,
  and by default refuses to unpickle models on load, so both kinds are logged in its ``pt2``
  (``torch.export``) format: nothing registered here needs pickle to load.
* An **exported task model** (:mod:`metanas.deploy.export`) is logged as a ``pt2`` (``torch.export``)
  model with its ``genotype.json``, ``classes.json`` and ``model.json`` as extra files, optionally
  registered; ``mlflow.pytorch.load_model`` gives a module that maps images to logits.

Both are linked to their MLflow run (the meta-training run, the export run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from metanas.core.errors import MetanasError

WARM_START_FILE = "metanas_checkpoint.pt"
PROGRESS_BAR_VAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def _no_progress_bar():
    """MLflow draws a progress bar for every artifact download, even of a few small local files: off while a
    download runs, unless the user set the variable; restored after (importing this module changes nothing)."""
    if PROGRESS_BAR_VAR in os.environ:
        yield
        return
    os.environ[PROGRESS_BAR_VAR] = "false"
    try:
        yield
    finally:
        os.environ.pop(PROGRESS_BAR_VAR, None)


def _requirements(*extra: str) -> list[str]:
    # Explicit requirements: MLflow's inference would import the model in a subprocess (seconds) to guess them.
    return [f"torch=={torch.__version__.split('+')[0]}", *extra]


def _log_pt2(module, x: torch.Tensor, run_id: str, **kwargs):
    """``mlflow.pytorch.log_model`` in ``pt2`` format into run ``run_id``; ``x``: an example batch (size > 1)."""
    import mlflow
    from mlflow.models import infer_signature

    with torch.no_grad():
        y = module(x)
    # MLflow 3 files a logged model under the *current* experiment, not its run's: without this it lands in
    # the Default experiment, whose artifacts live in ./mlruns of whatever folder the command ran in.
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient().get_run(run_id).info.experiment_id)
    # MLflow logs at INFO/WARNING about environment inference and serving-input checks we do not use.
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    return mlflow.pytorch.log_model(module, serialization_format="pt2", input_example=x.numpy(), run_id=run_id,
                                    signature=infer_signature(x.numpy(), y.numpy()), **kwargs)


def register_warm_start(checkpoint: str | Path, name: str, output_dir: str):
    """Log the warm start in ``checkpoint`` as an MLflow model and register it as ``name``; the ModelVersion."""
    from metanas.meta.warm_start import WarmStart
    from metanas.track.runs import Tracker, client_for

    checkpoint = Path(checkpoint)
    warm = WarmStart.load(checkpoint)
    warm = warm.with_config({"run.output_dir": output_dir, "run.tracking_uri": None})
    model, cfg = warm.model, warm.config
    client = client_for(cfg)
    run_id = warm.run_id
    try:
        client.get_run(run_id)
    except Exception:  # a checkpoint from another store: a run of its own holds the model
        tracker = Tracker(cfg, "register", run_name=f"register-{name}", tags={"metanas.warm_start": run_id})
        tracker.end()
        run_id = tracker.run_id
    size = warm.image.size
    example = torch.rand(2, warm.image.channels, size, size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / WARM_START_FILE
        shutil.copyfile(checkpoint, copy)
        info = _log_pt2(model, example, name="warm_start", run_id=run_id, extra_files=[str(copy)],
                        pip_requirements=_requirements(), registered_model_name=name,
                        tags={"metanas.kind": "warm_start", "metanas.family": warm.family})
    version = info.registered_model_version
    for key, value in {"metanas.warm_start": warm.run_id, "metanas.family": warm.family,
                       "metanas.ways": warm.ways, "metanas.iteration": warm.iteration}.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    return client.get_model_version(name, str(version))


def download(uri: str, output_dir: str) -> Path:
    """Download an MLflow model (``models:/NAME/VERSION``, ``runs:/...``) of the project's store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from metanas.config import load_config
    from metanas.track.runs import client_for

    store = Path(output_dir).resolve() / "mlflow.db"
    if not store.is_file():
        raise MetanasError(f"no MLflow store at {store}: pass --output-dir of the runs folder that holds {uri}")
    client_for(load_config(None, [f"run.output_dir={output_dir}"]))  # points mlflow at this store
    dst = Path(output_dir).resolve() / "downloads" / uri.replace(":/", "/").replace("/", "_").strip("_")
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    try:
        with _no_progress_bar():
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except MlflowException as e:
        raise MetanasError(f"cannot resolve {uri} in {store} ({str(e).splitlines()[0][:160]}): list the "
                           "registered models in metanas ui, register one with metanas register") from None


def fetch_warm_start(uri: str, output_dir: str) -> Path:
    """The checkpoint file of a registered warm start (``models:/NAME/VERSION``), downloaded."""
    folder = download(uri, output_dir)
    found = sorted(folder.rglob(WARM_START_FILE))
    if not found:
        raise MetanasError(f"{uri} is not a metanas warm start (no {WARM_START_FILE} in it): register one with "
                           "metanas register --run-id ID --name NAME")
    return found[0]


def log_task_model(exported, run_id: str, registered_name: str | None = None):
    """Log an :class:`metanas.deploy.export.Exported` as a ``pt2`` MLflow model in run ``run_id``; the ModelInfo."""
    return _log_pt2(exported.child, exported.support_x, name="model", run_id=run_id,
                    extra_files=[str(exported.out / f) for f in ("genotype.json", "classes.json", "model.json")],
                    pip_requirements=_requirements(), registered_model_name=registered_name,
                    tags={"metanas.kind": "task_model"})
