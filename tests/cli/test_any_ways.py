"""One warm start with a prototype head (inner.head=proto) adapts and evaluates at any ways and shots, and on
Meta-Dataset's variable episodes, through the CLI and the API; a fixed head refuses more ways in one line."""

import re

import pytest
import torch
from conftest import run_cli

import metanas

SMOKE = ["-m", "metanas.meta_train", "--config", "configs/smoke.yaml", "run.progress=false"]


@pytest.fixture(scope="module")
def proto_dir(tmp_path_factory):
    """A store of its own: tests elsewhere take the newest checkpoint of the shared one to be the smoke run's."""
    return tmp_path_factory.mktemp("proto-runs")


@pytest.fixture(scope="module")
def proto_run(proto_dir):
    out = run_cli(*SMOKE, f"run.output_dir={proto_dir}", "inner.head=proto", "run.name=proto-head")
    assert out.returncode == 0, out.stderr
    return next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("run id:"))


def _accuracy(out, tasks: int) -> float:
    assert out.returncode == 0, out.stderr
    match = re.search(r"query accuracy: ([\d.]+) ± [\d.]+% \((\d+) tasks\)", out.stdout)
    assert match and int(match.group(2)) == tasks, out.stdout
    return float(match.group(1))


@pytest.mark.parametrize("ways, shots", [(5, 1), (20, 1), (5, 5), (3, 2)])
def test_one_proto_warm_start_evaluates_at_any_ways_and_shots(proto_run, proto_dir, ways, shots):
    out = run_cli("-m", "metanas.cli", "evaluate", "--checkpoint", proto_run, "--output-dir", str(proto_dir),
                  "--task", "omniglot-5way", "--ways", str(ways), "--shots", str(shots), "--tasks", "4", "--no-track")
    assert 100 / ways < _accuracy(out, 4) <= 100  # adapted, not guessing
    assert f"[omniglot-5way, {ways}-way {shots}-shot," in out.stdout


def test_it_adapts_to_meta_dataset_variable_episodes(proto_run, proto_dir):
    out = run_cli("-m", "metanas.cli", "adapt", "--checkpoint", proto_run, "--output-dir", str(proto_dir),
                  "--task", "omniglot-md", "--tasks", "3", "--no-track")
    assert 0 < _accuracy(out, 3) <= 100
    assert len(re.findall(r"task +\d+: accuracy", out.stdout)) == 3


def test_a_fixed_head_refuses_more_ways_in_one_line(smoke_run, runs_dir):
    out = run_cli("-m", "metanas.cli", "evaluate", "--checkpoint", smoke_run[0], "--output-dir", str(runs_dir),
                  "--task", "omniglot-5way", "--ways", "20", "--tasks", "2", "--no-track")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "inner.head=proto" in out.stderr and "20-way" in out.stderr


def test_the_api_adapts_a_support_set_of_any_ways_and_cuts_its_child(proto_run, proto_dir):
    warm = metanas.load(proto_run, str(proto_dir))
    assert warm.variable_ways and warm.ways == 5
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(14, 1, 28, 28, generator=g), torch.arange(7).repeat_interleave(2)
    adapted = metanas.adapt(warm, x, y)
    assert adapted.logits(x).shape == (14, 7) and set(adapted.predict(x).tolist()) <= set(range(7))
    assert adapted.child()(x).shape == (14, 7)


@pytest.mark.slow
def test_meta_training_on_variable_episodes_then_evaluating_them(proto_dir):
    out = run_cli(*SMOKE, f"run.output_dir={proto_dir}", "inner.head=proto", "task.family=omniglot-md",
                  "meta.iterations=2", "meta.eval_every=2", "meta.eval_tasks=2", "meta.test_tasks=2")
    assert out.returncode == 0, out.stderr
    assert re.search(r"test accuracy: [\d.]+ ± [\d.]+% \(2 tasks\)", out.stdout), out.stdout
    refused = run_cli(*SMOKE, f"run.output_dir={proto_dir}", "task.family=omniglot-md", "inner.variant=alternating")
    assert refused.returncode == 2 and "inner.variant=joint" in refused.stderr


def test_compare_pairs_warm_starts_at_other_ways_as_evaluate_scores_them(proto_run, proto_dir):
    out = run_cli("-m", "metanas.cli", "compare", "--method", f"proto={proto_run}", "--families", "omniglot-5way",
                  "--ways", "20", "--shots", "2", "--tasks", "3", "--output-dir", str(proto_dir), "--no-track")
    assert out.returncode == 0, out.stderr
    assert "20 ways each; 2 shots each" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("| omniglot-5way"))
    alone = run_cli("-m", "metanas.cli", "evaluate", "--checkpoint", proto_run, "--output-dir", str(proto_dir),
                    "--task", "omniglot-5way", "--ways", "20", "--shots", "2", "--tasks", "3", "--no-track")
    assert f"| {_accuracy(alone, 3):.2f}" in row, (row, alone.stdout)


def test_a_proto_warm_start_exports_a_task_of_other_ways(proto_run, proto_dir, tmp_path):
    import json
    import os
    import shutil
    from pathlib import Path

    root = Path(os.environ["METANAS_DATA"]) / "omniglot-py" / "images_evaluation" / "Atlantean"
    for char in sorted(p.name for p in root.iterdir())[:3]:  # a 3-way, 2-shot support folder
        (tmp_path / "support" / char).mkdir(parents=True)
        for f in sorted((root / char).glob("*.png"))[:2]:
            shutil.copy(f, tmp_path / "support" / char / f.name)
    out = run_cli("-m", "metanas.cli", "export", "--checkpoint", proto_run, "--task", str(tmp_path / "support"),
                  "--out", str(tmp_path / "model"), "--output-dir", str(proto_dir), "--no-track")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "model" / "model.json").read_text())["classes"] == 3
