"""Architectures as vectors of categorical decisions, for the discrete search strategies.

A space's :meth:`~metanas.space.base.SearchSpace.encoding` lists its decisions as ``(name, number
of choices)``; every vector of in-range choices decodes to a valid architecture and every
architecture encodes to exactly one vector, so random search, mutation (evolution), per-decision
categorical policies (REINFORCE) and TPE (Optuna) all work on the same plain ``list[int]``.
"""

from __future__ import annotations

import random


class Encoding:
    decisions: list[tuple[str, int]]  # ``(name, number of choices)`` per decision, e.g. ``("normal.n1.op0", 7)``

    @property
    def size(self) -> int:
        """How many distinct architectures there are."""
        n = 1
        for _, c in self.decisions:
            n *= c
        return n

    def encode(self, arch) -> list[int]:
        raise NotImplementedError

    def decode(self, x: list[int]):
        raise NotImplementedError

    def sample(self, rng: random.Random) -> list[int]:
        return [rng.randrange(c) for _, c in self.decisions]

    def mutate(self, x: list[int], rng: random.Random) -> list[int]:
        """One decision changed to a different value (regularized evolution's mutation)."""
        movable = [d for d, (_, c) in enumerate(self.decisions) if c > 1]
        d = rng.choice(movable)
        y = list(x)
        y[d] = rng.choice([v for v in range(self.decisions[d][1]) if v != x[d]])
        return y
