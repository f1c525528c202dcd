"""Genotypes as a vector of categorical decisions, for the discrete search strategies.

Per cell type (normal, reduce) and node: which ``k`` distinct inputs the node
reads (one choice among the ``C(i + 2, k)`` input sets) and, for each of them,
which op (``none`` excluded). Every vector of in-range choices decodes to a
valid genotype and every genotype encodes to exactly one vector, so random
search, mutation (evolution), per-decision categorical policies (REINFORCE) and
TPE (Optuna) all work on the same plain ``list[int]``.
"""

from __future__ import annotations

import random
from itertools import combinations

from metanas.space.network import Genotype


class GenotypeEncoding:
    def __init__(self, ops: list[str], nodes: int, k: int = 2):
        self.ops = [o for o in ops if o != "none"]
        self.nodes, self.k = nodes, k
        self.input_sets = [list(combinations(range(i + 2), min(k, i + 2))) for i in range(nodes)]
        #: ``(name, number of choices)`` per decision, e.g. ``("normal.n1.inputs", 3)``, ``("normal.n1.op0", 7)``
        self.decisions: list[tuple[str, int]] = []
        for cell in ("normal", "reduce"):
            for i in range(nodes):
                self.decisions.append((f"{cell}.n{i}.inputs", len(self.input_sets[i])))
                self.decisions += [(f"{cell}.n{i}.op{j}", len(self.ops)) for j in range(len(self.input_sets[i][0]))]

    @property
    def size(self) -> int:
        """How many distinct genotypes there are."""
        n = 1
        for _, c in self.decisions:
            n *= c
        return n

    def decode(self, x: list[int]) -> Genotype:
        it = iter(x)
        cells = []
        for _ in ("normal", "reduce"):
            gene = []
            for i in range(self.nodes):
                inputs = self.input_sets[i][next(it)]
                gene += [(self.ops[next(it)], j) for j in inputs]
            cells.append(gene)
        concat = list(range(2, 2 + self.nodes))
        return Genotype(cells[0], concat, cells[1], concat)

    def encode(self, g: Genotype) -> list[int]:
        x = []
        for gene in (g.normal, g.reduce):
            per = len(gene) // self.nodes
            for i in range(self.nodes):
                pairs = sorted(gene[i * per:(i + 1) * per], key=lambda p: p[1])
                x.append(self.input_sets[i].index(tuple(j for _, j in pairs)))
                x += [self.ops.index(op) for op, _ in pairs]
        return x

    def sample(self, rng: random.Random) -> list[int]:
        return [rng.randrange(c) for _, c in self.decisions]

    def mutate(self, x: list[int], rng: random.Random) -> list[int]:
        """One op or one input set changed to a different value (regularized evolution's mutation)."""
        movable = [d for d, (_, c) in enumerate(self.decisions) if c > 1]
        d = rng.choice(movable)
        y = list(x)
        y[d] = rng.choice([v for v in range(self.decisions[d][1]) if v != x[d]])
        return y
