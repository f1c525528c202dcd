"""The NAS-literature strategies (nasrl, pnas, bo, nao): each one's core step, each on both spaces against a cheap
scorer with a known optimum (better than random, deterministic for a seed), and on the real supernet."""

import random
import zlib

import numpy as np
import pytest
import torch

from metanas.config import load_config
from metanas.core.errors import MetanasError
from metanas.search.strategies import STRATEGIES, best, search
from metanas.space import create_space

NEW = ["nasrl", "pnas", "bo", "nao"]


def space(kind):
    if kind == "chain":
        return create_space(load_config(None, ["search.space=chain"]).search)
    return create_space(load_config(None, ["search.space=darts", "search.ops=[max_pool_3x3,skip_connect,conv_3x3]",
                                           "search.nodes=2"]).search)


ENCODINGS = {kind: space(kind).encoding() for kind in ("chain", "darts")}


class Hamming:
    """Per task: the fraction of decisions equal to a hidden target's, plus small per-architecture noise."""

    def __init__(self, enc, seed, tasks=4, noise=0.02):
        self.enc, self.target = enc, enc.sample(random.Random(1000 + seed))
        self.tasks, self.noise, self.spent = tasks, noise, 0.0

    def accuracies(self, genotype, start=0, stop=None):
        stop = self.tasks if stop is None else stop
        self.spent += (stop - start) / self.tasks
        x = self.enc.encode(genotype)
        g = torch.Generator().manual_seed(zlib.crc32(str(x).encode()))
        return sum(a == b for a, b in zip(x, self.target)) / len(x) + self.noise * torch.randn(stop - start, generator=g)


def run(name, kind, seed, budget=40, **kw):
    enc = ENCODINGS[kind]
    scorer = Hamming(enc, seed)
    trials = search(STRATEGIES[name](enc, seed, **kw), scorer, budget)
    return best(trials, scorer.tasks).score, trials


@pytest.mark.parametrize("kind", ["chain", "darts"])
@pytest.mark.parametrize("name", NEW)
def test_each_strategy_beats_random_on_both_spaces_and_is_deterministic_for_a_seed(name, kind):
    seeds = range(2)
    ours = [run(name, kind, s) for s in seeds]
    rand = [run("random", kind, s)[0] for s in seeds]
    assert sum(o[0] for o in ours) > sum(rand) + 0.1, (ours, rand)
    assert all(len(t) == 40 for _, t in ours)
    again = run(name, kind, 0)[1]
    assert [t.x for t in again] == [t.x for t in ours[0][1]]


def test_nasrl_controller_conditions_each_decision_on_the_earlier_ones():
    enc = ENCODINGS["chain"]
    controller = STRATEGIES["nasrl"](enc, 0).controller
    for d in (1, 5):
        dists = [controller.distribution([v] * d) for v in range(2)]
        assert not torch.allclose(dists[0], dists[1], atol=1e-4), dists  # same weights, other earlier decisions
    torch.testing.assert_close(controller.distribution([0, 1]), controller.distribution([0, 1]))


def test_pnas_surrogate_is_refitted_as_pairs_arrive_and_ranks_the_beam_expansions():
    enc = ENCODINGS["darts"]
    scorer = Hamming(enc, 0)
    strategy = STRATEGIES["pnas"](enc, 0, beam=4)
    fits = []
    for _ in range(6):  # six stages of four candidates
        for _ in range(4):
            x = strategy.ask()
            strategy.tell(x, float(scorer.accuracies(enc.decode(x)).mean()))
        fits.append(strategy.surrogate.fits)
    assert fits == [0, 1, 2, 3, 4, 5]  # one refit per stage, on every pair seen so far
    predictions = strategy.surrogate.predict(strategy.xs)
    rho = np.corrcoef(np.argsort(np.argsort(predictions.numpy())), np.argsort(np.argsort(strategy.ys)))[0, 1]
    assert rho > 0.9, rho  # its predictions follow the scores it was fitted on
    strategy.ask()  # the next stage: the expansions are scored in the surrogate's order
    ranked = [p for _, p in strategy.ranking]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) > 4
    assert strategy.surrogate.predict([x for x, _ in strategy.ranking]).tolist() == pytest.approx(ranked)


@pytest.mark.parametrize("kind", ["chain", "darts"])
def test_bo_gp_posterior_mean_interpolates_its_training_points(kind):
    enc = ENCODINGS[kind]
    strategy = STRATEGIES["bo"](enc, 0, noise=1e-8)
    rng = random.Random(0)
    for _ in range(15):
        x = enc.sample(rng)
        strategy.tell(x, rng.random())
    mean, std = strategy.posterior(strategy.xs)
    np.testing.assert_allclose(mean, strategy.ys, atol=1e-3)
    assert std.max() < 1e-2
    _, far = strategy.posterior([enc.sample(rng) for _ in range(5)])
    assert far.min() > std.max()


def test_bo_graphs_follow_the_space():
    from metanas.search.graphs import arch_graph

    adj, labels = arch_graph(ENCODINGS["chain"], [0] * 12)
    assert len(labels) == 6 and labels[1] == "conv_3x3|16|max" and adj[0] == [1] and adj[5] == []
    adj, labels = arch_graph(ENCODINGS["darts"], [0] * 12)  # 2 cells x (2 inputs + 2 nodes + output + 4 op nodes)
    assert len(labels) == 18 and sum(map(len, adj.values())) == 2 * (4 * 2 + 2)


def test_nao_decoder_inverts_its_encoder_on_the_training_architectures():
    enc = ENCODINGS["darts"]
    strategy = STRATEGIES["nao"](enc, 0)
    rng = random.Random(0)
    for _ in range(20):
        strategy.tell(enc.sample(rng), rng.random())
    strategy.train(300)
    decoded = strategy.model.decode(strategy.model.encode(torch.tensor(strategy.xs)))
    assert sum(d == x for d, x in zip(decoded, strategy.xs)) >= 19, (decoded, strategy.xs)


@pytest.mark.parametrize("name", NEW)
def test_a_space_without_decisions_fails_in_one_line(name):
    class Opaque:
        decisions = []

    with pytest.raises(MetanasError) as e:
        STRATEGIES[name](Opaque(), 0)
    assert "\n" not in str(e.value) and name in str(e.value)


def test_the_new_strategies_run_on_the_real_supernet(smoke_run, runs_dir):
    from metanas.data import get_tasksets, load_family
    from metanas.meta.warm_start import WarmStart
    from metanas.search.driver import run_strategies

    warm = WarmStart.load(smoke_run[0], runs_dir)
    sets = get_tasksets(load_family("omniglot-5way"))
    prior = [(warm.space.encoding().encode(warm.derive()), 0.5), (warm.space.encoding().encode(warm.derive()), 0.7)]
    results = run_strategies(NEW, warm, sets, budget=3, val_tasks=2, test_tasks=2, steps=1, seed=0, prior=prior)
    assert [r.strategy for r in results] == NEW
    assert [r.from_prior for r in results] == [False, True, True, True]  # the strategies with a learned surrogate
    assert all(len(r.trials) == 3 and r.trials[-1].spent == 3 and 0 <= r.test.mean <= 1 for r in results)


class FakeClient:
    """The two MlflowClient calls logged_searches makes, over logged search/STRATEGY.json files per run."""

    def __init__(self, logs):
        self.logs = logs  # {run id: {strategy: {"trials": [...]}}}

    def list_artifacts(self, run_id, path):
        from types import SimpleNamespace

        return [SimpleNamespace(path="search/best_genotype.json")] + \
            [SimpleNamespace(path=f"search/{name}.json") for name in self.logs[run_id]]

    def download_artifacts(self, run_id, path, dst):
        import json
        from pathlib import Path

        f = Path(dst) / run_id / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(self.logs[run_id][Path(path).stem]))
        return str(f)


def other_family(enc, seed, budget=40):
    """A search on "another task family" with the same best architecture as Hamming(enc, seed) but another level
    of accuracy (a harder family): its pairs, a prior for a search on Hamming(enc, seed)."""
    earlier = Hamming(enc, seed)
    trials = search(STRATEGIES["random"](enc, 99), earlier, budget)
    return [(t.x, 0.3 + 0.5 * t.score) for t in trials]


@pytest.mark.parametrize("name", ["pnas", "bo", "nao"])
@pytest.mark.parametrize("kind", ["chain", "darts"])
def test_a_cross_task_prior_changes_and_improves_the_first_proposals(name, kind):
    """The prior of a related family (same best architecture, other accuracies) puts the first proposals nearer
    the optimum than a cold start's; a strategy that ignores its prior fails both assertions."""
    from metanas.search.prior import Prior

    enc = ENCODINGS[kind]
    first = lambda strategy: search(strategy, Hamming(enc, 0), 5)
    cold, warm, gain = [], [], []
    for seed in range(3):
        prior = Prior.from_searches([other_family(enc, 0)])
        c, w = first(STRATEGIES[name](enc, seed)), first(STRATEGIES[name](enc, seed, prior=prior))
        cold.append([t.x for t in c])
        warm.append([t.x for t in w])
        gain.append(np.mean([t.score for t in w]) - np.mean([t.score for t in c]))
    assert cold != warm
    assert np.mean(gain) > 0.05, gain


def test_bo_posterior_mean_interpolates_its_training_points_on_top_of_a_prior():
    from metanas.search.prior import Prior

    enc = ENCODINGS["darts"]
    strategy = STRATEGIES["bo"](enc, 0, noise=1e-8, prior=Prior.from_searches([other_family(enc, 3)]))
    rng = random.Random(0)
    for _ in range(10):
        strategy.tell(enc.sample(rng), rng.random())
    mean, _ = strategy.posterior(strategy.xs)
    np.testing.assert_allclose(mean, strategy.ys, atol=1e-3)


def test_the_prior_of_logged_searches_is_standardised_per_search_and_checks_the_space():
    from metanas.search.prior import load_prior, logged_searches

    sp = space("darts")
    enc = sp.encoding()
    logs = {}
    for run, (seed, scale) in {"r1": (3, 1.0), "r2": (4, 0.1)}.items():  # two families, far apart in accuracy
        trials = search(STRATEGIES["random"](enc, seed), Hamming(enc, seed), 8)
        logs[run] = {"random": {"trials": [{"genotype": sp.dump(t.genotype), "score": scale * t.score,
                                            "tasks": t.tasks} for t in trials]}}
    searches = logged_searches(FakeClient(logs), ["r1", "r2"], sp)
    assert [len(p) for p in searches] == [8, 8]
    assert [x for x, _ in searches[0]] == [t.x for t in search(STRATEGIES["random"](enc, 3), Hamming(enc, 3), 8)]
    prior = load_prior(FakeClient(logs), ["r1", "r2"], sp)
    assert len(prior) == 16
    for part in (prior.ys[:8], prior.ys[8:]):  # each search: mean 0, sd 1, whatever its family's accuracy
        assert abs(np.mean(part)) < 1e-9 and abs(np.std(part) - 1) < 1e-9
    with pytest.raises(MetanasError, match="chain"):
        logged_searches(FakeClient(logs), ["r1"], space("chain"))


@pytest.mark.slow
def test_search_cli_warm_from_reads_an_earlier_search_run(smoke_run, runs_dir):
    from conftest import run_cli

    run_id = smoke_run[0]
    common = ["--budget", "2", "--val-tasks", "2", "--test-tasks", "2", "--run-id", run_id, "--output-dir", str(runs_dir)]
    first = run_cli("-m", "metanas.cli", "search", "--strategy", "bo", *common)
    assert first.returncode == 0, first.stderr
    earlier = first.stdout.splitlines()[-1].split()[-1]
    out = run_cli("-m", "metanas.cli", "search", "--strategy", "bo", "--warm-from", earlier, *common, "--no-track")
    assert out.returncode == 0, out.stderr
    assert f"warm start: 3 architectures of {earlier} given to bo" in out.stdout  # bo's 2, darts' 1
    both = run_cli("-m", "metanas.cli", "search", "--compare", "--strategy", "random,pnas,nao", "--warm-from", earlier,
                   "--held-out", "0", *common, "--no-track")
    assert both.returncode == 0, both.stderr
    rows = [line.split("|")[1].strip() for line in both.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:6] == ["random", "pnas", "nao", "pnas-warm", "nao-warm"]  # cold, then the learned ones warm
    assert "warm start: 3 architectures" in both.stdout and "given to pnas-warm, nao-warm" in both.stdout
    saved = rows[rows.index("strategy", 1) + 1:]
    assert saved == ["pnas", "nao"]  # evaluations saved, per learned strategy
    bad = run_cli("-m", "metanas.cli", "search", "--strategy", "bo", "--warm-from", "nosuchrun", *common, "--no-track")
    assert bad.returncode != 0 and "--warm-from nosuchrun" in bad.stderr and bad.stderr.count("\n") == 1
