"""Choosing how a warm start adapts (steps, alpha's step) on validation tasks: every candidate adapts the same
seeded tasks, so the choice is a paired comparison."""

from __future__ import annotations

from dataclasses import replace

import torch
from tqdm import tqdm

from metanas.estimation.loop import evaluate
from metanas.estimation.stats import best_row, mean_ci95
from metanas.meta.inner import InnerLoop, Params
from metanas.space.base import is_alpha


def select_adaptation(model, params: Params, taskset, *, tasks: int, inner: InnerLoop, steps: list[int],
                      lr_alphas: list[float], seed: int, device="cpu", dist=None, progress: bool = False,
                      rule: str = "latency") -> tuple[dict, list[dict]]:
    """The adaptation setting (steps, alpha's step) that wins on ``tasks`` tasks of ``taskset`` by ``rule``
    (``inner.select_rule``: :func:`fastest_tied`, or the most accurate, :func:`best_row`):
    ``(best, table)``, each a ``{"steps", "lr_alpha", "accuracy", "ci95", "arch_gain", "arch_gain_ci95"}`` dict,
    the table in the order tried; ``arch_gain``: the paired gain over alpha step 0 at the same steps (where 0
    is a candidate and this one is not).

    Every candidate adapts the same seeded tasks (common random numbers), so the table is a paired comparison;
    ``lr_alpha = 0`` keeps the architecture fixed, so adapting it is chosen only where it pays on these tasks.
    Empty lists keep ``inner``'s own value; a network without alphas tries its steps only. Ties (within 1e-6)
    go to the candidate tried first (:func:`best_row`). Choose on a validation split: the chosen setting's
    score there is biased upwards.
    """
    if not any(is_alpha(k) for k in params):
        lr_alphas = []
    grid = [(s, a) for s in (steps or [inner.steps]) for a in (lr_alphas or [inner.lr_alpha])]
    table, scores = [], {}
    for s, a in tqdm(grid, desc="choosing the adaptation", leave=False, disable=not progress):
        ev = evaluate(model, params, taskset, tasks=tasks, inner=replace(inner, steps=s, lr_alpha=a),
                      generator=torch.Generator().manual_seed(seed), device=device, dist=dist)
        scores[s, a] = ev.accuracies
        table.append({"steps": int(s), "lr_alpha": float(a), "accuracy": ev.mean, "ci95": ev.ci95})
    for row in table:  # with alpha step 0 among the candidates: what adapting the architecture gains, paired
        fixed = scores.get((row["steps"], 0.0))
        row["arch_gain"], row["arch_gain_ci95"] = (None, None) if fixed is None or not row["lr_alpha"] \
            else mean_ci95(scores[row["steps"], row["lr_alpha"]] - fixed)
    return (fastest_tied(table, scores) if rule == "latency" else best_row(table)), table


def fastest_tied(table: list[dict], scores: dict) -> dict:
    """The row of fewest steps (the cost of adapting a task is proportional to its steps) among those tied with the
    most accurate row: the paired 95% CI of their per-task accuracy difference to it reaches 0; the most accurate
    (:func:`best_row`) of those. ``scores[steps, lr_alpha]``: each row's per-task accuracies."""
    best = best_row(table)
    top = scores[best["steps"], best["lr_alpha"]]

    def tied(row):
        mean, ci = mean_ci95(scores[row["steps"], row["lr_alpha"]] - top)
        return row is best or mean + ci >= 0

    candidates = [row for row in table if tied(row)]
    fewest = min(row["steps"] for row in candidates)
    return best_row([row for row in candidates if row["steps"] == fewest])
