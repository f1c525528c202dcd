"""No host sync in the hot loop: a meta-step reads the device once (its finiteness test), an adaptation never.

On a GPU every ``.item()``, ``bool(tensor)`` or ``float(tensor)`` waits for the device to finish; for networks this
small that wait dominates a step. They all go through ``aten._local_scalar_dense``, which a dispatch mode can count on
the CPU as well, so this test holds the GPU path to account on a machine without one. (Adam's step counters are CPU
tensors on every device: reading them costs no device sync, so they are not counted.)
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from metanas.config import load_config
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import InnerLoop
from metanas.meta.outer import MetaLearner
from metanas.space import build_model

SPACES = {"chain": ["search.space=chain"],
          "darts": ["search.space=darts", "search.channels=4", "search.cells=2", "search.nodes=1"]}


class CountSyncs(TorchDispatchMode):
    """Counts reads of a tensor's value on the host, except those of the ``ignore`` tensors."""

    def __init__(self, ignore=()):
        super().__init__()
        self.ignore, self.count = {id(t) for t in ignore}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and id(args[0]) not in self.ignore:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _setup(space):
    cfg = load_config(None, ["inner.steps=2", *SPACES[space]])
    torch.manual_seed(0)
    learner = MetaLearner(build_model(cfg, 3)[0], cfg, 3)
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat_interleave(2).repeat(2, 1)
    task = (torch.rand(2, 6, 1, 28, 28, generator=g), labels, torch.rand(2, 6, 1, 28, 28, generator=g), labels)
    return cfg, learner, task


@pytest.mark.parametrize("space", list(SPACES))
def test_a_meta_step_reads_the_device_once(space):
    cfg, learner, task = _setup(space)
    learner.step(task, 0)  # the optimizer's state exists from here on
    steps = [s["step"] for s in learner.optimizer.state.values()]
    with CountSyncs(ignore=steps) as syncs:
        metrics = learner.step(task, 1)
    assert syncs.count == 1  # the stacked finiteness test, nothing else
    assert isinstance(metrics["loss"], torch.Tensor) and metrics["loss"].dim() == 0  # read when logged, not here


@pytest.mark.parametrize("space", list(SPACES))
def test_an_adaptation_never_reads_the_device(space):
    cfg, learner, task = _setup(space)
    inner = InnerLoop.for_adaptation(cfg, 3, Adaptation(steps=3, lr_alpha=0.5))
    with CountSyncs() as syncs:
        adapted = inner.adapt(learner.model, learner.params(), task[0][0], task[1][0])
        inner.logits(learner.model, adapted, task[2][0])
    assert syncs.count == 0
