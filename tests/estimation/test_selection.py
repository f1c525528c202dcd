"""Choosing a warm start's adaptation (steps, alpha's step) on its validation tasks: at the end of meta-training
(inner.select_*), from the API and with ``metanas select-adaptation``; the choice travels in the checkpoint."""

import json
import shutil

import pytest
import torch

import metanas
from metanas.meta.adaptation import Adaptation
from metanas.meta.checkpoint import read
from metanas.estimation.selection import fastest_tied
from metanas.estimation.stats import best_row

SELECT = ["inner.select_steps=[0,3]", "inner.select_lr_alpha=[0,1.0]", "inner.select_tasks=6"]
TINY = ["search.space=chain", "search.widths=[4,8]", "search.channels=8", "run.progress=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("select")
    cfg = metanas.load_config("configs/smoke.yaml", [f"run.output_dir={out}", *TINY, *SELECT])
    return metanas.train(cfg), cfg, out


def test_meta_training_chooses_the_adaptation_on_validation_and_keeps_it(trained):
    from conftest import client

    result, cfg, out = trained
    kept = read(result.checkpoint)["adaptation"]
    (out / "dl").mkdir()
    with open(client(out).download_artifacts(result.run_id, "adaptation_selection.json", str(out / "dl"))) as f:
        logged = json.load(f)
    table = logged["candidates"]
    assert [(r["steps"], r["lr_alpha"]) for r in table] == [(0, 0.0), (0, 1.0), (3, 0.0), (3, 1.0)]
    assert kept == logged["chosen"] == max(table, key=lambda r: r["accuracy"])
    assert result.eval_steps == kept["steps"]  # the final test adapted with the chosen setting
    warm = metanas.load(str(result.checkpoint))
    inner = warm.inner_loop()
    assert warm.adaptation == Adaptation.from_dict(kept) and (inner.steps, inner.lr_alpha) == (kept["steps"], kept["lr_alpha"])
    # the checkpoint is still the run's own: resuming the finished run with the same config is accepted
    again = metanas.train(cfg, resume=str(result.checkpoint))
    assert again.steps == 0 and read(again.checkpoint)["adaptation"] == kept


def test_every_candidate_adapts_the_same_tasks_and_the_best_is_chosen(trained):
    result, _, _ = trained
    warm = metanas.load(str(result.checkpoint))
    best, table = metanas.select_adaptation(warm, [2, 2], [0.5], tasks=5)
    assert table[0]["accuracy"] == table[1]["accuracy"]  # the same setting twice: the same tasks, the same score
    best, table = metanas.select_adaptation(warm, [0, 2], [0.0, 0.5], tasks=5, rule="accuracy")
    assert len(table) == 4 and best["accuracy"] == pytest.approx(max(r["accuracy"] for r in table), abs=1e-6)
    # equal scores whose float32 means differ in the ninth digit (measured: 0.7740000014 at alpha step 3 and
    # 0.7740000024 at 6, the same correct answers) tie, and a tie goes to the candidate tried first
    tied = [{"accuracy": 0.7740000014, "lr_alpha": 3.0}, {"accuracy": 0.7740000024, "lr_alpha": 6.0},
            {"accuracy": 0.7730000000, "lr_alpha": 0.0}]
    assert best_row(tied)["lr_alpha"] == 3.0 and best_row(tied[::-1])["lr_alpha"] == 6.0
    straddling = [{"accuracy": 0.7740004999, "lr_alpha": 3.0}, {"accuracy": 0.7740005001, "lr_alpha": 6.0}]
    assert best_row(straddling)["lr_alpha"] == 3.0  # a tie across a 1e-6 rounding boundary is still a tie
    # architecture adaptation's paired gain: each alpha step against alpha step 0 at the same steps
    assert [r["arch_gain"] is None for r in table] == [True, False, True, False]
    assert table[3]["arch_gain"] == pytest.approx(table[3]["accuracy"] - table[2]["accuracy"], abs=1e-6)
    assert warm.with_adaptation(Adaptation.from_dict(best)).inner_loop().steps == best["steps"]
    fixed = warm.fixed(warm.derive())  # no alphas: only the steps are tried
    assert [r["steps"] for r in metanas.select_adaptation(fixed, [0, 2], [0.0, 0.5], tasks=3)[1]] == [0, 2]
    with pytest.raises(metanas.MetanasError, match=r"lr_alpha \(--lr-alpha\) \[-1.0\]: every value must be >= 0"):
        metanas.select_adaptation(warm, [2], [-1.0])
    with pytest.raises(metanas.MetanasError, match=r"inner.select_steps/inner.select_lr_alpha"):
        metanas.load_config(None, ["inner.select_steps=[3,-1]"])


def test_select_adaptation_command_keeps_the_choice_in_the_checkpoint(trained, tmp_path):
    from conftest import run_cli

    result, _, out = trained
    ckpt = shutil.copy(result.checkpoint, tmp_path / "warm.pt")
    sel = run_cli("-m", "metanas.cli", "select-adaptation", "--checkpoint", str(ckpt), "--steps", "1,4",
                  "--lr-alpha", "0,0.5", "--tasks", "3", "--output-dir", str(out))
    assert sel.returncode == 0, sel.stderr
    rows = [line for line in sel.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 4 and sum("**chosen**" in r for r in rows) == 1
    assert [r.split("|")[4].strip() == "-" for r in rows] == [True, False, True, False]  # gain over alpha step 0
    kept = read(tmp_path / "warm.pt")["adaptation"]
    assert f"chosen: {kept['steps']} steps, alpha step {kept['lr_alpha']}" in sel.stdout
    assert torch.equal(read(tmp_path / "warm.pt")["params"]["alpha_op"], read(result.checkpoint)["params"]["alpha_op"])
    ev = run_cli("-m", "metanas.cli", "evaluate", "--checkpoint", str(ckpt), "--tasks", "2", "--no-track",
                 "--output-dir", str(out))
    assert ev.returncode == 0, ev.stderr
    assert f"{kept['steps']} steps on" in ev.stdout  # adapt/evaluate now adapt as chosen (the checkpoint had 2)
    bad = run_cli("-m", "metanas.cli", "select-adaptation", "--checkpoint", str(ckpt), "--steps", "1,x")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "comma-separated" in bad.stderr


def test_rank_agreement_measures_how_a_validation_score_chooses_for_a_target():
    from metanas.estimation.stats import rank_agreement

    val = {"a": [0.70, 0.72], "b": [0.60, 0.61], "c": [0.65, 0.66]}
    same = rank_agreement(val, {"a": [0.9, 0.91], "b": [0.7, 0.72], "c": [0.8, 0.81]})
    assert same["tau"] == pytest.approx(1.0) and same["tau_methods"] == pytest.approx(1.0)
    assert same["picked"] == "a" and same["regret"] == 0.0
    flipped = rank_agreement(val, {"a": [0.52, 0.5], "b": [0.92, 0.9], "c": [0.71, 0.7]})
    assert flipped["tau"] == pytest.approx(-1.0) and flipped["tau_methods"] == pytest.approx(-1.0)
    assert flipped["picked"] == "a" and flipped["regret"] == pytest.approx(0.51 - 0.91)  # chose the worst
    # a validation tie goes to the method listed first, as select_adaptation's does
    tied = rank_agreement({"a": [0.5], "b": [0.5]}, {"a": [0.1], "b": [0.9]})
    assert tied["picked"] == "a" and tied["regret"] == pytest.approx(-0.8)
    with pytest.raises(ValueError, match="same >= 2 methods"):
        rank_agreement(val, {"a": [0.9, 0.91], "b": [0.7, 0.72]})


def test_adapt_domain_sets_alpha_to_the_mean_adapted_alpha_of_the_domains_tasks(trained):
    from metanas.space.base import alphas_of

    result, _, _ = trained
    warm = metanas.load(str(result.checkpoint))
    warm = warm.with_adaptation(Adaptation(steps=2, lr_alpha=1.0))
    before = {k: v.clone() for k, v in alphas_of(warm.params).items()}
    family = "omniglot-5way-shift-invert"
    domain, info = metanas.api.adapt_domain(warm, family, tasks=4, rounds=2, seed=7)
    assert info == {"family": family, "split": "validation", "tasks": 4, "rounds": 2, "seed": 7}
    assert domain.adaptation == Adaptation(steps=2, lr_alpha=1.0)
    # computed independently: round 1 from the warm start (tasks of seed 7), round 2 from round 1's alpha (seed 8)
    first = metanas.evaluate(warm, family, 4, seed=7, curve=False, split="validation")[1].alphas
    assert all(torch.equal(warm.params[k], before[k]) for k in before)  # the warm start itself is left as it was
    one, _ = metanas.api.adapt_domain(warm, family, tasks=4, rounds=1, seed=7)
    assert all(torch.allclose(one.params[k], first[k].mean(0), atol=1e-6) for k in before)
    second = metanas.evaluate(one, family, 4, seed=8, curve=False, split="validation")[1].alphas
    assert all(torch.allclose(domain.params[k], second[k].mean(0), atol=1e-6) for k in before)
    assert not torch.allclose(domain.params["alpha_op"], before["alpha_op"])
    assert all(torch.equal(domain.params[k], warm.params[k]) for k in domain.params if k not in before)  # w kept
    # a family of test classes only: other tasks of its test classes
    assert metanas.api.adapt_domain(warm, "digits-5way", tasks=2, seed=7)[1]["split"] == "test"
    with pytest.raises(metanas.MetanasError, match="must be >= 1"):
        metanas.api.adapt_domain(warm, family, tasks=0)
    with pytest.raises(metanas.MetanasError, match="only a supernet's architecture"):
        metanas.api.adapt_domain(warm.fixed(warm.derive()), family)
    warm = warm.with_adaptation(Adaptation(steps=2, lr_alpha=0.0))
    with pytest.raises(metanas.MetanasError, match="alpha step 0"):
        metanas.api.adapt_domain(warm, family)


def test_adapt_domain_command_writes_a_new_checkpoint_that_evaluate_reads(trained, tmp_path):
    from conftest import run_cli

    result, _, out = trained
    ckpt = shutil.copy(result.checkpoint, tmp_path / "warm.pt")
    original = read(ckpt)
    dom = run_cli("-m", "metanas.cli", "adapt-domain", "--checkpoint", str(ckpt), "--task", "omniglot-5way-shift-invert",
                  "--tasks", "3", "--steps", "2", "--lr-alpha", "1.0", "--out", str(tmp_path / "invert.pt"), "--output-dir", str(out))
    assert dom.returncode == 0, dom.stderr
    assert "the mean adapted alpha of 3 tasks of its validation classes" in dom.stdout
    moved = read(tmp_path / "invert.pt")
    assert moved["domain"]["family"] == "omniglot-5way-shift-invert" and moved["domain"]["tasks"] == 3
    assert moved["adaptation"] == {"steps": 2, "lr_alpha": 1.0}  # its tasks adapt as the calibration's did
    alphas = [k for k in original["params"] if k.startswith("alpha_")]
    assert alphas and any(not torch.equal(moved["params"][k], original["params"][k]) for k in alphas)
    assert all(torch.equal(moved["params"][k], v) for k, v in original["params"].items() if k not in alphas)
    assert all(torch.equal(read(ckpt)["params"][k], v) for k, v in original["params"].items())  # source untouched
    ev = run_cli("-m", "metanas.cli", "evaluate", "--checkpoint", str(tmp_path / "invert.pt"), "--tasks", "2",
                 "--task", "omniglot-5way-shift-invert", "--no-track", "--output-dir", str(out))
    assert ev.returncode == 0, ev.stderr
    assert "alpha moved to omniglot-5way-shift-invert by adapt-domain" in ev.stdout
    assert "[omniglot-5way-shift-invert, 2 steps on w and alpha]" in ev.stdout
    bad = run_cli("-m", "metanas.cli", "adapt-domain", "--checkpoint", str(ckpt), "--task", "omniglot-5way",
                  "--tasks", "0")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "must be >= 1" in bad.stderr
    same = run_cli("-m", "metanas.cli", "adapt-domain", "--checkpoint", str(ckpt), "--task", "omniglot-5way",
                   "--out", str(ckpt))
    assert same.returncode == 2 and same.stderr.strip().count("\n") == 0 and "own checkpoint" in same.stderr


def test_set_encoder_sets_each_tasks_starting_alpha_from_its_support_images(trained):
    from metanas.estimation.set_encoder import SetEncoder
    from metanas.space.base import alphas_of

    result, _, _ = trained
    warm = metanas.load(str(result.checkpoint))
    warm = warm.with_adaptation(Adaptation(steps=2, lr_alpha=1.0))
    alphas = alphas_of(warm.params)
    family = "omniglot-5way-shift-invert"
    plain = metanas.evaluate(warm, family, 4, seed=3, curve=False)[1]
    # untrained, it predicts no move: the same evaluation to the bit
    zero = SetEncoder(warm.image.channels, {k: v.shape for k, v in alphas.items()})
    same = metanas.evaluate(warm, family, 4, seed=3, curve=False, encoder=zero)[1]
    assert torch.equal(same.accuracies, plain.accuracies) and all(torch.equal(same.alphas[k], plain.alphas[k]) for k in alphas)
    # a known offset, alpha held fixed: every task's alpha is the warm start's plus the offset
    with torch.no_grad():
        zero.head[-1].bias.copy_(torch.linspace(-2, 2, zero.head[-1].bias.numel()))
    fixed = warm.adaptation.replace(lr_alpha=0.0)
    offsets = zero(torch.zeros(5, warm.image.channels, warm.image.size, warm.image.size))
    moved = metanas.evaluate(warm, family, 4, seed=3, curve=False, encoder=zero, adaptation=fixed)[1]
    assert all(torch.allclose(moved.alphas[k], (alphas[k] + offsets[k]).expand_as(moved.alphas[k])) for k in alphas)
    assert not torch.equal(moved.accuracies, metanas.evaluate(warm, family, 4, seed=3, curve=False, adaptation=fixed)[1].accuracies)
    # its constant control: the same offsets for any images
    control = zero.constant(torch.full_like(zero.head[-1].bias, 0.5))
    images = torch.randn(2, 5, warm.image.channels, warm.image.size, warm.image.size)
    assert torch.equal(control.flat(images), torch.full((2, zero.head[-1].bias.numel()), 0.5))


def test_set_encoder_learns_the_alpha_moves_of_the_training_tasks_seeded(trained):
    result, _, _ = trained
    warm = metanas.load(str(result.checkpoint))
    warm = warm.with_adaptation(Adaptation(steps=2, lr_alpha=1.0))
    fit = metanas.api.fit_set_encoder(warm, tasks=20, epochs=20, seed=5)
    assert (fit.tasks, fit.held_out) == (20, 4)
    assert fit.r2 > fit.zero_r2  # it predicts the held-out tasks' moves better than no move
    assert fit.mean_move.shape == fit.encoder.head[-1].bias.shape and fit.mean_move.abs().sum() > 0
    torch.rand(3)  # the global generator moved on: the encoder's weights come from the seed alone
    again = metanas.api.fit_set_encoder(warm, tasks=20, epochs=20, seed=5).encoder.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in fit.encoder.state_dict().items())
    with pytest.raises(metanas.MetanasError, match="at least 2"):
        metanas.api.fit_set_encoder(warm, tasks=1)
    with pytest.raises(metanas.MetanasError, match="only a supernet"):
        metanas.api.fit_set_encoder(warm.fixed(warm.derive()))
    with pytest.raises(metanas.MetanasError, match="alpha step 0"):
        metanas.api.fit_set_encoder(warm, adaptation=warm.adaptation.replace(lr_alpha=0))


def test_the_latency_rule_takes_the_fewest_steps_tied_with_the_most_accurate():
    """inner.select_rule=latency: the fewest steps whose paired 95% CI of the per-task difference to the most
    accurate candidate reaches 0; a candidate that loses on the same tasks, however slightly, is not tied."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(200, generator=g)
    def noise():  # per-task differences of mean 0 (so a row's mean is set exactly) and sd 0.05: CI about ±0.007
        n = 0.05 * torch.randn(200, generator=g)
        return n - n.mean()

    scores = {(10, 0.5): base + 0.02, (3, 0.5): base + 0.019 + noise(), (3, 0.0): base + 0.015 + noise(),
              (1, 0.5): base - 0.05, (2, 0.5): base + 0.018 + noise()}
    table = [{"steps": s, "lr_alpha": a, "accuracy": v.mean().item()} for (s, a), v in scores.items()]
    best = best_row(table)
    assert (best["steps"], best["lr_alpha"]) == (10, 0.5)
    chosen = fastest_tied(table, scores)
    assert (chosen["steps"], chosen["lr_alpha"]) == (2, 0.5)  # 1 step loses 7 points on every task: not tied
    del scores[2, 0.5]
    table = [r for r in table if r["steps"] != 2]
    chosen = fastest_tied(table, scores)  # of the tied rows at 3 steps, the more accurate
    assert (chosen["steps"], chosen["lr_alpha"]) == (3, 0.5)
    scores[1, 0.5] = base + 0.02 - 1e-3  # behind on every task by a hair: the CI is tight, not tied
    table = [{"steps": s, "lr_alpha": a, "accuracy": v.mean().item()} for (s, a), v in scores.items()]
    assert fastest_tied(table, scores)["steps"] == 3
    with pytest.raises(metanas.MetanasError, match=r"rule \(--rule\) 'fast': use one of latency, accuracy"):
        metanas.select_adaptation(None, rule="fast")


def test_the_default_chooses_by_latency_and_a_typo_in_the_rule_is_one_line():
    cfg = metanas.load_config(None, [])
    assert cfg.inner.select_rule == "latency" and 1 in cfg.inner.select_steps
    with pytest.raises(metanas.MetanasError, match="inner.select_rule"):
        metanas.load_config(None, ["inner.select_rule=fastest"])
