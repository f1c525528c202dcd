"""Export: adapt to a folder of real Omniglot drawings, ship the discrete child, reload it and predict."""

import copy
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import client, run_cli

from metanas import api
from metanas.deploy.export import export_task, freeze_batchnorm, load_support, load_task_model
from metanas.meta.warm_start import WarmStart

CHARACTERS = [("Angelic", "character01"), ("Atlantean", "character02"), ("Glagolitic", "character03"),
              ("Kannada", "character04"), ("Tibetan", "character05")]
LINE = re.compile(r"^(?P<path>.+) -> (?P<label>\S+) \((?P<prob>[0-9.]+)\)$")


@pytest.fixture(scope="module")
def drawings(tmp_path_factory):
    """A 5-way 1-shot support folder of evaluation-alphabet characters, and 3 other drawings of each."""
    root = Path(os.environ["METANAS_DATA"]) / "omniglot-py" / "images_evaluation"
    base = tmp_path_factory.mktemp("drawings")
    queries = []
    for alphabet, char in CHARACTERS:
        files = sorted((root / alphabet / char).glob("*.png"))
        (base / "support" / f"{alphabet}-{char}").mkdir(parents=True)
        shutil.copy(files[0], base / "support" / f"{alphabet}-{char}" / files[0].name)
        queries += files[1:4]
    return base / "support", queries


@pytest.fixture(scope="module")
def exported(smoke_run, runs_dir, drawings, tmp_path_factory):
    run_id, _ = smoke_run
    out = tmp_path_factory.mktemp("export") / "model"
    res = run_cli("-m", "metanas.cli", "export", "--run-id", run_id, "--task", str(drawings[0]), "--out", str(out),
                  "--output-dir", str(runs_dir), "--register", "omniglot-task")
    assert res.returncode == 0, res.stderr
    return out, res.stdout


def predict(model, *images, runs_dir=None):
    res = run_cli("-m", "metanas.cli", "predict", "--model", str(model), *map(str, images),
                  *(["--output-dir", str(runs_dir)] if runs_dir else []))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == len(images)
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    return [(m["path"], m["label"], float(m["prob"])) for m in matches]


@pytest.mark.slow
def test_export_writes_program_genotype_and_classes(exported, drawings):
    out, stdout = exported
    assert {"model.pt2", "genotype.json", "classes.json", "model.json"} <= {p.name for p in out.iterdir()}
    classes = json.loads((out / "classes.json").read_text())
    assert classes == sorted(p.name for p in drawings[0].iterdir())
    genotype = json.loads((out / "genotype.json").read_text())
    assert len(genotype["normal"]) == len(genotype["reduce"]) == 4  # smoke: 2 nodes x k=2
    assert "genotype: normal:" in stdout and "support accuracy:" in stdout


@pytest.mark.slow
def test_predict_matches_the_in_process_child(exported, drawings, smoke_run, runs_dir, tmp_path):
    out, _ = exported
    support, queries = drawings
    support_images = sorted(support.glob("*/*.png"))
    shipped = predict(out, *support_images, *queries)
    classes = json.loads((out / "classes.json").read_text())
    assert all(label in classes and 0 < p <= 1 for _, label, p in shipped)
    assert [path for path, _, _ in shipped] == [str(p) for p in support_images + queries]

    # The same adaptation in this process: same child, same answers and probabilities.
    here = export_task(WarmStart.load(smoke_run[0], runs_dir), support, tmp_path / "again")
    x = torch.cat([here.support_x, here.warm.image.read(queries)])
    with torch.no_grad():
        probs = torch.softmax(here.child(x), -1)
    assert [label for _, label, _ in shipped] == [classes[i] for i in probs.argmax(-1).tolist()]
    assert [p for _, _, p in shipped] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-3)
    # The program alone (no metanas classes in it) agrees with the module it was exported from.
    program = load_task_model(out)
    assert torch.allclose(program.probabilities(x), probs, atol=1e-5)
    assert torch.allclose(program.probabilities(x[:1]), probs[:1], atol=1e-5)  # the batch dimension is dynamic


def test_frozen_batchnorm_reproduces_support_statistics_and_frees_the_batch(smoke_run, runs_dir, drawings):
    """On the support batch the frozen child equals the batch-statistics child; one image alone gets the same answer."""
    warm = WarmStart.load(smoke_run[0], runs_dir)
    x, y, _ = load_support(drawings[0], warm.image)
    child = api.adapt(warm, x, y).child()
    with torch.no_grad():
        batch_stats = child(x)
        frozen = freeze_batchnorm(copy.deepcopy(child), x)
        assert torch.allclose(frozen(x), batch_stats, atol=1e-4)
        alone = torch.cat([frozen(x[i:i + 1]) for i in range(len(x))])
        assert torch.allclose(alone, frozen(x), atol=1e-5)
        assert not torch.allclose(child(x[:2]), batch_stats[:2], atol=1e-3)  # batch statistics do depend on the batch
    assert not any(m.training for m in frozen.modules())


@pytest.mark.slow
def test_mlflow_reloads_the_exported_model(exported, runs_dir):
    import mlflow.pytorch
    from metanas.config import load_config
    from metanas.track.runs import client_for

    out, stdout = exported
    client_for(load_config(None, [f"run.output_dir={runs_dir}"]))
    uri = next(line.split()[2] for line in stdout.splitlines() if line.startswith("mlflow model:"))
    model = client(runs_dir).get_logged_model(uri.removeprefix("models:/"))
    assert model.artifact_location.startswith((runs_dir / "artifacts").as_uri())  # not ./mlruns of the cwd
    x = torch.rand(3, 1, 28, 28)
    for model_uri in (uri, "models:/omniglot-task/1"):
        loaded = mlflow.pytorch.load_model(model_uri)
        assert torch.allclose(loaded(x), load_task_model(out).module(x), atol=1e-5)


@pytest.mark.slow
def test_predict_from_the_registry(exported, drawings, runs_dir):
    out, _ = exported
    images = drawings[1][:2]
    shipped = load_task_model(out).predict(images)
    assert predict("models:/omniglot-task/1", *images, runs_dir=runs_dir) == [
        (path, label, pytest.approx(p, abs=1e-3)) for path, label, p in shipped]


@pytest.mark.parametrize("args, message", [
    (["export", "--task", "/nonexistent", "--out", "x"], "support folder"),
    (["predict", "--model", "/nonexistent", "a.png"], "not found"),
])
def test_bad_export_input_is_one_line(args, message, smoke_run, runs_dir):
    extra = ["--output-dir", str(runs_dir), "--no-track"] if args[0] == "export" else []
    res = run_cli("-m", "metanas.cli", *args, *extra)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_a_class_folder_without_images_is_one_line(smoke_run, runs_dir, drawings, tmp_path):
    support = tmp_path / "support"
    shutil.copytree(drawings[0], support)
    empty = sorted(support.iterdir())[1]
    for f in empty.iterdir():
        f.rename(f.with_suffix(".txt"))  # not images
    res = run_cli("-m", "metanas.cli", "export", "--task", str(support), "--out", str(tmp_path / "m"),
                  "--output-dir", str(runs_dir), "--no-track")
    assert res.returncode == 2 and f"class folder {empty} has no image files" in res.stderr
    assert "Traceback" not in res.stderr


def test_export_refuses_a_support_set_of_the_wrong_width(smoke_run, runs_dir, drawings, tmp_path):
    support = tmp_path / "support"
    shutil.copytree(drawings[0], support)
    shutil.rmtree(next(support.iterdir()))
    res = run_cli("-m", "metanas.cli", "export", "--task", str(support), "--out", str(tmp_path / "m"),
                  "--output-dir", str(runs_dir), "--no-track")
    assert res.returncode == 2 and "4 classes" in res.stderr and "5-way" in res.stderr
