"""A search that learns across tasks: what earlier searches on other task families found, as a prior.

Every ``metanas search`` run logs its trials (``search/STRATEGY.json``: each candidate's architecture and validation
score). A new search on another family of the same space can start from them instead of from nothing: the learned
strategies take a :class:`Prior` (``run_strategies(..., prior=...)``, ``metanas search --warm-from RUN_IDS``):

* ``bo``: the prior's GP posterior mean is the mean function of the new search's GP, which models only what the new
  family adds (a stack of GPs, as Google Vizier's transfer learning, Golovin et al. 2017);
* ``pnas``: its surrogate ensemble is pre-trained on the prior and ranks the first stage's expansions;
* ``nao``: its encoder, predictor and decoder are pre-trained on the prior, and the first ``init`` proposals come
  from gradient ascent from the prior's best architectures instead of uniform samples.

Families differ in how hard they are (an accuracy of 60% may be good on one and bad on another), so each earlier
run's scores are standardised within that run: the prior says which architectures were *better than the others* of
their search, not how accurate they were. An architecture of the prior is not "seen" by the new search: it was
never scored on the new family, and may well be proposed there.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metanas.core.errors import MetanasError


@dataclass(frozen=True)
class Prior:
    """Decision vectors ``xs`` and their scores ``ys`` standardised within their source search (mean 0, sd 1);
    one pair per distinct architecture (repeated ones averaged)."""

    xs: tuple[tuple[int, ...], ...]
    ys: tuple[float, ...]

    @classmethod
    def from_searches(cls, searches: list[list[tuple[list[int], float]]]) -> "Prior":
        """``searches``: per earlier search, its ``(x, score)`` pairs (raw accuracies, standardised here)."""
        sums: dict[tuple[int, ...], list[float]] = {}
        for pairs in searches:
            if not pairs:
                continue
            s = np.array([score for _, score in pairs], dtype=float)
            z = (s - s.mean()) / (s.std() or 1.0)
            for (x, _), v in zip(pairs, z):
                sums.setdefault(tuple(int(d) for d in x), []).append(float(v))
        return cls(tuple(sums), tuple(float(np.mean(v)) for v in sums.values()))

    def __len__(self) -> int:
        return len(self.xs)

    def best(self, k: int) -> list[list[int]]:
        """The ``k`` best architectures of the prior."""
        order = sorted(range(len(self.ys)), key=lambda i: -self.ys[i])
        return [list(self.xs[i]) for i in order[:k]]


def as_prior(prior) -> Prior | None:
    """``None`` or an empty prior: none; a :class:`Prior` as is; ``(x, score)`` pairs: one search's."""
    if prior is None or isinstance(prior, Prior):
        return prior if prior is None or len(prior) else None
    pairs = list(prior)
    return Prior.from_searches([pairs]) if pairs else None


def logged_searches(client, run_ids: list[str], space) -> list[list[tuple[list[int], float]]]:
    """Per search strategy of each run ``run_ids`` (its ``search/STRATEGY.json`` artifact), the ``(x, score)`` of
    every fully scored trial, as decision vectors of ``space``. ``client``: an ``MlflowClient``."""
    enc, searches = space.encoding(), []
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            try:
                paths = [a.path for a in client.list_artifacts(run_id, "search")
                         if a.path.endswith(".json") and not a.path.endswith("best_genotype.json")]
            except Exception as e:  # MLflow's own error for an unknown run id
                raise MetanasError(f"--warm-from {run_id}: no such MLflow run ({type(e).__name__})") from None
            if not paths:
                raise MetanasError(f"--warm-from {run_id}: the run has no search/STRATEGY.json (not a metanas search run)")
            for path in paths:
                trials = json.loads(Path(client.download_artifacts(run_id, path, tmp)).read_text())["trials"]
                if not trials:
                    continue
                full, pairs = max(t["tasks"] for t in trials), []
                for t in trials:
                    g = t["genotype"]
                    if g.get("space", "darts") != space.name:
                        raise MetanasError(f"--warm-from {run_id}: its architectures are of the {g.get('space')!r} "
                                           f"space, not of {space.name!r}")
                    if t["tasks"] == full:
                        pairs.append((enc.encode(space.from_json(g)), float(t["score"])))
                searches.append(pairs)
    return searches


def load_prior(client, run_ids: list[str], space) -> Prior:
    """The prior of the searches logged by ``run_ids`` (``metanas search --warm-from``)."""
    prior = Prior.from_searches(logged_searches(client, run_ids, space))
    if not len(prior):
        raise MetanasError(f"--warm-from {','.join(run_ids)}: no fully scored candidate in these runs")
    return prior
