"""Discrete architecture search on a meta-learned supernet: the library behind ``metanas search``.

The three parts of NAS meet here and stay apart: the search space (``metanas.space``: the warm start's
``space.encoding()``), the search strategy (:mod:`metanas.search.strategies`: ask/tell on decision vectors) and
the performance estimation (:class:`metanas.search.scorer.ChildNetScorer`: a child cut out of the supernet,
adapted and scored on few-shot tasks). Candidates are scored on *validation* tasks only; the winner is then
scored on fresh *test* tasks of disjoint classes, which the search never saw.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from metanas.core.errors import MetanasError
from metanas.estimation.loop import Evaluation
from metanas.search.scorer import ChildNetScorer
from metanas.search.strategies import Trial, best, search, strategy_class


@dataclass
class SearchResult:
    strategy: str
    trials: list[Trial]
    best: Trial
    test: Evaluation  # the best genotype on the test tasks
    seconds: float  # search wall clock (test scoring excluded)
    extra: dict = field(default_factory=dict)
    searcher: object = None  # the strategy object after the search (its learned surrogate, if any)
    from_prior: bool = False  # started from a prior (earlier searches on other task families)

    def predict_scores(self, xs: list[list[int]]):
        """The strategy's learned surrogate at ``xs`` (``None`` for a strategy without one)."""
        fn = getattr(self.searcher, "predict_scores", None)
        return None if fn is None else fn(xs)


def scorers(warm, sets, val_tasks: int, test_tasks: int, steps: int | None, seed: int, max_flops: float | None = None):
    """Weight-sharing scorers of an architecture: on ``val_tasks`` of ``sets.validation`` (the search's) and on
    ``test_tasks`` fresh tasks of ``sets.test`` (the winner's report)."""
    if sets.validation is None or sets.test is None:
        raise MetanasError("this task family has no validation or no test split (search scores candidates on "
                           "validation tasks and reports on test tasks): search a family with train/validation/test "
                           "classes, e.g. omniglot-5way")
    device = warm.device
    build = lambda arch: warm.child(arch)
    inner = warm.inner_loop(warm.adaptation.replace(steps=steps, lr_alpha=0.0))  # a child has no alpha
    val = ChildNetScorer(build, sets.validation, tasks=val_tasks, inner=inner, seed=seed, device=device)
    if max_flops is not None:
        val = CostBudget(val, warm, sets.validation.ways, max_flops)
    return val, ChildNetScorer(build, sets.test, tasks=test_tasks, inner=inner, seed=seed + 1, device=device)


class CostBudget:
    """A scorer that gives candidates above a FLOPs budget accuracy 0 without adapting them (no evaluation spent)."""

    def __init__(self, scorer, warm, ways: int, max_flops: float):
        self.scorer, self.warm, self.ways, self.max_flops = scorer, warm, ways, max_flops
        self.tasks, self.image = scorer.tasks, warm.image
        self.rejected = 0

    @property
    def spent(self) -> float:
        return self.scorer.spent + 0.01 * self.rejected  # a rejection is nearly free, but not free: search ends

    def accuracies(self, arch, start: int = 0, stop: int | None = None):
        import torch

        if self.warm.space.cost(arch, self.ways, self.image.size, self.image.channels) > self.max_flops:
            self.rejected += 1
            return torch.zeros((self.tasks if stop is None else stop) - start)
        return self.scorer.accuracies(arch, start, stop)


def run_strategies(names: list[str], warm, sets, budget: float, val_tasks: int, test_tasks: int,
                   steps: int | None, seed: int, progress: bool = False, max_flops: float | None = None,
                   prior=None) -> list[SearchResult]:
    """Each strategy with the same budget, seed and validation tasks; each winner scored on the same test tasks.

    ``prior``: what earlier searches on other task families found (a :class:`metanas.search.prior.Prior`, e.g.
    :func:`metanas.search.prior.load_prior`); the strategies that learn a surrogate (``uses_prior``: pnas, bo,
    nao) start from it, the others ignore it."""
    from tqdm import tqdm

    from metanas.search.prior import as_prior

    encoding = warm.space.encoding()
    derived = warm.derive()
    prior = as_prior(prior)
    classes = [strategy_class(name) for name in names]  # every name checked before any work
    results = []
    for name, cls in zip(names, classes):
        scorer, tester = scorers(warm, sets, val_tasks, test_tasks, steps, seed, max_flops)
        kwargs = {"genotype": derived} if name == "darts" else {}
        uses = prior is not None and getattr(cls, "uses_prior", False)
        strategy = cls(encoding, seed, **kwargs, **({"prior": prior} if uses else {}))
        bar = tqdm(total=budget, desc=f"search {name}", disable=not progress, leave=False,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total} evaluations [{elapsed}<{remaining}{postfix}]")
        top_score = [float("nan")]

        def show(trial, bar=bar, top_score=top_score):
            if trial.tasks == val_tasks and not trial.score <= top_score[0]:
                top_score[0] = trial.score
                bar.set_postfix(best=f"{100 * trial.score:.1f}%", refresh=False)
            bar.update(trial.spent - bar.n)

        t0 = time.perf_counter()
        trials = search(strategy, scorer, budget, progress=show)
        seconds = time.perf_counter() - t0
        bar.close()
        top = best(trials, val_tasks)
        extra = {"probabilities": strategy.probabilities()} if hasattr(strategy, "probabilities") else {}
        results.append(SearchResult(name, trials, top, tester.evaluate(top.genotype), seconds, extra, strategy, uses))
    return results


def held_out_children(warm, sets, n: int, val_tasks: int, steps: int | None, seed: int) -> list[tuple[list[int], float]]:
    """``n`` distinct uniformly drawn children (their own generator: not the strategies' proposals) with their
    supernet score on the search's validation tasks, ``(x, score)``: what a learned surrogate is checked against."""
    import random

    encoding, rng = warm.space.encoding(), random.Random(10_000 + seed)
    xs: dict[tuple[int, ...], list[int]] = {}
    for _ in range(100 * n):
        if len(xs) >= min(n, encoding.size):
            break
        x = encoding.sample(rng)
        xs.setdefault(tuple(x), x)
    scorer, _ = scorers(warm, sets, val_tasks, 2, steps, seed)
    return [(x, float(scorer.accuracies(encoding.decode(x)).mean())) for x in xs.values()]


def mean_random_child(warm, sets, xs: list[list[int]], test_tasks: int, steps: int | None, seed: int):
    """Per test task, the mean accuracy of the children ``xs`` on the test tasks every search's winner is scored on
    (the same tasks: a winner is paired against it task by task)."""
    import torch

    _, tester = scorers(warm, sets, 1, test_tasks, steps, seed)
    encoding = warm.space.encoding()
    return torch.stack([tester.accuracies(encoding.decode(x)) for x in xs]).mean(0)


def surrogate_taus(results: list[SearchResult], children: list[tuple[list[int], float]]) -> dict[str, dict]:
    """Per strategy with a learned surrogate: Kendall's tau (scipy) between its predictions and ``children``'s
    scores, over the children it was not told (held out from it): ``{name: {"tau", "p", "n"}}``."""
    from scipy.stats import kendalltau

    out = {}
    for r in results:
        seen = {tuple(t.x) for t in r.trials}
        held = [(x, s) for x, s in children if tuple(x) not in seen]
        if getattr(r.searcher, "predict_scores", None) is None or len(held) < 3:
            continue
        predicted = r.predict_scores([x for x, _ in held])
        tau, p = kendalltau(predicted, [s for _, s in held])
        out[r.strategy] = {"tau": float(tau), "p": float(p), "n": len(held)}
    return out


def read_children(path, space) -> list[tuple[list[int], float]]:
    """``(x, stand-alone accuracy)`` of the children in a ``metanas search --rank-children --csv`` file."""
    import csv

    enc = space.encoding()
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"architecture", "stand_alone"} <= set(rows[0]):
        raise MetanasError(f"{path}: not a metanas search --rank-children --csv file (architecture and stand_alone "
                           "columns)")
    try:
        return [(enc.encode(space.from_json(json.loads(r["architecture"]))), float(r["stand_alone"])) for r in rows]
    except (ValueError, KeyError, TypeError) as e:
        raise MetanasError(f"{path}: a child is not an architecture of the {space.name!r} space "
                           f"({type(e).__name__}: {e})") from None


def table(results: list[SearchResult], space, budget: float, val_tasks: int, test_tasks: int,
          random_child=None) -> tuple[str, str]:
    """Markdown and CSV: strategy, evaluations, best validation score, test accuracy ± CI, wall clock; with
    ``random_child`` (per test task, :func:`mean_random_child`), each winner minus it, paired over the test tasks."""
    from metanas.core.tables import csv_text, markdown, pct
    from metanas.estimation.stats import mean_ci95

    paired = [mean_ci95(r.test.accuracies - random_child) if random_child is not None else (float("nan"),) * 2
              for r in results]
    extra = ["− mean random child (paired)"] if random_child is not None else []
    md = markdown(["strategy", "evaluations", "candidates", f"best validation ({val_tasks} tasks)",
                   f"test accuracy ± 95% CI ({test_tasks} tasks)", *extra, "search s", "genotype"],
                  [[r.strategy, f"{r.trials[-1].spent:.1f}", len(r.trials), f"{100 * r.best.score:.2f}%",
                    pct(r.test.mean, r.test.ci95), *([f"{100 * d:+.2f} ± {100 * ci:.2f}"] if extra else []),
                    f"{r.seconds:.0f}", space.describe(r.best.genotype)] for r, (d, ci) in zip(results, paired)])
    csv = csv_text(["strategy", "evaluations", "candidates", "best_validation", "test_accuracy", "test_ci95",
                    "over_random_child", "over_random_child_ci95", "search_seconds", "genotype"],
                   [[r.strategy, r.trials[-1].spent, len(r.trials), r.best.score, r.test.mean, r.test.ci95, d, ci,
                     r.seconds, json.dumps(space.dump(r.best.genotype))] for r, (d, ci) in zip(results, paired)])
    return md, csv
