"""The prototype head (Proto-MAML, inner.head=proto): the classifier set from the support set's class prototypes,
W_k = 2 c_k and b_k = -|c_k|^2, before the inner steps; differentiable for every meta-gradient, under vmap, in both
spaces, and for any number of ways."""

import pytest
import torch
import torch.nn.functional as F

from metanas.config import load_config
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import HEAD, InnerLoop, forward, prototype_head
from metanas.meta.outer import Episodes, MetaLearner
from metanas.space import build_model

SPACES = {"chain": ["search.space=chain"],
          "darts": ["search.space=darts", "search.channels=4", "search.cells=2", "search.nodes=1"]}


def _task(ways, shots, queries, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(ways * shots, 1, 28, 28, generator=g), torch.arange(ways).repeat_interleave(shots),
            torch.rand(ways * queries, 1, 28, 28, generator=g), torch.arange(ways).repeat_interleave(queries))


def _setup(space, *overrides, ways=5):
    cfg = load_config(None, ["inner.head=proto", *SPACES[space], *overrides])
    torch.manual_seed(0)
    return cfg, build_model(cfg, ways)[0]


@pytest.mark.parametrize("space", list(SPACES))
def test_the_head_is_twice_the_prototypes_and_minus_their_squared_norms(space):
    cfg, model = _setup(space)
    sx, sy, qx, _ = _task(7, 3, 2)  # 7 ways on a 5-way network: the head is the task's
    params = dict(model.named_parameters())
    head = prototype_head(model, params, sx, sy, 7)
    features = forward(model, params, sx, embed=True)
    prototypes = torch.stack([features[sy == k].mean(0) for k in range(7)])
    assert torch.allclose(head[HEAD[0]], 2 * prototypes, atol=1e-6)
    assert torch.allclose(head[HEAD[1]], -(prototypes ** 2).sum(-1), atol=1e-6)
    # so the logits rank classes by the squared distance to their prototype
    f = forward(model, params, qx, embed=True)
    logits = forward(model, head, qx)
    assert logits.shape == (len(qx), 7)
    assert torch.equal(logits.argmax(-1), torch.cdist(f, prototypes).argmin(-1))


@pytest.mark.parametrize("space", list(SPACES))
def test_with_no_inner_step_the_meta_gradient_is_the_prototypical_networks_gradient(space):
    """With 0 steps, Proto-MAML's query loss is ProtoNet's (squared Euclidean distances: the logits differ by a
    per-query constant): its meta-gradient must flow into the features through the prototypes as well."""
    cfg, model = _setup(space, "inner.steps=0")
    task = _task(5, 2, 3)
    grads = MetaLearner(model, cfg, 5).meta_gradient(tuple(t[None] for t in task))[0]
    params = {k: p.detach().requires_grad_() for k, p in model.named_parameters()}
    sx, sy, qx, qy = task
    fs, fq = forward(model, params, sx, embed=True), forward(model, params, qx, embed=True)
    prototypes = torch.stack([fs[sy == k].mean(0) for k in range(5)])
    loss = F.cross_entropy(-torch.cdist(fq, prototypes) ** 2, qy)
    expected = dict(zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True,
                                                    materialize_grads=True)))
    for k in HEAD:
        assert not grads[k].any()  # the meta-learned classifier is not used
    for k, g in grads.items():
        assert torch.allclose(g, expected[k], atol=1e-4, rtol=1e-3), k  # conv biases before BatchNorm: ~1e-6 noise


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
@pytest.mark.parametrize("space", list(SPACES))
def test_every_meta_gradient_runs_under_vmap_on_episodes_of_several_ways(space, algorithm):
    cfg, model = _setup(space, f"meta.algorithm={algorithm}", "inner.steps=1", ways=50)
    learner = MetaLearner(model, cfg, 50)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    episodes = Episodes([(3, tuple(torch.stack([a, b]) for a, b in zip(_task(3, 2, 2, 1), _task(3, 2, 2, 2)))),
                         (6, tuple(t[None] for t in _task(6, 1, 2, 3)))])
    metrics = learner.step(episodes, 0)
    assert torch.isfinite(metrics["loss"]) and metrics["skipped_steps"] == 0
    moved = [k for k, p in model.named_parameters() if not torch.equal(p.detach(), before[k])]
    assert moved and not set(HEAD) & set(moved)  # the features learn; the unused fixed head stays


@pytest.mark.parametrize("space", list(SPACES))
def test_an_adaptation_takes_any_ways_and_its_query_accuracy_beats_chance(space):
    cfg, model = _setup(space)
    sx, sy, qx, qy = _task(12, 2, 2)
    qx = sx  # the support images again: the prototypes classify them well above chance even untrained
    qy = sy
    inner = InnerLoop.for_adaptation(cfg, 12, Adaptation(steps=2, lr_alpha=0.5))
    params = inner.adapt(model, dict(model.named_parameters()), sx, sy)
    logits = inner.logits(model, params, qx)
    assert logits.shape == (len(qx), 12)
    assert (logits.argmax(-1) == qy).float().mean() > 0.5
