import math

import torch

from metanas.estimation import Evaluation, mean_ci95, paired_difference


def test_ci95_is_the_normal_approximation_over_tasks():
    acc = torch.tensor([0.6, 0.8, 1.0, 0.6])
    mean, ci = mean_ci95(acc)
    sd = math.sqrt(sum((a - 0.75) ** 2 for a in (0.6, 0.8, 1.0, 0.6)) / 3)  # sample std (n - 1)
    assert math.isclose(mean, 0.75, rel_tol=1e-6) and math.isclose(ci, 1.96 * sd / 2, rel_tol=1e-6)
    assert math.isnan(mean_ci95(torch.tensor([0.5]))[1])  # one task: no interval


def test_paired_difference_is_the_ci_of_per_task_differences():
    ev = lambda acc: Evaluation(torch.tensor(acc), torch.tensor(acc)[:, None], {}, torch.zeros(len(acc)))
    a, b = ev([0.6, 0.8, 1.0, 0.6]), ev([0.5, 0.7, 0.8, 0.6])
    mean, ci = paired_difference(a, b)
    assert math.isclose(mean, 0.1, rel_tol=1e-6)
    assert math.isclose(ci, mean_ci95(torch.tensor([0.1, 0.1, 0.2, 0.0]))[1], rel_tol=1e-6)
    # the same task-to-task spread in both cancels: the paired CI is far narrower than either alone
    assert ci < a.ci95 and ci < b.ci95
