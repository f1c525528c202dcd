"""run.amp=bf16: the supernet's forward runs in bfloat16 under autocast, its logits, loss and gradients stay float32
and close to those of float32; fp32 is the float32 forward, bit for bit. (The accuracy and step time it costs are
measured by benchmarks/precision.py, not here.)"""

import pytest
import torch
from torch.func import functional_call

from metanas.config import load_config
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import InnerLoop
from metanas.meta.outer import MetaLearner
from metanas.space import build_model

SPACES = {"chain": ["search.space=chain"],
          "darts": ["search.space=darts", "search.channels=4", "search.cells=2", "search.nodes=1"]}


def _setup(space, amp):
    cfg = load_config(None, ["inner.steps=2", f"run.amp={amp}", *SPACES[space]])
    torch.manual_seed(0)
    model = build_model(cfg, 3)[0]
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(6, 1, 28, 28, generator=g), torch.arange(3).repeat_interleave(2)
    return cfg, model, x, y


@pytest.mark.parametrize("space", list(SPACES))
def test_bf16_adapts_in_bfloat16_and_stays_close_to_float32(space):
    out = {}
    for amp in ("fp32", "bf16"):
        cfg, model, x, y = _setup(space, amp)
        inner = InnerLoop.for_adaptation(cfg, 3, Adaptation(steps=2, lr_alpha=0.5))
        assert inner.amp == amp
        params = dict(model.named_parameters())
        out[amp] = inner.logits(model, inner.adapt(model, params, x, y), x)
        if amp == "fp32":
            with torch.no_grad():
                plain = functional_call(model, inner.adapt(model, params, x, y), (x,))
            assert torch.equal(out[amp], plain)
    assert out["bf16"].dtype == torch.float32
    assert not torch.equal(out["bf16"], out["fp32"])  # the forward did run in bfloat16
    assert torch.allclose(out["bf16"], out["fp32"], atol=0.1, rtol=0.05)


@pytest.mark.parametrize("space", list(SPACES))
def test_a_bf16_meta_step_under_vmap_gives_float32_gradients_close_to_float32(space):
    grads = {}
    for amp in ("fp32", "bf16"):
        cfg, model, x, y = _setup(space, amp)
        learner = MetaLearner(model, cfg, 3)
        task = tuple(t.expand(2, *t.shape) for t in (x, y, x, y))
        grads[amp] = learner.meta_gradient(task)[0]
    for g in grads["bf16"].values():
        assert g.dtype == torch.float32 and torch.isfinite(g).all()
    flat = {amp: torch.cat([g.flatten() for g in grads[amp].values()]) for amp in grads}
    # measured: cosine 0.87 (chain) and 0.997 (DARTS) on this task; an unrelated gradient would be near 0
    assert torch.cosine_similarity(flat["bf16"], flat["fp32"], 0) > 0.8
