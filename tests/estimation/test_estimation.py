import math
import time

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


def test_evaluation_adapts_as_many_tasks_per_vmap_call_as_the_memory_budget_holds(monkeypatch):
    """``evaluate`` draws ``chunk`` tasks together but vmaps only as many per call as ``memory_budget`` GB of
    activations hold (a 50-shot task of 84 px images takes several GB alone): the same accuracies either way, on
    real Omniglot tasks."""
    import metanas.estimation.loop as loop
    from metanas.config import load_config
    from metanas.data import get_tasksets, load_family
    from metanas.meta.inner import InnerLoop, activation_bytes
    from metanas.space import build_model

    cfg = load_config(None, ["search.space=darts", "search.channels=4", "search.cells=2", "search.nodes=1"])
    torch.manual_seed(0)
    model = build_model(cfg, 5)[0]
    params = {k: v.detach() for k, v in model.named_parameters()}
    taskset = get_tasksets(load_family("omniglot-5way")).test
    inner = InnerLoop(steps=2, lr=0.1, lr_alpha=0.1, ways=5)
    calls = []

    def spy(fn, **kw):  # the real vmap, recording how many tasks each call adapts
        def run(p, sx, sy):
            calls.append(sx.shape[0])
            return torch.func.vmap(fn, **kw)(p, sx, sy)
        return run

    monkeypatch.setattr(loop, "vmap", spy)
    task_gb = activation_bytes(model, taskset.sample(torch.Generator().manual_seed(0)).support_x) / 2**30

    def run(budget):
        calls.clear()
        ev = loop.evaluate(model, params, taskset, tasks=6, inner=inner, generator=torch.Generator().manual_seed(3),
                           chunk=6, memory_budget=budget)
        return ev.accuracies, list(calls)

    whole, whole_calls = run(100 * task_gb)
    two, two_calls = run(2.5 * task_gb)
    assert whole_calls == [6] and two_calls == [2, 2, 2]
    one, one_calls = run(0.5 * task_gb)  # less than one task: one at a time, without vmap
    assert one_calls == []
    assert torch.allclose(whole, two) and torch.allclose(whole, one)

    measured = []

    def slow_estimate(model, x):  # the real estimate, made slow: it must stay out of the timed adaptation
        measured.append(x.shape[0])
        time.sleep(1.0)
        return activation_bytes(model, x)

    monkeypatch.setattr(loop, "activation_bytes", slow_estimate)
    ev = loop.evaluate(model, params, taskset, tasks=2, inner=inner, generator=torch.Generator().manual_seed(3),
                       chunk=1)
    assert measured == [] and len(ev.seconds) == 2  # one task per call: nothing to estimate
    ev = loop.evaluate(model, params, taskset, tasks=6, inner=inner, generator=torch.Generator().manual_seed(3),
                       chunk=6)
    assert measured == [5] and ev.seconds.sum() < 1.0  # the per-task times leave the estimate out
