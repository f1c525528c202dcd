"""Four search strategies of the NAS literature as ask/tell :class:`~metanas.search.strategies.Strategy` classes,
registered in ``STRATEGIES`` (``metanas search --strategy nasrl|pnas|bo|nao``) and scored like the others on the
meta-learned supernet. Each works on the decision vectors of a space's ``encoding()`` (chain layers, DARTS cells);
``bo`` also needs the architecture as a graph (:mod:`metanas.search.graphs`). See docs/method.md for what each
paper does and what differs here.

* ``nasrl``: NAS with RL (Zoph & Le, ICLR 2017), an LSTM controller trained with REINFORCE.
* ``pnas``: progressive NAS (Liu et al., ECCV 2018), a beam over a growing space ranked by a surrogate.
* ``bo``: NAS-BOWL (Ru et al., ICLR 2021), a GP with a Weisfeiler-Lehman graph kernel and expected improvement.
* ``nao``: neural architecture optimisation (Luo et al., NeurIPS 2018), gradient ascent in a learned embedding.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from metanas.core.errors import MetanasError
from metanas.search.graphs import GaussianProcess, arch_graph, expected_improvement, wl_kernel
from metanas.search.models import Controller, EncoderPredictorDecoder, SurrogateEnsemble, seeded
from metanas.search.prior import Prior, as_prior
from metanas.search.strategies import Strategy


def choices_of(encoding, name: str) -> list[int]:
    """The number of choices per decision, or one clear error when ``encoding`` has no decision vector."""
    decisions = getattr(encoding, "decisions", None)
    if not decisions or any(c < 1 for _, c in decisions):
        raise MetanasError(f"the {name} strategy needs the space as a vector of categorical decisions, which "
                           f"{type(encoding).__name__} does not give")
    return [c for _, c in decisions]


class Memory(Strategy):
    """A strategy that keeps every ``(x, score)`` it was told and proposes each architecture at most once.

    The learned ones (pnas, bo, nao) also take a ``prior`` (:class:`metanas.search.prior.Prior`: what earlier
    searches on other task families found) and expose their surrogate's prediction for any architecture
    (:meth:`predict_scores`), whose ranking ``metanas search --compare`` checks against measured scores."""

    uses_prior = False

    def __init__(self, encoding, seed=0):
        super().__init__(encoding, seed)
        self.xs: list[list[int]] = []
        self.ys: list[float] = []
        self.seen: set[tuple[int, ...]] = set()

    def tell(self, x, score):
        self.xs.append(list(x))
        self.ys.append(float(score))
        self.seen.add(tuple(x))

    def fresh(self) -> list[int]:
        """A uniform sample not scored yet (any sample once the space is nearly exhausted)."""
        for _ in range(1000):
            x = self.encoding.sample(self.rng)
            if tuple(x) not in self.seen:
                return x
        return x

    def predict_scores(self, xs: list[list[int]]) -> np.ndarray:
        """The learned surrogate's predicted score of each of ``xs``, fitted on every pair told so far."""
        raise NotImplementedError


class NasRL(Strategy):
    """Zoph & Le's controller: each decision sampled from an LSTM step fed the previous decision's embedding;
    Adam on ``-(score - baseline) * log p(x) - entropy_weight * H`` per scored architecture."""

    name = "nasrl"

    def __init__(self, encoding, seed=0, hidden: int = 32, lr: float = 0.02, baseline_decay: float = 0.8,
                 entropy_weight: float = 1e-3):
        super().__init__(encoding, seed)
        choices = choices_of(encoding, self.name)
        self.controller = seeded(seed, lambda: Controller(choices, hidden))
        self.opt = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.decay, self.entropy_weight = baseline_decay, entropy_weight

    def ask(self):
        return self.controller.sample(self.generator)

    def tell(self, x, score):
        if self.baseline is None:
            self.baseline = score
        advantage = score - self.baseline
        self.baseline = self.decay * self.baseline + (1 - self.decay) * score
        logp, entropy = self.controller.log_prob_entropy(x)
        self.opt.zero_grad()
        (-advantage * logp - self.entropy_weight * entropy).backward()
        self.opt.step()


def decision_groups(encoding) -> list[list[int]]:
    """Decisions grouped by what they belong to: a layer (``layer2.*``) or a cell node (``normal.n1.*``)."""
    groups: dict[str, list[int]] = {}
    for d, (name, _) in enumerate(encoding.decisions):
        groups.setdefault(name.rsplit(".", 1)[0], []).append(d)
    return list(groups.values())


class PNAS(Memory):
    """Progressive search: stage ``b`` opens decision group ``b`` (a layer, a cell node); the groups not opened yet
    keep their first choice. Every member of the beam (the ``beam`` best architectures scored so far) is expanded
    over every value of the newly opened group, the surrogate (refitted on all pairs seen so far) ranks the
    expansions and the top ``beam`` are scored. Once every group is open, stages go on over the groups in turn.

    ``prior``: the surrogate is pre-trained on it (its refits start from those weights) and, before anything is
    scored, the beam is the prior's best architectures and the surrogate ranks their expansions."""

    name = "pnas"
    uses_prior = True

    def __init__(self, encoding, seed=0, beam: int = 8, max_expansions: int = 512, members: int = 5,
                 prior: Prior | None = None):
        super().__init__(encoding, seed)
        self.choices = choices_of(encoding, self.name)
        self.groups, self.k, self.max_expansions = decision_groups(encoding), beam, max_expansions
        self.surrogate = SurrogateEnsemble(self.choices, seed, members=members)
        self.stage, self.queue = 0, []
        self.ranking: list[tuple[list[int], float]] = []  # the last stage's expansions with their predictions
        self.prior, self.fitted_on = as_prior(prior), 0
        if self.prior:
            self.surrogate.fit([list(x) for x in self.prior.xs], list(self.prior.ys))

    def expand(self, parents: list[list[int]], group: list[int]) -> list[list[int]]:
        values = list(itertools.product(*(range(self.choices[d]) for d in group)))
        if len(values) > self.max_expansions:
            values = self.rng.sample(values, self.max_expansions)
        out, keys = [], set()
        for parent in parents:
            for v in values:
                child = list(parent)
                for d, value in zip(group, v):
                    child[d] = value
                if tuple(child) not in self.seen and tuple(child) not in keys:
                    keys.add(tuple(child))
                    out.append(child)
        return out

    def _next_stage(self):
        order = sorted(range(len(self.ys)), key=lambda i: -self.ys[i])
        beam = ([self.xs[i] for i in order[:self.k]] or (self.prior.best(self.k) if self.prior else [])
                or [[0] * len(self.choices)])
        group = self.groups[self.stage % len(self.groups)]
        self.stage += 1
        children = self.expand(beam, group)
        if not children:
            self.queue = [self.fresh()]
            return
        if self.xs or self.prior:
            if self.xs:
                self.surrogate.fit(self.xs, self.ys)
                self.fitted_on = len(self.xs)
            predictions = self.surrogate.predict(children).tolist()
            self.ranking = sorted(zip(children, predictions), key=lambda p: -p[1])
            children = [x for x, _ in self.ranking]
        else:  # nothing to fit yet: the first stage's expansions in random order
            self.rng.shuffle(children)
        self.queue = children[:self.k]

    def ask(self):
        while not self.queue:
            self._next_stage()
        return self.queue.pop(0)

    def predict_scores(self, xs):
        if self.fitted_on != len(self.xs):  # refitted on every pair, as at the start of a stage
            self.surrogate.fit(self.xs, self.ys)
            self.fitted_on = len(self.xs)
        return self.surrogate.predict(xs).numpy()


class BayesOptWL(Memory):
    """NAS-BOWL: ``init`` random architectures, then each proposal maximises expected improvement under a GP with
    the WL kernel over a pool of ``mutations`` single mutations of each of the ``top`` best architectures plus
    ``random`` uniform ones.

    ``prior``: a GP fitted on the prior (noise ``prior_noise``: another family's scores are a noisy guide) gives
    the mean function of this search's GP, which then models the residuals (a stack of two GPs). No random start:
    the first proposal is the pool's best prior mean, the next ones maximise expected improvement; the pool also
    holds the prior's ``top`` best architectures and their mutations."""

    name = "bo"
    uses_prior = True

    def __init__(self, encoding, seed=0, init: int = 10, top: int = 5, mutations: int = 10, random: int = 50,
                 h: int = 2, noise: float = 1e-4, prior: Prior | None = None, prior_noise: float = 0.1):
        super().__init__(encoding, seed)
        choices_of(encoding, self.name)
        arch_graph(encoding, encoding.sample(self.rng))  # one clear error for a space without graphs
        self.init, self.top, self.mutations, self.random, self.h = init, top, mutations, random, h
        self.gp = GaussianProcess(noise)
        self.prior = as_prior(prior)
        if self.prior:
            px = [list(x) for x in self.prior.xs]
            self.prior_gp = GaussianProcess(prior_noise).fit(wl_kernel(encoding, px, h), np.array(self.prior.ys))

    def pool(self) -> list[list[int]]:
        order = sorted(range(len(self.ys)), key=lambda i: -self.ys[i])
        elites = [self.xs[i] for i in order[:self.top]] + (self.prior.best(self.top) if self.prior else [])
        cands = [self.encoding.mutate(x, self.rng) for x in elites for _ in range(self.mutations)]
        cands += (self.prior.best(self.top) if self.prior else []) + [self.encoding.sample(self.rng)
                                                                     for _ in range(self.random)]
        out, keys = [], set()
        for x in cands:
            if tuple(x) not in self.seen and tuple(x) not in keys:
                keys.add(tuple(x))
                out.append(x)
        return out

    def posterior(self, xs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The GP (fitted on every pair told, on top of the prior's GP if any) at ``xs``: mean and standard
        deviation; before any pair is told, the prior's GP alone (in the prior's standardised units)."""
        px = [list(x) for x in self.prior.xs] if self.prior else []
        p, n = len(px), len(self.xs)
        K = wl_kernel(self.encoding, px + self.xs + xs, self.h)
        m = self.prior_gp.predict(K[p:, :p], np.diag(K)[p:])[0] if p else None  # the mean function at xs + xs
        if n == 0:
            if m is None:
                raise ValueError("no pair told and no prior: the GP has nothing to fit")
            return self.prior_gp.predict(K[p:, :p], np.diag(K)[p:])
        self.gp.fit(K[p:p + n, p:p + n], np.array(self.ys), None if m is None else m[:n])
        return self.gp.predict(K[p + n:, p:p + n], np.diag(K)[p + n:], None if m is None else m[n:])

    def ask(self):
        if not self.prior and len(self.xs) < self.init:
            return self.fresh()
        pool = self.pool() or [self.fresh()]
        mean, std = self.posterior(pool)
        if not self.xs:  # the prior alone: its best guess
            return pool[int(np.argmax(mean))]
        return pool[int(np.argmax(expected_improvement(mean, std, max(self.ys))))]

    def predict_scores(self, xs):
        return self.posterior(xs)[0]


class NAO(Memory):
    """Neural architecture optimisation: after ``init`` random architectures, each round trains the encoder,
    predictor and decoder on all pairs (``trade_off`` toward the predictor), moves the ``per_round`` best
    architectures' embeddings along the predictor's gradient with a step that doubles until the decoded
    architecture is new, and proposes those.

    ``prior``: the three parts are pre-trained on it, and the first ``init`` proposals (uniform samples without a
    prior) come from rounds that start from the prior's best architectures, with the pre-trained model; the rounds
    after go on from the pre-trained weights."""

    name = "nao"
    uses_prior = True

    def __init__(self, encoding, seed=0, init: int = 10, per_round: int = 5, hidden: int = 32, epochs: int = 150,
                 lr: float = 1e-2, trade_off: float = 0.8, step: float = 1.0, max_step: float = 1e3,
                 prior: Prior | None = None):
        super().__init__(encoding, seed)
        self.choices = choices_of(encoding, self.name)
        self.model = seeded(seed, lambda: EncoderPredictorDecoder(self.choices, hidden))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.init, self.per_round, self.epochs, self.trade_off = init, per_round, epochs, trade_off
        self.step, self.max_step, self.queue = step, max_step, []
        self.prior = as_prior(prior)
        if self.prior:
            self.train(pairs=([list(x) for x in self.prior.xs], list(self.prior.ys)))

    def train(self, epochs: int | None = None, pairs=None) -> float:
        """Encoder, predictor and decoder on ``pairs`` (``(xs, ys)``; default: every pair told)."""
        xs, ys = pairs if pairs is not None else (self.xs, self.ys)
        X, y = torch.tensor(xs), torch.tensor(ys, dtype=torch.float32)
        y = (y - y.mean()) / (y.std() if len(y) > 1 and y.std() > 0 else 1.0)
        for _ in range(self.epochs if epochs is None else epochs):
            self.opt.zero_grad()
            loss = self.model.loss(X, y, self.trade_off)
            loss.backward()
            self.opt.step()
        return float(loss.detach())

    def _round(self):
        if len(self.xs) >= self.init:
            self.train()
            order = sorted(range(len(self.ys)), key=lambda i: -self.ys[i])[:self.per_round]
            starts = [self.xs[i] for i in order]
        else:  # warm-started: the pre-trained model, from the prior's best
            starts = self.prior.best(self.per_round)
        z = self.model.encode(torch.tensor(starts)).detach().requires_grad_(True)
        grad, = torch.autograd.grad(self.model.predict(z).sum(), z)
        keys = set()
        for i in range(len(starts)):
            step, new = self.step, None
            while step <= self.max_step:
                x = self.model.decode((z[i] + step * grad[i]).detach()[None])[0]
                if tuple(x) not in self.seen and tuple(x) not in keys:
                    new = x
                    break
                step *= 2
            if new is None:
                new = self.encoding.mutate(starts[i], self.rng)
            keys.add(tuple(new))
            self.queue.append(new)

    def ask(self):
        if len(self.xs) < self.init and not self.prior:
            return self.fresh()
        if not self.queue:
            self._round()
        return self.queue.pop(0)

    def predict_scores(self, xs):
        self.train()
        with torch.no_grad():
            return self.model.predict(self.model.encode(torch.tensor(xs))).numpy()
