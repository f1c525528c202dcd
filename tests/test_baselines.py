"""Baselines are the same code path with other configs: conv4, frozen alpha, random genotype, time budget."""

import pytest
import torch
from conftest import ROOT, client, run_cli

from metanas.config import load_config
from metanas.training.loop import train
from metanas.meta.warm_start import WarmStart

SMOKE = ROOT / "configs" / "smoke.yaml"


def smoke(runs_dir, *over):
    return load_config(SMOKE, [f"run.output_dir={runs_dir}", "run.progress=false", *over])


@pytest.mark.slow
def test_conv4_baseline_trains_and_restores(runs_dir):
    cfg = load_config(ROOT / "configs" / "baseline-conv4.yaml", [f"run.output_dir={runs_dir}", "run.progress=false",
                                                                  "meta.iterations=3", "search.channels=16"])
    result = train(cfg)
    assert result.arch == (("conv_3x3", 16, "max"),) * 4 and 0 <= result.test.mean <= 1
    warm = WarmStart.load(result.checkpoint)
    assert warm.space.name == "chain" and warm.arch == result.arch and not warm.is_supernet


@pytest.mark.slow
def test_frozen_alpha_baseline_never_moves_alpha(runs_dir):
    # 3 cells: cell 0 is normal, cells 1 and 2 reductions (at 1/3 and 2/3 of the depth), so both alphas get
    # gradients. Smoke's 2 cells are both reductions: there alpha_normal stays put whatever lr_alpha is.
    frozen = ("search.cells=3", "meta.lr_alpha=0", "inner.lr_alpha=0")
    result = train(smoke(runs_dir, *frozen))
    state = WarmStart.load(result.checkpoint).params
    start = WarmStart.load(train(smoke(runs_dir, *frozen, "meta.iterations=0")).checkpoint).params
    assert not torch.equal(state["stem.0.weight"], start["stem.0.weight"])
    for k in ("alpha_normal", "alpha_reduce"):
        assert torch.equal(state[k], start[k]), f"meta-training moved {k}"
        # and the test adaptation left alpha alone: every task keeps the meta-learned alpha
        assert result.test.alphas[k].std(0).max() == 0, f"test adaptation moved {k}"


def test_random_genotype_baseline_is_a_child_net_restored_from_its_checkpoint(runs_dir):
    few = ("meta.iterations=2", "meta.eval_tasks=2", "meta.test_tasks=2")  # the architecture, not its accuracy
    result = train(smoke(runs_dir, "search.genotype=random", "run.seed=3", *few))
    warm = WarmStart.load(result.checkpoint)
    assert not warm.is_supernet and warm.arch == result.arch and warm.model.genotype_ == result.arch
    other = train(smoke(runs_dir, "search.genotype=random", "run.seed=4", *few, "meta.iterations=0")).arch
    assert other != result.arch  # the seed draws the architecture


@pytest.mark.slow
def test_time_budget_stops_early_with_a_checkpoint(runs_dir):
    result = train(smoke(runs_dir, "meta.iterations=100000", "meta.time_budget=3"))
    iterations = WarmStart.load(result.checkpoint).iteration
    assert 0 < iterations < 100000
    assert result.steps == iterations  # the summary reports the steps that ran, not meta.iterations


@pytest.mark.slow
def test_evaluate_cli_reports_ci_curve_and_op_wins(smoke_run, runs_dir):
    run_id, _ = smoke_run
    out = run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--tasks", "12", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    assert "choice wins (alpha_normal" in out.stdout and "query accuracy:" in out.stdout
    frozen = run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--tasks", "12", "--no-arch-adapt",
                     "--no-track", "--output-dir", str(runs_dir))
    assert frozen.returncode == 0 and "w only (architecture fixed)" in frozen.stdout
    # alpha frozen at test time: one genotype wins on every edge in every task
    wins = [x for line in frozen.stdout.splitlines() if line.startswith("choice wins") for x in line.split(":", 1)[1].split()]
    # 2 cells x 5 edges; every task keeps the same edges with the same ops (a dropped edge: 0 in every task)
    assert len(wins) == 2 * 5 and all(float(x.split("=")[-1]) in (0.0, 1.0) for x in wins)
    assert sum(float(x.split("=")[-1]) for x in wins) == 2 * 4  # k=2 inputs x 2 nodes kept per cell


@pytest.mark.slow
def test_evaluate_shift_suite_writes_a_table_over_families(smoke_run, runs_dir):
    run_id, _ = smoke_run
    out = run_cli("-m", "metanas.cli", "evaluate", "--suite", "shift", "--run-id", run_id, "--tasks", "3",
                  "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    families = {line.split("|")[1].strip() for line in table[1:]}  # header row, then one row per family
    assert {"omniglot-5way", "omniglot-5way-shift-blur", "omniglot-5way-shift-mixed", "digits-5way"} <= families
    blur = next(line for line in table if line.startswith("| omniglot-5way-shift-blur "))
    column = [c.strip() for c in table[0].split("|")].index("architecture distance from warm start")
    assert "±" in blur and 0.0 <= float(blur.split("|")[column]) <= 1.0
    run = client(runs_dir).get_run(out.stdout.splitlines()[-1].split()[-1])
    assert "suite/omniglot-5way-shift-blur/accuracy" in run.data.metrics


def test_validation_and_final_test_adapt_alpha_with_eval_steps(tmp_path):
    """Meta-training's validation and test adapt the architecture too, for inner.eval_steps steps (a positional
    step count once landed in an "alpha frozen" flag: alpha stayed put and eval_steps was ignored)."""
    # its own output dir: a checkpoint in the shared one would become "the newest" that later CLI tests adapt
    result = train(smoke(tmp_path, "inner.steps=1", "inner.eval_steps=3", "meta.iterations=2", "meta.eval_tasks=2",
                         "meta.test_tasks=3"))
    assert result.test.curve.shape[1] == 3 + 1 and result.eval_steps == 3
    warm = WarmStart.load(result.checkpoint).params
    adapted = result.test.alphas["alpha_reduce"]
    assert adapted.shape[0] == result.test.accuracies.numel()
    assert not torch.allclose(adapted, warm["alpha_reduce"].expand_as(adapted))  # alpha was adapted per task
    assert adapted.std(0).max() > 0  # and differently for each task
