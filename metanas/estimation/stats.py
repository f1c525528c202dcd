"""Statistics of evaluations: the mean and 95% confidence interval over tasks, paired differences on the same tasks,
ties, and how well one score ranks methods as another does."""

from __future__ import annotations

import math

import torch

def mean_ci95(values: torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval of the mean, from Student's t with ``n - 1`` degrees of
    freedom: with few values (a 20-task validation, a 30-task pilot) the normal approximation's 1.96 is too narrow;
    at 600 tasks t is 1.964, so large evaluations read the same. ``nan`` for one value."""
    from scipy.stats import t

    v = values.double()
    n = v.numel()
    # float(): scipy's quantile is a numpy scalar, which torch.load(weights_only=True) refuses in a checkpoint
    return v.mean().item(), float(t.ppf(0.975, n - 1)) * v.std().item() / math.sqrt(n) if n > 1 else float("nan")


def paired_difference(a, b) -> tuple[float, float]:
    """Mean and 95% CI half-width of the per-task difference ``a - b`` on the same tasks (a paired comparison:
    the task-to-task spread that both share cancels)."""
    if a.accuracies.shape != b.accuracies.shape:
        raise ValueError("a paired difference needs the same tasks in both evaluations")
    return mean_ci95(a.accuracies - b.accuracies)


def first_best(scores: list[float]) -> int:
    """The index of the first score within 1e-6 of the highest: the float32 means of two candidates with the same
    correct answers differ in the ninth digit (one query in 200 tasks of 75 is 6.7e-5), and that noise must not
    pick a later candidate over an equal earlier one. (Rounding both to 1e-6 would still split a tie that
    straddles a rounding boundary.)"""
    top = max(scores)
    return next(i for i, s in enumerate(scores) if s >= top - 1e-6)


def best_row(table: list[dict]) -> dict:
    """The row of highest accuracy, the first tried among ties (:func:`first_best`): a larger step never wins
    over an equal smaller one tried before it."""
    return table[first_best([row["accuracy"] for row in table])]


def rank_agreement(validation: dict[str, list[float]], target: dict[str, list[float]]) -> dict:
    """How well a validation score chooses among methods for a target: each maps a method to its warm starts'
    scores (one per seed, the same seeds in the same order). Kendall's tau between the two over every warm start
    (``tau``, its ``p``) and over the method means (``tau_methods``), the method the validation ranks first
    (``picked``, the first listed on a tie, :func:`first_best`) and its target mean minus the best method's there
    (``regret``, <= 0: what choosing on this validation loses on the target)."""
    from scipy.stats import kendalltau

    methods = list(validation)
    if len(methods) < 2 or set(target) != set(methods) or any(len(validation[m]) != len(target[m]) for m in methods):
        raise ValueError("rank_agreement: the same >= 2 methods on both sides, the same number of scores each")
    mean = lambda scores: {m: sum(v) / len(v) for m, v in scores.items()}
    v_mean, t_mean = mean(validation), mean(target)
    tau, p = kendalltau([a for m in methods for a in validation[m]], [a for m in methods for a in target[m]])
    picked = methods[first_best([v_mean[m] for m in methods])]
    return {"tau": float(tau), "p": float(p), "picked": picked, "regret": t_mean[picked] - max(t_mean.values()),
            "tau_methods": float(kendalltau([v_mean[m] for m in methods], [t_mean[m] for m in methods])[0])}
