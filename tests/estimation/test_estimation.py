import math

import torch

from metanas.estimation.loop import Evaluation

from metanas.estimation.stats import mean_ci95, paired_difference


def test_ci95_is_students_t_over_tasks():
    acc = torch.tensor([0.6, 0.8, 1.0, 0.6])
    mean, ci = mean_ci95(acc)
    sd = math.sqrt(sum((a - 0.75) ** 2 for a in (0.6, 0.8, 1.0, 0.6)) / 3)  # sample std (n - 1)
    # t(0.975, 3 degrees of freedom) = 3.182 (tables), not the normal 1.96: four tasks give a wide interval
    assert math.isclose(mean, 0.75, rel_tol=1e-6) and math.isclose(ci, 3.1824463 * sd / 2, rel_tol=1e-6)
    assert math.isnan(mean_ci95(torch.tensor([0.5]))[1])  # one task: no interval


def test_ci95_tends_to_the_normal_quantile_with_many_tasks():
    acc = torch.rand(600, generator=torch.Generator().manual_seed(0))
    _, ci = mean_ci95(acc)
    z = 1.96 * acc.double().std().item() / math.sqrt(600)
    assert z < ci < 1.003 * z  # t(0.975, 599) = 1.9640


def test_paired_difference_is_the_ci_of_per_task_differences():
    ev = lambda acc: Evaluation(torch.tensor(acc), torch.tensor(acc)[:, None], {}, torch.zeros(len(acc)))
    a, b = ev([0.6, 0.8, 1.0, 0.6]), ev([0.5, 0.7, 0.8, 0.6])
    mean, ci = paired_difference(a, b)
    assert math.isclose(mean, 0.1, rel_tol=1e-6)
    assert math.isclose(ci, mean_ci95(torch.tensor([0.1, 0.1, 0.2, 0.0]))[1], rel_tol=1e-6)
    # the same task-to-task spread in both cancels: the paired CI is far narrower than either alone
    assert ci < a.ci95 and ci < b.ci95
