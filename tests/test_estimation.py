import math

import torch

from metanas.estimation import mean_ci95, op_wins


def test_ci95_is_the_normal_approximation_over_tasks():
    acc = torch.tensor([0.6, 0.8, 1.0, 0.6])
    mean, ci = mean_ci95(acc)
    sd = math.sqrt(sum((a - 0.75) ** 2 for a in (0.6, 0.8, 1.0, 0.6)) / 3)  # sample std (n - 1)
    assert math.isclose(mean, 0.75, rel_tol=1e-6) and math.isclose(ci, 1.96 * sd / 2, rel_tol=1e-6)
    assert math.isnan(mean_ci95(torch.tensor([0.5]))[1])  # one task: no interval


def test_op_wins_counts_the_argmax_op_per_edge_over_tasks():
    alphas = {"alpha_normal": torch.tensor([[[0.0, 2.0], [1.0, 0.0]],
                                            [[0.0, 3.0], [0.0, 1.0]]])}  # 2 tasks, 2 edges, 2 ops
    wins = op_wins(alphas)["alpha_normal"]
    assert torch.equal(wins, torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
