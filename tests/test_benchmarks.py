"""Smokes of the benchmark scripts (tiny sizes, no timing asserts): they run and print their figures.

Each script is a real subprocess that imports everything and adapts or meta-trains (tens of seconds), so they
are all slow but the synthetic miniImageNet writer (a data-layer check)."""

import pytest
from conftest import run_cli

from metanas.meta.warm_start import WarmStart

# Omniglot alone (--config omniglot: one source, no choice of adaptation), shrunk
TINY = ["--config", "omniglot", "search.space=darts", "search.channels=4", "search.cells=2", "search.nodes=1", "inner.steps=1", "meta.meta_batch=2",
        "task.queries=2", "meta.eval_tasks=2", "meta.eval_every=2"]


@pytest.mark.slow
def test_meta_step_benchmark_prints_ratio_flops_and_memory_table():
    out = run_cli("benchmarks/meta_step.py", "--no-reference", "--repeats", "1", "--chunks", "1,2", *TINY)
    assert out.returncode == 0, out.stderr
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in out.stdout.splitlines() if line.startswith("| "))}
    naive = float(rows["naive deepcopy loop (alternating)"][0])
    for name in ("metanas torch.func + vmap (alternating, same work)", "metanas joint w+alpha step (one backward per step)"):
        seconds, ratio = float(rows[name][0]), float(rows[name][1].removesuffix("x"))
        # "vs naive" is the naive loop's seconds over this row's, measured in the same run; the printed seconds
        # are rounded to 0.01 s, so the ratio recomputed from them has bounds
        assert seconds > 0 and ratio > 0
        assert (naive - 0.005) / (seconds + 0.005) - 0.005 <= ratio <= (naive + 0.005) / max(seconds - 0.005, 1e-9) + 0.005
    assert "GFLOP/s" in out.stdout and "| 2 |" in out.stdout and "inner alpha step" in out.stdout
    assert "(task family measured: omniglot-5way)" in out.stdout  # --config omniglot reached the measuring processes


@pytest.mark.slow
def test_adapt_latency_benchmark():
    out = run_cli("benchmarks/adapt_latency.py", "--tasks", "3", *TINY)
    assert out.returncode == 0, out.stderr
    assert "latency per task: median" in out.stdout and "accuracy after each step:" in out.stdout
    assert "omniglot-5way (5-way 1-shot)" in out.stdout  # --config omniglot chose the family


@pytest.mark.slow
def test_baselines_and_time_to_accuracy_benchmarks(tmp_path):
    # TINY without the space: metanas is the default (chain) space, conv4 the chain space's conv4; --config omniglot
    # goes under every method's own config
    common = ["--budget", "2", "--test-tasks", "4", *(a for a in TINY if a != "search.space=darts"),
              f"run.output_dir={tmp_path}"]
    out = run_cli("benchmarks/baselines.py", "--out", str(tmp_path / "b.md"), "--search-budget", "2", *common)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "b.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert rows == ["metanas", "no-arch-adapt", "conv4", "searched", "random", "frozen-alpha"]
    assert "conv_3x3@4/max > conv_3x3@4/max" in table  # conv4 is the chain space's conv4 at search.channels (max-pooled)
    # --warm reuses the metanas warm start: re-tested as meta-training tested it, its row is the same to the digit
    first = (tmp_path / "b.csv").read_text().splitlines()[1].split(",")
    conv4 = (tmp_path / "b.csv").read_text().splitlines()[3].split(",")
    for run_id, genotype in ((first[5], None), (conv4[5], "conv4")):
        cfg = WarmStart.load(tmp_path / "checkpoints" / f"{run_id}.pt").config
        assert (cfg.task.family, cfg.inner.select_steps, cfg.search.genotype) == ("omniglot-5way", [], genotype)
    out = run_cli("benchmarks/baselines.py", "--out", str(tmp_path / "w.md"), "--methods", "metanas,searched",
                  "--warm", str(tmp_path / "checkpoints" / f"{first[5]}.pt"), "--search-budget", "2", *common)
    assert out.returncode == 0, out.stderr
    again = (tmp_path / "w.csv").read_text().splitlines()
    same = lambda row: row[:4] + row[5:7]  # all but the wall seconds
    assert same(again[1].split(",")) == same(first) and again[2].startswith("searched,") and len(again) == 3
    out = run_cli("benchmarks/time_to_accuracy.py", "--out", str(tmp_path / "t.png"), *common)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = run_cli("benchmarks/time_to_accuracy.py", "--from-csv", str(tmp_path / "b.csv"), "--out",
                  str(tmp_path / "c.png"), f"run.output_dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" iterations, test ") == 2 and (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.slow
def test_scaling_benchmark_runs_one_and_two_torchrun_processes():
    out = run_cli("benchmarks/scaling.py", "--procs", "1", "2", "--meta-batch", "2", "--iterations", "2",
                  "--config", "configs/smoke.yaml")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.strip() and line.split()[0] in ("1", "2")]
    assert [r[0] for r in rows] == ["1", "2"]
    (_, _, one, _, _, _), (_, _, two, _, speedup, efficiency) = rows
    one, two, speedup = float(one), float(two), float(speedup.removesuffix("x"))
    # the speedup of 2 processes is 1 process's seconds per step over theirs (both printed to 0.001 s), and the
    # efficiency that speedup per process
    assert one > 0 and two > 0 and speedup > 0
    assert (one - 5e-4) / (two + 5e-4) - 0.005 <= speedup <= (one + 5e-4) / (two - 5e-4) + 0.005
    assert abs(float(efficiency.removesuffix("%")) - 100 * speedup / 2) <= 1


def test_synthetic_miniimagenet_writes_the_pickle_layout_with_the_published_classes(tmp_path, monkeypatch):
    from metanas.data.fewshot import load, split_classes

    out = run_cli("benchmarks/synthetic_miniimagenet.py", str(tmp_path), "--per-class", "3")
    assert out.returncode == 0, out.stderr
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    data = load("miniimagenet", [tmp_path], 84)
    assert data.images.shape == (300, 3, 84, 84)
    assert data.class_names == [n for names in split_classes("miniimagenet") for n in names]


@pytest.mark.slow
def test_paired_benchmark_pairs_the_same_tasks(smoke_run, runs_dir):
    run_id, _ = smoke_run
    out = run_cli("benchmarks/paired.py", run_id, run_id, "--tasks", "6", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    a, b, diff = out.stdout.strip().splitlines()[-3:]
    assert a.split(": ")[-1] == b.split(": ")[-1]  # the same warm start on the same tasks: the same accuracy
    assert "paired difference A - B on the same 6 tasks of omniglot-5way: +0.00 ± 0.00 points" in diff
    # --as-trained re-tests as meta-training tested (its queries, its seed): the accuracy it printed, to the digit
    tested = next(line for line in smoke_run[1].stdout.splitlines() if line.startswith("test accuracy: "))
    tasks = tested.split("(")[1].split()[0]
    out = run_cli("benchmarks/paired.py", run_id, run_id, "--as-trained", "--tasks", tasks, "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    a, b, diff = out.stdout.strip().splitlines()[-3:]
    assert a.split(": ")[-1] == b.split(": ")[-1] == tested.split(": ")[1].split("  [")[0]
    out = run_cli("benchmarks/paired.py", run_id, run_id, "--as-trained", "--seed", "3", "--output-dir", str(runs_dir))
    assert out.returncode != 0 and "--as-trained pairs two runs of the same" in out.stderr


@pytest.mark.slow
def test_arch_signal_benchmark_prints_alpha_and_weight_step_effects(smoke_run, runs_dir):
    run_id, _ = smoke_run
    out = run_cli("benchmarks/arch_signal.py", run_id, "--tasks", "4", "--families", "omniglot-5way,digits-5way",
                  "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| omniglot") or
            line.startswith("| digits")]
    assert [r[0].strip() for r in rows] == ["omniglot-5way", "digits-5way"]
    for r in rows:  # cosines are cosines, the share a percentage
        assert all(-1 <= float(r[i].split("±")[0]) <= 1 for i in (2, 4)) and r[5].strip().endswith("%")
        per = {k: float(v.rstrip("%")) for k, v in (x.split() for x in r[6].split(","))}
        assert set(per) and all(k.startswith("alpha_") for k in per)  # each alpha's share adds up to alpha's
        assert sum(per.values()) == pytest.approx(float(r[5].strip().rstrip("%")), abs=0.05 * len(per) + 1e-9)


@pytest.mark.slow
def test_adapt_sweep_pairs_each_setting_with_weights_only_on_validation_tasks(smoke_run, runs_dir):
    run_id, _ = smoke_run
    out = run_cli("benchmarks/adapt_sweep.py", run_id, "base", "lr_alpha=0", "steps=1,lr_alpha=2", "--tasks", "4",
                  "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    rows = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| omniglot-5way")]
    assert [r[1] for r in rows] == ["base", "lr_alpha=0", "steps=1,lr_alpha=2"]
    assert rows[1][2] == rows[1][3] and rows[1][4].startswith("+0.00 ± 0.00")  # alpha not adapted: no gain at all
    assert rows[0][3] == rows[1][3] != rows[2][3]  # one weights-only arm per number of steps


@pytest.mark.slow
def test_transfer_benchmark_pairs_methods_seeds_and_variants_on_the_same_tasks(smoke_run, runs_dir):
    """Two methods (here the same warm start twice, as two seeds each): paired on the same tasks, their
    difference is exactly zero; a family that does not exist is skipped with its reason; the adaptation
    variant and the architecture-adaptation gain get a paired column each."""
    run_id, _ = smoke_run
    out = run_cli("benchmarks/transfer.py", "--method", f"a={run_id},{run_id}", "--method", f"b={run_id},{run_id}",
                  "--families", "omniglot-5way-shift-blur,no-such-family", "--tasks", "4",
                  "--variant", "steps1:inner.eval_steps=1", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    assert "no-such-family: skipped (unknown task family" in out.stdout
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in table[0].split("|")[1:-1]]
    assert head[-3:] == ["a - best other", "arch adaptation gain", "steps1 - plain"]
    (row,) = [[c.strip() for c in line.split("|")[1:-1]] for line in table[1:]]
    assert row[0] == "omniglot-5way-shift-blur" and row[2] == row[3]  # same warm start: same accuracy
    assert row[head.index("a - b (paired)")] == "+0.00 ± 0.00"
    assert "±" in row[-2] and "±" in row[-1]
    # --inner sets every warm start's own adaptation: with alpha's step 0 adapting "alpha" gains exactly nothing,
    # with a huge step it changes the predictions
    gains = []
    for lr_alpha in ("0", "100"):
        out = run_cli("benchmarks/transfer.py", "--method", f"a={run_id}", "--families", "omniglot-5way-shift-blur",
                      "--tasks", "4", "--inner", f"inner.eval_lr_alpha={lr_alpha}", "--output-dir", str(runs_dir))
        assert out.returncode == 0, out.stderr
        gains += [line.split("|")[-2].strip() for line in out.stdout.splitlines() if line.startswith("| omniglot")]
    assert gains[0] == "+0.00 ± 0.00" != gains[1]
    # --encoder: the first method's tasks start from a set encoder's alpha (one fit per warm start, printed)
    out = run_cli("benchmarks/transfer.py", "--method", f"a={run_id}", "--method", f"b={run_id}", "--families",
                  "omniglot-5way-shift-blur", "--tasks", "4", "--encoder", "5", "--inner", "inner.eval_lr_alpha=0.5",
                  "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    assert "set encoder 0: 5 training tasks, R^2 on 1 held out" in out.stdout
    assert any(line.startswith("| omniglot-5way-shift-blur") for line in out.stdout.splitlines())


@pytest.mark.slow
def test_domain_alpha_benchmark_pairs_four_adaptations_on_the_same_tasks(smoke_run, runs_dir):
    """Per family: w only, per-task alpha, the domain's alpha, both; each paired with w only on the same tasks.
    With alpha's step 0 there is no domain alpha to estimate: one line, no traceback."""
    run_id, _ = smoke_run
    rows = {}
    for lr_alpha in ("0.5", "0"):
        args = ["--method", f"{run_id},{run_id}", "--families", "omniglot-5way-shift-invert,digits-5way", "--tasks",
                "4", "--calibration", "3", "--inner", f"inner.eval_lr_alpha={lr_alpha}", "--output-dir", str(runs_dir)]
        out = run_cli("benchmarks/domain_alpha.py", *args)
        if lr_alpha == "0":  # nothing to average: adapt_domain refuses, in one line
            assert out.returncode == 1 and out.stderr.strip().count("\n") == 0 and "alpha step 0" in out.stderr
            continue
        assert out.returncode == 0, out.stderr
        table = [[c.strip() for c in line.split("|")[1:-1]] for line in out.stdout.splitlines() if line.startswith("| ")]
        rows = {r[0]: r for r in table[1:]}
    assert rows["omniglot-5way-shift-invert"][1] == "validation" and rows["digits-5way"][1] == "test"
    assert all(len(r) == 6 and all("±" in c for c in r[3:]) for r in rows.values())
    # a set encoder's alpha instead of the domain's: its fit per warm start, its two columns and its zero-step
    # alpha against per-task gradient adaptation (w only from the warm start: the same accuracy as above)
    out = run_cli("benchmarks/domain_alpha.py", "--method", run_id, "--families", "omniglot-5way-shift-invert",
                  "--tasks", "4", "--calibration", "0", "--encoder", "6", "--inner", "inner.eval_lr_alpha=0.5",
                  "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    assert "set encoder 0: 6 training tasks, R^2 on 1 held out" in out.stdout
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in out.stdout.splitlines() if line.startswith("| ")]
    assert table[0][3:] == ["per-task alpha - w only", "encoder alpha, w only - w only",
                            "encoder alpha + per-task alpha - w only", "encoder alpha, w only - per-task alpha",
                            "encoder alpha, w only - training mean move, w only"]
    row = table[1]
    assert row[:3] == ["omniglot-5way-shift-invert", "-", rows["omniglot-5way-shift-invert"][2]]
    assert row[3] == rows["omniglot-5way-shift-invert"][3] and all("±" in c for c in row[3:])


@pytest.mark.slow
def test_selection_agreement_benchmark_scores_validation_classes_and_test_classes(smoke_run, runs_dir):
    """Each warm start scored on a validation family's validation classes and a target's test classes; the
    agreement table names the method the validation ranks first (here two methods of the same warm start: the
    first, losing nothing on the target). The statistics themselves: tests/test_selection.py."""
    run_id, _ = smoke_run
    out = run_cli("benchmarks/selection_agreement.py", "--method", f"a={run_id}", "--method", f"b={run_id}",
                  "--validation", "omniglot-5way-shift-val", "--target", "omniglot-5way-shift-blur", "--tasks", "3",
                  "--target-tasks", "3", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    scores = {line.split(":")[0]: line.split(": ")[1] for line in out.stdout.splitlines() if " a: " in line}
    assert set(scores) == {"omniglot-5way-shift-val (validation) a", "omniglot-5way-shift-blur (test) a"}
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in out.stdout.splitlines() if line.startswith("| ")]
    assert table[1][1:] == table[2][1:]  # the same warm start: the same scores
    (row,) = [r for r in table if r[0] == "omniglot-5way-shift-val" and r[1] == "omniglot-5way-shift-blur"]
    assert row[4:] == ["a", "+0.00"]
    out = run_cli("benchmarks/selection_agreement.py", "--method", f"a={run_id}", "--validation", "digits-5way",
                  "--target", "omniglot-5way", "--output-dir", str(runs_dir))
    assert out.returncode != 0 and "at least two --method" in out.stderr


@pytest.mark.slow
def test_ranking_benchmark_scores_each_child_both_ways_and_pairs_the_searched_one(smoke_run, runs_dir, tmp_path):
    """Random children (distinct), the searched and the argmax child: each with a weight-sharing score and a
    stand-alone accuracy after exactly --iterations meta-iterations; Kendall tau over them; the searched child
    paired with the random ones."""
    run_id, _ = smoke_run
    csv = tmp_path / "ranking.csv"
    out = run_cli("benchmarks/ranking.py", str(runs_dir / "checkpoints" / f"{run_id}.pt"), "--children", "3",
                  "--iterations", "2", "--val-tasks", "2", "--test-tasks", "4", "--search-budget", "1",
                  "--output-dir", str(tmp_path), "--csv", str(csv), "meta.meta_batch=1")
    assert out.returncode == 0, out.stderr
    import csv as csvlib

    rows = list(csvlib.DictReader(csv.open()))
    assert [r["child"] for r in rows] == ["random"] * 3 + ["searched", "argmax"]
    assert len({r["architecture"] for r in rows[:3]}) == 3  # distinct random children
    assert all(r["iterations"] == "2" and 0 <= float(r["weight_sharing"]) <= 1 and 0 <= float(r["stand_alone"]) <= 1
               for r in rows)
    assert "5 children: Kendall tau" in out.stdout
    assert "searched child minus the mean random child, paired over 4 tasks" in out.stdout
