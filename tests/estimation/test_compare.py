"""``metanas compare``: several methods' warm starts on the same seeded tasks, paired.

Every figure it prints is checked against the same warm starts evaluated one by one through the API at the same seed
and number of tasks: a comparison that drew other tasks, or another seed, than ``metanas evaluate`` would fail here.
(Before ``benchmarks/transfer.py`` was removed, its table and ``metanas compare``'s were diffed on four smoke warm
starts, three families and a variant: identical to the digit.)
"""

import shutil

import pytest
import torch
from conftest import client, run_cli

import metanas
from metanas.core.errors import MetanasError
from metanas.estimation.compare import compare, compare_as_trained, paired
from metanas.estimation.stats import mean_ci95
from metanas.meta.adaptation import Adaptation
from metanas.meta.checkpoint import write_adaptation

FAMILY = "omniglot-5way-shift-blur"


@pytest.fixture(scope="module")
def two_methods(smoke_run, runs_dir, tmp_path_factory):
    """Method a: the smoke warm start; method b: the same network adapting differently (1 step, alpha fixed)."""
    run_id, _ = smoke_run
    a = metanas.load(run_id, output_dir=str(runs_dir))
    other = tmp_path_factory.mktemp("compare") / "b.pt"
    shutil.copy(a.path, other)
    write_adaptation(other, {"steps": 1, "lr_alpha": 0.0})
    return a, metanas.load(str(other))


def _cells(stdout: str) -> dict[str, list[str]]:
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in stdout.splitlines() if line.startswith("| ")]
    return {r[0]: r for r in rows}


def _accuracies(warm, seed: int, tasks: int = 4, adaptation=None) -> torch.Tensor:
    return metanas.evaluate(warm, FAMILY, tasks, seed=seed, adaptation=adaptation, curve=False)[1].accuracies


@pytest.mark.slow
def test_compare_pairs_methods_on_the_tasks_evaluate_adapts(two_methods, runs_dir):
    a, b = two_methods
    out = run_cli("-m", "metanas.cli", "compare", "--method", f"a={a.path},{a.path}", "--method", f"b={b.path},{b.path}",
                  "--families", f"{FAMILY},no-such-family", "--tasks", "4", "--seed", "5",
                  "--variant", "steps0:steps=0", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    assert "no-such-family: skipped (unknown task family" in out.stdout
    cells = _cells(out.stdout)
    head, row = cells["family"], cells[FAMILY]
    assert head[2:] == ["a (mean, seed range)", "b (mean, seed range)", "a - b (paired)", "a - best other",
                        "arch adaptation gain", "steps0 - plain"]
    # the same tasks as metanas evaluate at seed 5, adapted as each checkpoint says
    acc_a, acc_b = _accuracies(a, 5), _accuracies(b, 5)
    assert not torch.equal(acc_a, acc_b)  # the two methods differ: the pairing below is not trivially zero
    cell = lambda acc: f"{100 * acc.mean():.2f} ({100 * acc.mean():.1f}-{100 * acc.mean():.1f})"
    points = lambda pair: f"{100 * pair[0]:+.2f} ± {100 * pair[1]:.2f}"
    assert row[2:4] == [cell(acc_a), cell(acc_b)]
    assert row[4] == points(mean_ci95(acc_a - acc_b)) and row[5] == f"{row[4]} (b)"
    fixed = _accuracies(a, 5, adaptation=a.adaptation.replace(lr_alpha=0.0))
    assert row[6] == points(mean_ci95(acc_a - fixed))
    assert row[7] == points(mean_ci95(_accuracies(a, 5, adaptation=a.adaptation.replace(steps=0)) - acc_a))
    # another seed draws other tasks: the table would not match seed 5's
    assert not torch.equal(_accuracies(a, 6), acc_a)
    # one MLflow run holds the table and the figure of the paired differences
    run_id = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("run id:"))
    artifacts = {f.path for f in client(runs_dir).list_artifacts(run_id)} | \
        {f.path for f in client(runs_dir).list_artifacts(run_id, "plots")}
    assert {"compare.md", "compare.csv", "plots/paired_differences.png"} <= artifacts
    metrics = client(runs_dir).get_run(run_id).data.metrics
    assert metrics[f"{FAMILY}/a-b"] == pytest.approx(mean_ci95(acc_a - acc_b)[0])


@pytest.mark.slow
def test_compare_sets_every_warm_starts_adaptation_and_refuses_bad_input_in_one_line(two_methods, runs_dir):
    a, b = two_methods
    common = ["-m", "metanas.cli", "compare", "--families", FAMILY, "--tasks", "4", "--no-track"]
    out = run_cli(*common, "--method", f"a={a.path}", "--method", f"b={b.path}", "--steps", "1", "--lr-alpha", "0")
    assert out.returncode == 0, out.stderr
    row = _cells(out.stdout)[FAMILY]
    assert row[2] == row[3] and row[4] == "+0.00 ± 0.00"  # both adapt 1 step with alpha fixed: the same network
    assert row[6] == "+0.00 ± 0.00"  # alpha step 0 everywhere: adapting the architecture gains exactly nothing
    for args, words in ((["--method", f"a={a.path}", "--method", f"b={b.path},{b.path}"], "same number of warm starts"),
                        (["--method", "a"], "give NAME=RUN"),
                        (["--method", f"a={a.path}", "--variant", "x:steps=two"], "steps must be a number"),
                        (["--method", f"a={a.path}", "--variant", "x:depth=2"], "give steps=N and/or lr_alpha=A"),
                        (["--method", f"a={a.path}", "--lr-alpha", "-1"], "lr_alpha (--lr-alpha) -1.0: must be >= 0")):
        bad = run_cli(*common, *args)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and words in bad.stderr, bad.stderr


def test_the_library_pairs_seed_by_seed_and_checks_its_methods(two_methods):
    a, b = two_methods
    a1 = a.with_adaptation(Adaptation(steps=1, lr_alpha=0.5))
    result = compare({"a": [a, a1], "b": [b, b]}, [(FAMILY, "held out")], tasks=3, seed=2)
    (row,) = result.rows
    acc = lambda w: metanas.evaluate(w, FAMILY, 3, seed=2, curve=False)[1].accuracies
    assert [torch.equal(x, y) for x, y in zip(row.accuracies["a"], [acc(a), acc(a1)])] == [True, True]
    # the per-task accuracy averaged over seeds, then paired over tasks
    assert paired(row.accuracies["a"], row.accuracies["b"]) == mean_ci95((acc(a) + acc(a1)) / 2 - acc(b))
    assert result.table()[1][0][1] == "held out" and result.figure() is not None
    with pytest.raises(MetanasError, match="same number of warm starts"):
        compare({"a": [a, a], "b": [b]}, [(FAMILY, "")], tasks=3, seed=2)
    other = b.with_config({"run.seed": 7})
    with pytest.raises(MetanasError, match="differ in"):
        compare_as_trained({"a": [a], "b": [other]})


@pytest.mark.slow
def test_compare_as_trained_re_tests_each_warm_start_as_meta_training_did(smoke_run, runs_dir):
    """The accuracy meta-training printed, to the digit (on the CPU; on CUDA under run.deterministic), and the pair
    of a warm start with itself is exactly zero."""
    run_id, train = smoke_run
    printed = next(line for line in train.stdout.splitlines() if line.startswith("test accuracy:"))
    out = run_cli("-m", "metanas.cli", "compare", "--method", f"a={run_id}", "--method", f"b={run_id}", "--as-trained",
                  "--tasks", "10", "--no-track", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    row = _cells(out.stdout)["omniglot-5way"]
    assert row[1] == "as trained" and row[4] == "+0.00 ± 0.00"
    assert printed.split()[2].rstrip("%") == row[2].split()[0]  # e.g. 'test accuracy: 31.20 ± 4.10% ...'


@pytest.mark.slow
def test_compare_rank_scores_validation_classes_and_test_classes(two_methods, runs_dir):
    a, b = two_methods
    out = run_cli("-m", "metanas.cli", "compare", "--method", f"a={a.path}", "--method", f"b={b.path}", "--rank",
                  "omniglot-5way-shift-val:omniglot-5way-shift-blur", "--tasks", "4", "--validation-tasks", "4",
                  "--no-track")
    assert out.returncode == 0, out.stderr
    row = _cells(out.stdout)["omniglot-5way-shift-val"]
    assert row[1] == "omniglot-5way-shift-blur" and "p =" in row[2] and row[4] in ("a", "b")
    alone = run_cli("-m", "metanas.cli", "compare", "--method", f"a={a.path}", "--rank", "x:y", "--no-track")
    assert alone.returncode == 2 and "at least two --method" in alone.stderr
