"""Architectures as labelled graphs, their Weisfeiler-Lehman kernel and a Gaussian process on it (NAS-BOWL).

Ru et al., "Interpretable Neural Architecture Search via Bayesian Optimisation with Weisfeiler-Lehman Kernels"
(ICLR 2021): an architecture is a directed graph whose nodes carry operation labels; two architectures are similar
when they share many WL subtrees (a node's label, then its label with its neighbours' labels, ``h`` times). The
kernel is ``grakel``'s ``WeisfeilerLehman`` over a ``VertexHistogram`` base kernel, normalised so that
``k(x, x) = 1``; the GP posterior is plain numpy linear algebra.

* chain space: a path ``input -> layer 1 -> ... -> layer L -> output``, each layer node labelled by its whole
  choice (``op|width|pool[|act]``).
* DARTS space: per cell type, the cell DAG with each op-labelled edge turned into an op node (as NAS-BOWL does for
  DARTS): ``c_{k-2}``, ``c_{k-1}`` -> op node -> intermediate node (``add``) -> ``output`` (concat). The normal and
  the reduction cell are two components of one graph, their labels prefixed by the cell type.
"""

from __future__ import annotations

import numpy as np

from metanas.core.errors import MetanasError


def arch_graph(encoding, x: list[int]) -> tuple[dict[int, list[int]], dict[int, str]]:
    """``(adjacency, labels)`` of the decision vector ``x`` of ``encoding`` (a chain or a DARTS encoding)."""
    from metanas.space.chain import ChainEncoding
    from metanas.space.darts import GenotypeEncoding

    if isinstance(encoding, ChainEncoding):
        layers = encoding.decode(x)
        labels = {0: "input", **{i + 1: "|".join(map(str, layer)) for i, layer in enumerate(layers)},
                  len(layers) + 1: "output"}
        return {i: [i + 1] for i in range(len(layers) + 1)} | {len(layers) + 1: []}, labels
    if isinstance(encoding, GenotypeEncoding):
        g = encoding.decode(x)
        adj: dict[int, list[int]] = {}
        labels: dict[int, str] = {}

        def node(label):
            i = len(labels)
            labels[i], adj[i] = label, []
            return i

        for cell, gene in (("normal", g.normal), ("reduce", g.reduce)):
            states = [node(f"{cell}:input0"), node(f"{cell}:input1")]
            per = len(gene) // encoding.nodes
            inner = [node(f"{cell}:add") for _ in range(encoding.nodes)]
            out = node(f"{cell}:output")
            for i in range(encoding.nodes):
                for op, j in gene[i * per:(i + 1) * per]:
                    o = node(f"{cell}:{op}")
                    adj[(states + inner)[j]].append(o)
                    adj[o].append(inner[i])
                adj[inner[i]].append(out)
        return adj, labels
    raise MetanasError(f"the bo strategy needs the architecture as a graph, which only the chain and the darts "
                       f"spaces define (got a {type(encoding).__name__})")


def wl_kernel(encoding, xs: list[list[int]], h: int = 2) -> np.ndarray:
    """The normalised WL subtree kernel matrix between the architectures ``xs`` (``h`` refinement rounds)."""
    from grakel import Graph
    from grakel.kernels import VertexHistogram, WeisfeilerLehman

    graphs = [Graph(*arch_graph(encoding, x)) for x in xs]
    return WeisfeilerLehman(n_iter=h, base_graph_kernel=VertexHistogram, normalize=True).fit_transform(graphs)


class GaussianProcess:
    """A zero-mean GP on standardised scores with a precomputed kernel: posterior mean and standard deviation."""

    def __init__(self, noise: float = 1e-4):
        self.noise = noise

    def fit(self, K: np.ndarray, y: np.ndarray, prior_mean: np.ndarray | None = None) -> "GaussianProcess":
        """``K``: kernel between the training points; ``y``: their scores; ``prior_mean``: the GP's mean function at
        them, in standardised units (zero without)."""
        y = np.asarray(y, dtype=float)
        self.mu, self.sigma = y.mean(), y.std() or 1.0
        r = (y - self.mu) / self.sigma - (0.0 if prior_mean is None else prior_mean)
        self.L = np.linalg.cholesky(K + (self.noise + 1e-9) * np.eye(len(y)))
        self.alpha = np.linalg.solve(self.L.T, np.linalg.solve(self.L, r))
        return self

    def predict(self, Ks: np.ndarray, kss: np.ndarray, prior_mean: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """``Ks``: kernel between test and training points ``[test, train]``; ``kss``: test self-kernels;
        ``prior_mean``: the mean function at the test points (as in :meth:`fit`)."""
        mean = Ks @ self.alpha + (0.0 if prior_mean is None else prior_mean)
        v = np.linalg.solve(self.L, Ks.T)
        var = np.clip(kss - (v * v).sum(0), 1e-12, None)
        return self.mu + self.sigma * mean, self.sigma * np.sqrt(var)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    from scipy.stats import norm

    z = (mean - best) / std
    return (mean - best) * norm.cdf(z) + std * norm.pdf(z)
