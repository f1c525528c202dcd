"""Baselines are the same code path with other configs: conv4, frozen alpha, random genotype, time budget."""

import pytest
import torch
from conftest import ROOT, client, run_cli

from metanas.checkpoint import load_checkpoint, model_from_checkpoint
from metanas.config import load_config
from metanas.meta_train import train
from metanas.space import Conv4, Network

SMOKE = ROOT / "configs" / "smoke.yaml"


def smoke(runs_dir, *over):
    return load_config(SMOKE, [f"run.output_dir={runs_dir}", "run.progress=false", *over])


@pytest.mark.slow
def test_conv4_baseline_trains_and_restores(runs_dir):
    cfg = load_config(ROOT / "configs" / "baseline-conv4.yaml", [f"run.output_dir={runs_dir}", "run.progress=false",
                                                                  "meta.iterations=3", "search.channels=16"])
    result = train(cfg)
    assert result.genotype is None and 0 <= result.test.mean <= 1
    model, _ = model_from_checkpoint(load_checkpoint(result.checkpoint))
    assert isinstance(model, Conv4) and not any("alpha" in k for k in model.state_dict())


@pytest.mark.slow
def test_frozen_alpha_baseline_never_moves_alpha(runs_dir):
    # 3 cells: cell 0 is normal, cells 1 and 2 reductions (at 1/3 and 2/3 of the depth), so both alphas get
    # gradients. Smoke's 2 cells are both reductions: there alpha_normal stays put whatever lr_alpha is.
    frozen = ("search.cells=3", "meta.lr_alpha=0", "inner.lr_alpha=0")
    result = train(smoke(runs_dir, *frozen))
    state = load_checkpoint(result.checkpoint)
    start = load_checkpoint(train(smoke(runs_dir, *frozen, "meta.iterations=0")).checkpoint)
    assert not torch.equal(state["params"]["stem.0.weight"], start["params"]["stem.0.weight"])
    for k in ("alpha_normal", "alpha_reduce"):
        assert torch.equal(state["params"][k], start["params"][k]), f"meta-training moved {k}"
        # and the test adaptation left alpha alone: every task keeps the meta-learned alpha
        assert result.test.alphas[k].std(0).max() == 0, f"test adaptation moved {k}"


def test_random_genotype_baseline_is_a_child_net_restored_from_its_checkpoint(runs_dir):
    result = train(smoke(runs_dir, "search.genotype=random", "run.seed=3"))
    model, cfg = model_from_checkpoint(load_checkpoint(result.checkpoint))
    assert isinstance(model, Network) and not model.is_supernet and model.genotype_ == result.genotype
    other = train(smoke(runs_dir, "search.genotype=random", "run.seed=4", "meta.iterations=0")).genotype
    assert other != result.genotype  # the seed draws the architecture


@pytest.mark.slow
def test_time_budget_stops_early_with_a_checkpoint(runs_dir):
    result = train(smoke(runs_dir, "meta.iterations=100000", "meta.time_budget=3"))
    assert 0 < load_checkpoint(result.checkpoint)["iteration"] < 100000


@pytest.mark.slow
def test_evaluate_cli_reports_ci_curve_and_op_wins(smoke_run, runs_dir):
    run_id, _ = smoke_run
    out = run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--tasks", "12", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    assert "op wins per edge (alpha_normal" in out.stdout and "query accuracy:" in out.stdout
    frozen = run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--tasks", "12", "--no-arch-adapt",
                     "--no-track", "--output-dir", str(runs_dir))
    assert frozen.returncode == 0 and "w only (architecture fixed)" in frozen.stdout
    # alpha frozen at test time: one genotype wins on every edge in every task
    assert all(float(x.split("=")[-1]) == 1.0 for line in frozen.stdout.splitlines() if line.startswith("op wins")
               for x in line.split(":", 1)[1].split())


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
    assert "±" in blur and 0.0 <= float(blur.split("|")[4]) <= 1.0
    run = client(runs_dir).get_run(out.stdout.splitlines()[-1].split()[-1])
    assert "suite/omniglot-5way-shift-blur/accuracy" in run.data.metrics
