"""Discrete search strategies: the encoding, the strategies on a scorer with a known optimum, budget accounting,
validation/test separation on real Omniglot, and ``metanas search`` end to end in a subprocess."""

import random
import re
import zlib
from pathlib import Path

import pytest
import torch
from conftest import client, run_cli

from metanas.config import load_config
from metanas.data import get_tasksets, load_family
from metanas.data.images import ImageFormat
from metanas.search.driver import run_strategies
from metanas.search.strategies import STRATEGIES, best, search
from metanas.space import create_space
from metanas.space.darts import GenotypeEncoding
from metanas.meta.warm_start import WarmStart

OPS = ["max_pool_3x3", "skip_connect", "conv_3x3"]


def darts(ops, nodes):
    return create_space(load_config(None, ["search.space=darts", f"search.ops=[{','.join(ops)}]", f"search.nodes={nodes}"]).search)


DARTS = darts(OPS, 3)


def genotype_distance(a, b):
    return DARTS.distance(a, b)  # one space object: building one per call (config merge) costs ~1 ms


def test_encoding_round_trips_every_genotype_and_mutates_one_decision():
    enc = GenotypeEncoding(OPS + ["none"], nodes=3, k=2)
    assert enc.ops == OPS and enc.size == (1 * 9 * 3 * 9 * 6 * 9) ** 2
    g = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    for _ in range(50):
        geno = darts(OPS, 3).random(g)
        x = enc.encode(geno)
        assert genotype_distance(enc.decode(x), geno) == 0 and enc.encode(enc.decode(x)) == x
        y = enc.mutate(x, rng)
        assert sum(a != b for a, b in zip(x, y)) == 1
        assert all(0 <= v < c for v, (_, c) in zip(enc.sample(rng), enc.decisions))
    alphas = {"alpha_normal": torch.randn(9, 4), "alpha_reduce": torch.randn(9, 4)}
    derived = darts(OPS + ["none"], 3).derive(alphas)
    assert genotype_distance(enc.decode(enc.encode(derived)), derived) == 0


class KnownOptimum:
    """A fake-cheap scorer: per task, 1 - distance to a hidden genotype, plus task noise that averages out."""

    def __init__(self, enc, seed, tasks=9, noise=0.05):
        self.target = enc.decode(enc.sample(random.Random(1000 + seed)))
        self.tasks, self.noise, self.spent, self.calls = tasks, noise, 0.0, []

    def accuracies(self, genotype, start=0, stop=None):
        stop = self.tasks if stop is None else stop
        self.spent += (stop - start) / self.tasks
        self.calls.append((start, stop))
        # crc32, not hash(): str hashes are salted per process (PYTHONHASHSEED), which made the noise, and so
        # whether a strategy beats random, differ from run to run.
        g = torch.Generator().manual_seed(zlib.crc32(str(genotype).encode()))
        noise = self.noise * torch.randn(self.tasks, generator=g)[start:stop]
        return 1 - genotype_distance(genotype, self.target) + noise - noise.mean() * (stop - start == self.tasks)


def found_optimum(name, seed, budget=150):
    enc = GenotypeEncoding(OPS, nodes=2, k=2)
    scorer = KnownOptimum(enc, seed)
    trials = search(STRATEGIES[name](enc, seed), scorer, budget)
    top = best(trials, scorer.tasks)
    first = max(t.score for t in trials[:10] if t.tasks == scorer.tasks)
    return genotype_distance(top.genotype, scorer.target) == 0, top.score, first, scorer, trials


def test_evolution_and_reinforce_find_a_known_optimum_more_often_than_random():
    runs = {name: [found_optimum(name, seed) for seed in range(8)] for name in ("random", "evolution", "reinforce")}
    hits = {name: sum(r[0] for r in rs) for name, rs in runs.items()}
    mean_best = {name: sum(r[1] for r in rs) / len(rs) for name, rs in runs.items()}
    assert hits["evolution"] > hits["random"] and hits["reinforce"] > hits["random"], hits
    assert mean_best["evolution"] > mean_best["random"] and mean_best["reinforce"] > mean_best["random"], mean_best


@pytest.mark.parametrize("name", ["random", "evolution", "reinforce", "bohb"])
def test_each_strategy_improves_on_its_first_proposals_and_spends_exactly_its_budget(name):
    for seed in range(3):
        _, top, first, scorer, trials = found_optimum(name, seed, budget=60)
        assert top > first
        if name == "bohb":  # partial evaluations cost their fraction; the last one may overshoot by < 1
            assert any(t.tasks < scorer.tasks for t in trials) and 60 <= scorer.spent < 61
            assert len(trials) > 60  # early stopping buys more candidates for the same budget
        else:
            assert scorer.spent == 60 and len(trials) == 60 and all(c == (0, 9) for c in scorer.calls)


def test_bohb_beats_random_on_average_at_equal_budget():
    mean = lambda name: sum(found_optimum(name, s, budget=60)[1] for s in range(6)) / 6
    assert mean("bohb") > mean("random")


def test_darts_strategy_scores_the_warm_genotype_once():
    enc = GenotypeEncoding(OPS, nodes=2, k=2)
    scorer = KnownOptimum(enc, 0)
    trials = search(STRATEGIES["darts"](enc, 0, genotype=scorer.target), scorer, 50)
    assert len(trials) == 1 and scorer.spent == 1 and trials[0].score == pytest.approx(1.0)


class Recording:
    """A task set that records every draw (a real TaskDataset inside)."""

    def __init__(self, inner, log, split):
        self.inner, self.log, self.split = inner, log, split

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def sample(self, generator):
        self.log.append(self.split)
        return self.inner.sample(generator)

    def sample_batch(self, n, generator):
        self.log += [self.split] * n
        return self.inner.sample_batch(n, generator)


def test_search_scores_on_validation_tasks_only_and_reports_on_unseen_test_classes(smoke_run, runs_dir):
    run_id, _ = smoke_run
    warm = WarmStart.load(run_id, runs_dir)
    sets = get_tasksets(load_family("omniglot-5way"))
    log, phase = [], []
    sets = sets._replace(train=Recording(sets.train, log, "train"), validation=Recording(sets.validation, log, "validation"),
                         test=Recording(sets.test, phase, "test"))
    results = run_strategies(["random", "evolution"], warm, sets, budget=3, val_tasks=2, test_tasks=4, steps=1, seed=0)
    assert set(log) == {"validation"} and len(log) == 2 * 3 * 2  # 2 strategies x 3 candidates x 2 tasks
    assert phase == ["test"] * 2 * 4  # the winners only, on test tasks
    val, test = set(sets.validation.inner.dataset.class_names), set(sets.test.inner.dataset.class_names)
    assert val and test and not val & test  # disjoint classes: the search never saw a test character
    assert all(r.trials[-1].spent == 3 and 0 <= r.test.mean <= 1 for r in results)


@pytest.mark.slow
def test_search_cli_end_to_end_logs_to_mlflow_and_its_genotype_adapts(smoke_run, runs_dir, tmp_path):
    run_id, _ = smoke_run
    out = run_cli("-m", "metanas.cli", "search", "--strategy", "evolution", "--budget", "4", "--val-tasks", "2",
                  "--test-tasks", "4", "--run-id", run_id, "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    assert re.search(r"test accuracy: [\d.]+ ± [\d.]+% \(4 tasks\)  vs the warm start's argmax genotype", out.stdout)
    best_file = Path(re.search(r"best genotype file: (\S+)", out.stdout).group(1))
    search_run = out.stdout.splitlines()[-1].split()[-1]
    c = client(runs_dir)
    run = c.get_run(search_run)
    assert run.data.tags["mlflow.parentRunId"] == run_id
    assert [m.step for m in c.get_metric_history(search_run, "search/evolution/score")] == [0, 1, 2, 3]
    assert "search/darts/test_accuracy" in run.data.metrics
    arts = {a.path for a in c.list_artifacts(search_run, "search")} | \
        {a.path for a in c.list_artifacts(search_run, "plots")}
    assert {"search/best_genotype.json", "search/table.csv", "search/evolution.json",
            "plots/best_genotype.png", "plots/search_progress.png"} <= arts
    adapted = run_cli("-m", "metanas.cli", "adapt", "--genotype", str(best_file), "--tasks", "2", "--run-id", run_id,
                      "--output-dir", str(runs_dir), "--no-track")
    assert adapted.returncode == 0, adapted.stderr
    assert "w only (architecture fixed)" in adapted.stdout
    warm = WarmStart.load(run_id, runs_dir)
    assert warm.space.describe(warm.space.read(best_file)) in adapted.stdout


def tables(stdout: str) -> dict[str, list[list[str]]]:
    """The markdown tables of a command's output, by their first column's header: rows of cells."""
    out, current = {}, None
    for line in stdout.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if current is None:
            current = out.setdefault(cells[0], [])
        elif not set(cells[0]) <= set("-:"):
            current.append(cells)
    return out


@pytest.mark.slow
def test_search_compare_writes_a_table_and_plot_over_all_strategies(smoke_run, runs_dir, tmp_path):
    """Every strategy at one budget; each winner paired against the mean random child; each learned surrogate's
    Kendall tau against the supernet score of held-out children and against --children's stand-alone accuracy."""
    import csv as csvlib
    import json
    import random as rnd

    run_id, _ = smoke_run
    warm = WarmStart.load(run_id, runs_dir)
    enc, rng = warm.space.encoding(), rnd.Random(5)
    children = tmp_path / "children.csv"  # what --rank-children --csv writes, with made-up stand-alone accuracies
    with children.open("w", newline="") as f:
        w = csvlib.writer(f)
        w.writerow(["child", "weight_sharing", "stand_alone", "stand_alone_ci95", "iterations", "architecture"])
        for i in range(6):
            w.writerow(["random", 0.5, 0.3 + 0.1 * i, 0.01, 2, json.dumps(warm.space.dump(enc.decode(enc.sample(rng))))])
    out = run_cli("-m", "metanas.cli", "search", "--compare", "--budget", "3", "--val-tasks", "2", "--held-out", "5",
                  "--test-tasks", "3", "--children", str(children), "--run-id", run_id, "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    t = tables(out.stdout)
    assert [r[0] for r in t["strategy"]] == list(STRATEGIES)
    assert len(t["strategy"]) == 9 and {"nasrl", "pnas", "bo", "nao"} <= {r[0] for r in t["strategy"]}
    assert all(re.fullmatch(r"[+-][\d.]+ ± [\d.]+", r[5]) for r in t["strategy"])  # − mean random child (paired)
    assert [r[0] for r in t["surrogate"]] == ["pnas", "bo", "nao"]  # the learned surrogates, each ranked twice
    assert all(re.match(r"[+-][\d.]+ \(p [\d.]+, [3-6]\)", cell) for r in t["surrogate"] for cell in r[1:]), t
    folder = Path(re.search(r"table and plots: (\S+)", out.stdout).group(1))
    assert (folder / "search_progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((folder / "table.csv").read_text().splitlines()) == 1 + len(STRATEGIES)
    rows = list(csvlib.DictReader((folder / "surrogates.csv").open()))
    assert {(r["strategy"], r["against"]) for r in rows} == {(n, k) for n in ("pnas", "bo", "nao")
                                                          for k in ("supernet", "stand_alone")}
    metrics = client(runs_dir).get_run(out.stdout.splitlines()[-1].split()[-1]).data.metrics
    assert {f"search/{n}/tau_{k}" for n in ("pnas", "bo", "nao") for k in ("supernet", "stand_alone")} <= set(metrics)
    assert "search/evolution/over_random_child" in metrics


def test_search_rejects_an_unknown_strategy_in_one_line(smoke_run, runs_dir):
    out = run_cli("-m", "metanas.cli", "search", "--strategy", "annealing", "--run-id", smoke_run[0],
                  "--output-dir", str(runs_dir))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "random, evolution, reinforce" in out.stderr


def test_cost_budget_scores_expensive_candidates_zero_without_adapting_them():
    from types import SimpleNamespace

    from metanas.search.driver import CostBudget

    space = create_space(load_config(None, ["search.space=chain", "search.channels=64"]).search)
    inner = SimpleNamespace(tasks=4, spent=0.0, seen=[])

    def accuracies(arch, start=0, stop=None):
        inner.seen.append(arch)
        inner.spent += 1
        return torch.ones(4)

    inner.accuracies = accuracies
    warm = SimpleNamespace(space=space, image=ImageFormat(1, 28))
    conv4 = space.named()["conv4"]
    cheap = (("conv_3x3", 32, "max"),) * 4
    budget = CostBudget(inner, warm, 5, max_flops=space.cost(cheap, 5, 28) * 1.01)
    assert budget.accuracies(conv4).sum() == 0 and inner.seen == []  # over budget: not adapted
    assert budget.accuracies(cheap).sum() == 4 and inner.seen == [cheap]
    assert 1 < budget.spent < 1.1  # a rejection is nearly free, not free: a search over rejections still ends


@pytest.mark.slow
def test_rank_children_scores_each_child_both_ways_and_pairs_the_searched_one(smoke_run, runs_dir, tmp_path):
    """Random children (distinct), the searched and the argmax child: each with a weight-sharing score and a
    stand-alone accuracy after exactly --child-iterations meta-iterations; Kendall tau over them; the searched child
    paired with the random ones."""
    import csv as csvlib

    run_id, _ = smoke_run
    csv = tmp_path / "ranking.csv"
    out = run_cli("-m", "metanas.cli", "search", "--checkpoint", str(runs_dir / "checkpoints" / f"{run_id}.pt"),
                  "--rank-children", "3", "--child-iterations", "2", "--val-tasks", "2", "--test-tasks", "4",
                  "--budget", "1", "--output-dir", str(tmp_path), "--csv", str(csv), "--child-override",
                  "meta.meta_batch=1", "--no-track")
    assert out.returncode == 0, out.stderr
    rows = list(csvlib.DictReader(csv.open()))
    assert [r["child"] for r in rows] == ["random"] * 3 + ["searched", "argmax"]
    assert len({r["architecture"] for r in rows[:3]}) == 3  # distinct random children
    assert all(r["iterations"] == "2" and 0 <= float(r["weight_sharing"]) <= 1 and 0 <= float(r["stand_alone"]) <= 1
               for r in rows)
    assert "5 children: Kendall tau" in out.stdout
    assert "searched child minus the mean random child, paired over 4 tasks" in out.stdout
