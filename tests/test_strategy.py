"""Inner loop (DARTS on one task) and outer loop (MAML / FOMAML / Reptile) on torch.func."""

import pytest
import torch

from metanas.config import load_config
from metanas.space import Network
from metanas.strategy import MetaLearner, NonFiniteError, adapt
from metanas.strategy.darts import loss_fn

OPS = ["avg_pool_3x3", "skip_connect", "conv_3x3"]


def setup(algorithm, steps=2, dtype=torch.float32, C=2, **over):
    torch.manual_seed(0)
    cfg = load_config(None, [f"meta.algorithm={algorithm}", f"inner.steps={steps}", "inner.lr=0.3",
                             "inner.lr_alpha=0.5", *[f"{k}={v}" for k, v in over.items()]])
    net = Network(3, C=C, cells=3, nodes=1, ops=OPS).to(dtype)  # cell 0 normal, 1-2 reduction
    B, Q = 3, 2
    g = torch.Generator().manual_seed(1)
    task = (torch.rand(B, 6, 1, 12, 12, generator=g, dtype=dtype), torch.arange(3).repeat_interleave(2).repeat(B, 1),
            torch.rand(B, 3 * Q, 1, 12, 12, generator=g, dtype=dtype),
            torch.arange(3).repeat_interleave(Q).repeat(B, 1))
    return MetaLearner(net, cfg, 3), task


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
def test_vmap_and_loop_meta_gradients_match(algorithm):
    learner, task = setup(algorithm)
    g_vmap, loss_v, acc_v = learner.meta_gradient(task, vectorize=True)
    g_loop, loss_l, acc_l = learner.meta_gradient(task, vectorize=False)
    assert max_diff(g_vmap, g_loop) < 1e-5
    assert abs(loss_v - loss_l) < 1e-5 and acc_v == acc_l
    assert max(v.abs().max().item() for v in g_vmap.values()) > 1e-4  # not trivially zero
    # chunked vmap (memory-saving) gives the same mean
    learner.cfg.meta.task_chunk = 2
    assert max_diff(learner.meta_gradient(task)[0], g_vmap) < 1e-5


def test_second_order_meta_gradient_matches_finite_differences(monkeypatch):
    # ReLU makes the inner gradient piecewise constant in places: finite differences across a kink are
    # meaningless, so the check runs the same network with a smooth activation.
    monkeypatch.setattr(torch.nn, "ReLU", torch.nn.Softplus)
    learner, task = setup("maml", dtype=torch.float64)
    params = learner.params()
    grads, _, _ = learner.meta_gradient(task, vectorize=False)

    def meta_loss(p):
        total = 0.0
        for b in range(task[0].shape[0]):
            adapted = adapt(learner.model, p, task[0][b], task[1][b], **learner.inner_kwargs())
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
    learner.cfg.meta.algorithm = "fomaml"
    fo, _, _ = learner.meta_gradient(task, vectorize=False)
    assert abs(sum((fo[k] * v[k]).sum().item() for k in params) - fd) > 1e-3


def test_inner_loop_adapts_alpha_and_weights_and_lowers_support_loss():
    learner, task = setup("fomaml", steps=5)
    p0 = learner.params()
    x, y = task[0][0], task[1][0]
    p5 = adapt(learner.model, p0, x, y, **learner.inner_kwargs())
    assert not torch.allclose(p5["alpha_normal"], p0["alpha_normal"])
    assert not torch.allclose(p5["classifier.weight"], p0["classifier.weight"])
    assert loss_fn(learner.model, p5, x, y) < loss_fn(learner.model, p0, x, y)
    frozen = adapt(learner.model, p0, x, y, **learner.inner_kwargs(alpha_frozen=True))
    assert torch.equal(frozen["alpha_normal"], p0["alpha_normal"])


def test_alternating_variant_differs_from_joint_and_uses_both_halves():
    learner, task = setup("fomaml", steps=1, **{"inner.variant": "alternating"})
    x, y = task[0][0], task[1][0]
    p0 = learner.params()
    alt = adapt(learner.model, p0, x, y, **learner.inner_kwargs())
    learner.cfg.inner.variant = "joint"
    joint = adapt(learner.model, p0, x, y, **learner.inner_kwargs())
    assert not torch.allclose(alt["alpha_normal"], joint["alpha_normal"])
    # the alpha step of the alternating variant only sees the held-out half of each class's shots
    x2 = x.clone()
    x2[0::2] = torch.rand_like(x2[0::2])  # first shot of each class (the alpha half) changed
    learner.cfg.inner.variant = "alternating"
    alt2 = adapt(learner.model, p0, x2, y, **learner.inner_kwargs())
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
