"""Inner loop (DARTS on one task) and outer loop (MAML / FOMAML / Reptile) on torch.func, for every search
space under every execution policy."""

import dataclasses
from dataclasses import replace

import pytest
import torch

from metanas.config import load_config, replace as replace_config
from metanas.core.errors import MetanasError
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import InnerLoop, loss_fn
from metanas.meta.outer import MetaLearner, NonFiniteError
from metanas.space import build_model, chain

OPS = ["avg_pool_3x3", "skip_connect", "conv_3x3"]
CHAIN = ["search.space=chain", "search.layers=2", "search.widths=[2,4]", "search.channels=4"]
SPACES = {  # small enough for 12x12 images and a fast float64 check
    "darts": ["search.space=darts", f"search.ops=[{','.join(OPS)}]", "search.cells=3", "search.nodes=1",
              "search.channels=2"],  # cell 0 normal, 1-2 reduction
    "chain": CHAIN + ["search.pools=[max]"],
    "chain-pools": CHAIN,  # the default: a pooling choice (max, avg) per layer
    "chain-acts": CHAIN + ["search.acts=[relu,abs]"],  # and an activation choice
}


def setup(algorithm, steps=2, dtype=torch.float32, space="darts", policy="mixture", **over):
    torch.manual_seed(0)
    cfg = load_config(None, [f"meta.algorithm={algorithm}", f"inner.steps={steps}", "inner.lr=0.3",
                             "inner.lr_alpha=0.5", *SPACES[space], f"search.policy={policy}",
                             *[f"{k}={v}" for k, v in over.items()]])
    net = build_model(cfg, 3)[0].to(dtype)
    B, Q = 3, 2
    g = torch.Generator().manual_seed(1)
    task = (torch.rand(B, 6, 1, 12, 12, generator=g, dtype=dtype), torch.arange(3).repeat_interleave(2).repeat(B, 1),
            torch.rand(B, 3 * Q, 1, 12, 12, generator=g, dtype=dtype),
            torch.arange(3).repeat_interleave(Q).repeat(B, 1))
    return MetaLearner(net, cfg, 3), task


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("space,policy", [("darts", "mixture"), ("darts", "gumbel"), ("chain", "mixture"),
                                          ("chain", "gumbel"), ("chain-pools", "mixture"),
                                          ("chain-pools", "gumbel"), ("chain-acts", "mixture"),
                                          ("chain-acts", "gumbel")])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
def test_vmap_and_loop_meta_gradients_match(algorithm, space, policy):
    learner, task = setup(algorithm, space=space, policy=policy, **{"inner.final_temperature": 0.5})
    state = learner.generator.get_state()
    g_vmap, loss_v, acc_v = learner.meta_gradient(task, vectorize=True)
    learner.generator.set_state(state)  # the same gumbel sample for the looped reference
    g_loop, loss_l, acc_l = learner.meta_gradient(task, vectorize=False)
    assert max_diff(g_vmap, g_loop) < 1e-5
    assert abs(loss_v - loss_l) < 1e-5 and acc_v == acc_l
    assert max(v.abs().max().item() for v in g_vmap.values()) > 1e-4  # not trivially zero
    alphas = [k for k in g_vmap if k.startswith("alpha_")]
    assert alphas and all(g_vmap[k].abs().max() > 0 for k in alphas)  # the architecture gets a meta-gradient
    if policy == "mixture":  # chunked vmap (memory-saving) gives the same mean (gumbel: one sample per chunk)
        learner.cfg = replace_config(learner.cfg, {"meta.task_chunk": 2})
        assert max_diff(learner.meta_gradient(task)[0], g_vmap) < 1e-5


@pytest.mark.parametrize("space", ["darts", "chain"])
def test_second_order_meta_gradient_matches_finite_differences(monkeypatch, space):
    # ReLU makes the inner gradient piecewise constant in places: finite differences across a kink are
    # meaningless, so the check runs the same network with a smooth activation.
    monkeypatch.setattr(torch.nn, "ReLU", torch.nn.Softplus)
    monkeypatch.setattr(torch.nn.functional, "relu", torch.nn.functional.softplus)
    monkeypatch.setitem(chain.ACTS, "relu", torch.nn.functional.softplus)  # the chain's activation choices
    learner, task = setup("maml", dtype=torch.float64, space=space)
    params = learner.params()
    grads, _, _ = learner.meta_gradient(task, vectorize=False)

    def meta_loss(p):
        total = 0.0
        for b in range(task[0].shape[0]):
            adapted = learner.inner.adapt(learner.model, p, task[0][b], task[1][b])
            total += loss_fn(learner.model, adapted, task[2][b], task[3][b]).item()
        return total / task[0].shape[0]

    torch.manual_seed(3)
    v = {k: torch.randn_like(p) for k, p in params.items()}
    eps = 1e-5
    fd = (meta_loss({k: p + eps * v[k] for k, p in params.items()})
          - meta_loss({k: p - eps * v[k] for k, p in params.items()})) / (2 * eps)
    analytic = sum((grads[k] * v[k]).sum().item() for k in params)
    assert abs(fd - analytic) < 1e-4 * max(1.0, abs(fd)), (fd, analytic)
    # and the first-order gradient is measurably different: the test can tell them apart
    learner.cfg = replace_config(learner.cfg, {"meta.algorithm": "fomaml"})
    fo, _, _ = learner.meta_gradient(task, vectorize=False)
    assert abs(sum((fo[k] * v[k]).sum().item() for k in params) - fd) > 1e-3


def test_inner_loop_adapts_alpha_and_weights_and_lowers_support_loss():
    learner, task = setup("fomaml", steps=5)
    p0 = learner.params()
    x, y = task[0][0], task[1][0]
    p5 = learner.inner.adapt(learner.model, p0, x, y)
    assert not torch.allclose(p5["alpha_normal"], p0["alpha_normal"])
    assert not torch.allclose(p5["classifier.weight"], p0["classifier.weight"])
    assert loss_fn(learner.model, p5, x, y) < loss_fn(learner.model, p0, x, y)
    frozen = learner.inner.weights_only().adapt(learner.model, p0, x, y)
    assert torch.equal(frozen["alpha_normal"], p0["alpha_normal"])


def test_alternating_variant_differs_from_joint_and_uses_both_halves():
    learner, task = setup("fomaml", steps=1, **{"inner.variant": "alternating"})
    x, y = task[0][0], task[1][0]
    p0 = learner.params()
    alt = learner.inner.adapt(learner.model, p0, x, y)
    joint = replace(learner.inner, variant="joint").adapt(learner.model, p0, x, y)
    assert not torch.allclose(alt["alpha_normal"], joint["alpha_normal"])
    # the alpha step of the alternating variant only sees the held-out half of each class's shots
    x2 = x.clone()
    x2[0::2] = torch.rand_like(x2[0::2])  # first shot of each class (the alpha half) changed
    alt2 = learner.inner.adapt(learner.model, p0, x2, y)
    assert torch.allclose(alt2["stem.0.weight"], alt["stem.0.weight"])  # weight step unaffected
    assert not torch.allclose(alt2["alpha_normal"], alt["alpha_normal"])


def test_meta_step_updates_parameters_and_warmup_freezes_alpha():
    learner, task = setup("fomaml", **{"meta.warmup": 1})
    a0 = learner.model.alpha_normal.detach().clone()
    w0 = learner.model.classifier.weight.detach().clone()
    learner.step(task, iteration=0)
    assert torch.equal(learner.model.alpha_normal, a0)
    assert not torch.equal(learner.model.classifier.weight, w0)
    learner.step(task, iteration=1)
    assert not torch.equal(learner.model.alpha_normal, a0)


def test_non_finite_steps_are_skipped_then_stop_the_run():
    learner, task = setup("fomaml")
    w0 = learner.model.classifier.weight.detach().clone()
    bad = (task[0] * float("nan"), *task[1:])
    for i in range(learner.max_nonfinite - 1):
        assert learner.step(bad, i)["skipped_steps"] == i + 1
    assert torch.equal(learner.model.classifier.weight, w0)  # nothing applied
    with pytest.raises(NonFiniteError, match="non-finite"):
        learner.step(bad, 99)


def test_inner_loop_settings_have_one_home():
    cfg = load_config(None, ["inner.steps=2", "inner.eval_steps=7", "inner.lr_alpha=0.3"])
    adaptation = Adaptation.from_config(cfg)
    train, ev = InnerLoop.for_meta_training(cfg, 5), InnerLoop.for_adaptation(cfg, 5, adaptation)
    assert (train.steps, ev.steps, ev.lr_alpha, ev.ways) == (2, 7, 0.3, 5)
    cfg = replace_config(cfg, {"inner.eval_lr_alpha": 3.0})  # adaptation's alpha step, apart from meta-training's
    assert (InnerLoop.for_meta_training(cfg, 5).lr_alpha, Adaptation.from_config(cfg).lr_alpha) == (0.3, 3.0)
    assert InnerLoop.for_adaptation(cfg, 5, adaptation.replace(lr_alpha=0)).lr_alpha == 0.0
    assert ev.weights_only().lr_alpha == 0.0 and ev.adapts_arch


def test_an_adaptation_is_one_frozen_validated_value():
    cfg = load_config(None, ["inner.eval_steps=4"])
    a = Adaptation.from_config(cfg)
    assert (a.steps, a.lr_alpha, a.adapts_arch) == (4, 0.5, True)
    assert a.replace(lr_alpha=0) == Adaptation(4, 0.0) and not a.replace(lr_alpha=0).adapts_arch
    assert a.replace() == a and Adaptation.from_dict({"steps": 4, "lr_alpha": 0.5, "accuracy": 0.9}) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.steps = 3
    with pytest.raises(MetanasError, match=r"lr_alpha \(--lr-alpha\) -1.0: must be >= 0"):
        a.replace(lr_alpha=-1.0)
    with pytest.raises(MetanasError, match=r"steps \(--steps\) 2.5: must be a whole number"):
        a.replace(steps=2.5)
    with pytest.raises(dataclasses.FrozenInstanceError):  # a validated config is never written into
        cfg.inner.eval_steps = 3


def test_temperature_is_annealed_over_the_inner_steps():
    inner = InnerLoop(steps=2, lr=0.1, lr_alpha=0.1, ways=3, temperature=1.0, final_temperature=0.25)
    assert [inner.temperature_at(s) for s in range(3)] == [1.0, 0.5, 0.25]
    assert InnerLoop(steps=2, lr=0.1, lr_alpha=0.1, ways=3).temperature_at(2) == 1.0


def test_cost_weight_moves_alpha_towards_cheaper_choices():
    """The cost gradient alone (lr 0 on the task loss is not possible, so compare with and without) lowers the
    expected cost under alpha."""
    from metanas.data import ImageFormat
    from metanas.training.loop import _cost_objective
    from metanas.space import create_space

    costs = {}
    for weight in (0.0, 1.0):
        learner, task = setup("fomaml", space="chain", **{"meta.cost_weight": weight, "meta.lr_alpha": 0.05})
        space = create_space(learner.cfg.search)
        learner.cost = _cost_objective(space, learner.model, 3, ImageFormat(1, 12))
        for i in range(5):
            learner.step(task, i)
        costs[weight] = float(learner.cost({k: v for k, v in learner.params().items() if k.startswith("alpha_")}))
    assert costs[1.0] < costs[0.0]


@pytest.mark.parametrize("space", ["darts", "chain"])
def test_learned_alpha_step_sizes_are_used_meta_learned_and_match_the_looped_reference(space):
    learner, task = setup("fomaml", space=space, **{"inner.learn_lr_alpha": "true"})
    params = {k: v.clone() for k, v in learner.params().items()}  # the optimizer steps the parameters in place
    lrs = [k for k in params if k.startswith("lr_alpha_")]
    alphas = [k for k in params if k.startswith("alpha_")]
    assert sorted(lrs) == sorted(f"lr_{k}" for k in alphas)
    assert all(params[f"lr_{k}"].shape == (params[k].shape[0], 1) for k in alphas)  # one per choice point
    assert all(torch.allclose(params[k].exp(), torch.tensor(0.5)) for k in lrs)  # starts at inner.lr_alpha
    x, y = task[0][0], task[1][0]
    a = alphas[0]
    base = learner.inner.adapt(learner.model, params, x, y)
    assert all(torch.equal(base[k], params[k]) for k in lrs)  # read, never stepped by the inner loop
    # the learned step is the one taken: a row's step size 0 leaves that row of alpha where it was
    zero = {**params, f"lr_{a}": params[f"lr_{a}"].clone().index_fill_(0, torch.tensor([0]), -float("inf"))}
    moved = learner.inner.adapt(learner.model, zero, x, y)
    assert torch.equal(moved[a][0], params[a][0]) and not torch.equal(moved[a][1:], params[a][1:])
    # the ablation still holds alpha fixed whatever the learned step sizes
    assert torch.equal(learner.inner.weights_only().adapt(learner.model, params, x, y)[a], params[a])
    # first order still gives the step sizes a meta-gradient, the same vmapped as looped
    g_vmap, _, _ = learner.meta_gradient(task, vectorize=True)
    g_loop, _, _ = learner.meta_gradient(task, vectorize=False)
    assert max_diff(g_vmap, g_loop) < 1e-5 and all(g_vmap[k].abs().max() > 0 for k in lrs)
    learner.step(task, 0)
    assert all(not torch.equal(learner.params()[k], params[k]) for k in lrs)


def test_learned_alpha_step_size_meta_gradient_matches_finite_differences(monkeypatch):
    """d(query loss after first-order adaptation)/d(log step): the inner gradients are constants, the step is not."""
    monkeypatch.setattr(torch.nn.functional, "relu", torch.nn.functional.softplus)
    monkeypatch.setitem(chain.ACTS, "relu", torch.nn.functional.softplus)  # the chain's activation choices
    learner, task = setup("fomaml", steps=1, dtype=torch.float64, space="chain", **{"inner.learn_lr_alpha": "true"})
    params = learner.params()
    grads, _, _ = learner.meta_gradient(task, vectorize=False)
    k = "lr_alpha_op"

    def meta_loss(s):  # the inner gradients at the unperturbed point, as first order treats them
        p = {**params, k: params[k] + s}
        return sum(loss_fn(learner.model, learner.inner.adapt(learner.model, p, task[0][b], task[1][b]),
                           task[2][b], task[3][b]).item() for b in range(task[0].shape[0])) / task[0].shape[0]

    eps = 1e-5
    v = torch.zeros_like(params[k])
    v[0] = 1.0
    fd = (meta_loss(eps * v) - meta_loss(-eps * v)) / (2 * eps)
    assert abs(fd - (grads[k] * v).sum().item()) < 1e-5 * max(1.0, abs(fd)), (fd, grads[k])


def test_learned_alpha_step_sizes_need_a_positive_initial_step():
    from metanas.core.errors import MetanasError

    with pytest.raises(MetanasError, match="inner.lr_alpha"):
        load_config(None, ["inner.learn_lr_alpha=true", "inner.lr_alpha=0"])
