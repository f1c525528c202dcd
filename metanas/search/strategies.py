"""Discrete search strategies over genotypes, scored on the meta-learned supernet.

The four families of the NAS literature, each as an ask/tell ``Strategy`` on
the plain decision vectors of :class:`metanas.space.encoding.Encoding` (each space's ``encoding()``):

* ``random``: uniform samples, the baseline every NAS method must beat.
* ``evolution``: regularized (aging) evolution, Real et al. 2019: tournament
  selection, one mutation, the oldest member dies.
* ``reinforce``: a controller with one categorical distribution per decision,
  trained with REINFORCE and a moving-average baseline, as ENAS's controller.
* ``bohb``: Optuna's TPE sampler (model-based / SMBO) with its Hyperband
  pruner; the fidelity is the number of validation tasks a candidate is scored on.
* ``darts``: the meta-learned alpha's own argmax genotype (one evaluation), for comparison.

A strategy never sees data: it proposes decision vectors and is told scores.
:func:`search` runs one against a scorer (``metanas.search.scorer.ChildNetScorer``,
or anything with the same ``tasks`` / ``spent`` / ``accuracies`` interface)
until the budget of evaluations is spent. Adding a strategy = a subclass with
``ask``/``tell``, a ``name``, and ``@STRATEGIES.register``.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass

import torch

from metanas.core.errors import MetanasError
from metanas.core.registry import Registry
from metanas.space.encoding import Encoding

STRATEGIES = Registry("strategy")  # by name, in the order of ``metanas search --compare``


class Strategy:
    """Propose decision vectors (``ask``), learn from their scores (``tell``)."""

    name = ""

    def __init__(self, encoding: Encoding, seed: int = 0):
        self.encoding, self.rng = encoding, random.Random(seed)

    def ask(self) -> list[int] | None:
        """The next candidate, or ``None`` when the strategy has nothing left to propose."""
        raise NotImplementedError

    def tell(self, x: list[int], score: float) -> None:
        pass

    def evaluate(self, x: list[int], scorer) -> tuple[float, int]:
        """Score ``x``: ``(score, tasks used)``. Full fidelity by default; multi-fidelity strategies override."""
        score = float(scorer.accuracies(self.encoding.decode(x), 0, scorer.tasks).mean())
        self.tell(x, score)
        return score, scorer.tasks


@STRATEGIES.register
class RandomSearch(Strategy):
    name = "random"

    def ask(self):
        return self.encoding.sample(self.rng)


@STRATEGIES.register
class RegularizedEvolution(Strategy):
    name = "evolution"

    def __init__(self, encoding, seed=0, population: int = 20, sample: int = 5):
        super().__init__(encoding, seed)
        self.population: deque[tuple[list[int], float]] = deque()
        self.size, self.sample = population, sample

    def ask(self):
        if len(self.population) < self.size:
            return self.encoding.sample(self.rng)
        contenders = self.rng.sample(list(self.population), min(self.sample, len(self.population)))
        parent = max(contenders, key=lambda m: m[1])[0]
        return self.encoding.mutate(parent, self.rng)

    def tell(self, x, score):
        self.population.append((x, score))
        if len(self.population) > self.size:
            self.population.popleft()  # the oldest dies, however good it was


@STRATEGIES.register
class Reinforce(Strategy):
    """Per-decision categorical logits; Adam on ``-(score - baseline) * log p(x) - entropy_weight * H``."""

    name = "reinforce"

    def __init__(self, encoding, seed=0, lr: float = 0.1, baseline_decay: float = 0.9,
                 entropy_weight: float = 1e-3):
        super().__init__(encoding, seed)
        self.logits = [torch.zeros(c, requires_grad=True) for _, c in encoding.decisions]
        self.opt = torch.optim.Adam(self.logits, lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.decay, self.entropy_weight = baseline_decay, entropy_weight

    def ask(self):
        with torch.no_grad():
            return [int(torch.multinomial(l.softmax(0), 1, generator=self.generator)) for l in self.logits]

    def tell(self, x, score):
        if self.baseline is None:
            self.baseline = score
        advantage = score - self.baseline
        self.baseline = self.decay * self.baseline + (1 - self.decay) * score
        logp = sum(l.log_softmax(0)[v] for l, v in zip(self.logits, x))
        entropy = sum(-(l.softmax(0) * l.log_softmax(0)).sum() for l in self.logits)
        self.opt.zero_grad()
        (-advantage * logp - self.entropy_weight * entropy).backward()
        self.opt.step()

    def probabilities(self) -> list[list[float]]:
        return [l.detach().softmax(0).tolist() for l in self.logits]


@STRATEGIES.register
class BOHB(Strategy):
    """TPE proposals, Hyperband early stopping on the number of validation tasks.

    A candidate is scored on growing prefixes of the validation tasks (``min_tasks * eta**i``, then all) and
    stopped at a rung when the pruner says so; its cost is the fraction of tasks it used."""

    name = "bohb"

    def __init__(self, encoding, seed=0, eta: int = 3, min_tasks: int = 2, startup: int = 10):
        super().__init__(encoding, seed)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.eta, self.min_tasks, self.pruned = eta, min_tasks, optuna.trial.TrialState.PRUNED
        self.study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True),
            pruner=optuna.pruners.HyperbandPruner(min_resource=min_tasks, max_resource="auto", reduction_factor=eta))
        self.trial = None  # the Optuna trial of the last ``ask``

    def ask(self):
        self.trial = self.study.ask()
        return [self.trial.suggest_categorical(name, list(range(c))) for name, c in self.encoding.decisions]

    def evaluate(self, x, scorer):
        trial, total, genotype = self.trial, scorer.tasks, self.encoding.decode(x)
        rungs, n = [], self.min_tasks
        while n < total:
            rungs.append(n)
            n *= self.eta
        accs, done = [], 0
        for n in rungs + [total]:
            accs.append(scorer.accuracies(genotype, done, n))
            done = n
            score = float(torch.cat(accs).mean())
            trial.report(score, n)
            if n < total and trial.should_prune():
                self.study.tell(trial, state=self.pruned)
                return score, n
        self.study.tell(trial, score)
        return score, total


@STRATEGIES.register
class DartsArgmax(Strategy):
    """The meta-learned alpha's argmax genotype, proposed once."""

    name = "darts"

    def __init__(self, encoding, seed=0, genotype=None):
        super().__init__(encoding, seed)
        if genotype is None:
            raise MetanasError("the darts strategy needs the warm start's derived genotype (a supernet checkpoint)")
        self.x: list[int] | None = encoding.encode(genotype)

    def ask(self):
        x, self.x = self.x, None
        return x


# The NAS literature's learned strategies (metanas/search/literature.py), imported on first use.
for _name, _cls in (("nasrl", "NasRL"), ("pnas", "PNAS"), ("bo", "BayesOptWL"), ("nao", "NAO")):
    STRATEGIES.register(f"metanas.search.literature:{_cls}", name=_name)


def strategy_class(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)


@dataclass
class Trial:
    x: list[int]
    genotype: object  # an architecture of the space
    score: float  # mean validation accuracy over ``tasks`` tasks
    tasks: int  # < scorer.tasks: stopped early (multi-fidelity); not a candidate for the best
    spent: float  # evaluations spent so far, this one included
    seconds: float  # wall clock since the search started


def search(strategy: Strategy, scorer, budget: float, progress=None) -> list[Trial]:
    """Ask, score, tell until ``budget`` evaluations are spent (one evaluation = one candidate scored on all
    ``scorer.tasks`` validation tasks; a multi-fidelity partial one costs its fraction)."""
    if budget <= 0:
        raise MetanasError(f"--budget must be > 0 evaluations (got {budget})")
    start, trials = time.perf_counter(), []
    while scorer.spent < budget:
        x = strategy.ask()
        if x is None:
            break
        score, tasks = strategy.evaluate(x, scorer)
        trials.append(Trial(x, strategy.encoding.decode(x), score, tasks, scorer.spent, time.perf_counter() - start))
        if progress is not None:
            progress(trials[-1])
    return trials


def best(trials: list[Trial], tasks: int) -> Trial:
    """The best fully scored trial."""
    full = [t for t in trials if t.tasks == tasks]
    if not full:
        raise MetanasError("no candidate was scored on all validation tasks: raise --budget")
    return max(full, key=lambda t: t.score)


def evaluations_to_reach(trials: list[Trial], tasks: int, target: float) -> float | None:
    """Evaluations spent when a fully scored trial first scored ``target`` or more (``None``: never)."""
    return next((t.spent for t in trials if t.tasks == tasks and t.score >= target), None)


def best_so_far(trials: list[Trial], tasks: int) -> list[float]:
    """Per trial, the best full-fidelity score up to and including it (nan before the first)."""
    out, top = [], float("nan")
    for t in trials:
        if t.tasks == tasks and not (t.score <= top):
            top = t.score
        out.append(top)
    return out
