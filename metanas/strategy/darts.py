"""The inner loop: DARTS on one task, from its support set.

Purely functional (``torch.func``): parameters are a dict, every step returns
a new dict, so the same code runs a single task, is ``vmap``-ed over a
meta-batch, and is differentiated through for second-order MAML.

Variants (``inner.variant``):

* ``joint`` (default): one forward/backward on the support set yields the
  gradient of the loss w.r.t. both the weights ``w`` and the architecture
  ``alpha``; both take an SGD step. This is first-order DARTS with a shared
  batch, as METANAS uses for few-shot tasks, and costs one backward per step.
* ``alternating``: a weight step on one half of each class's support shots,
  then an alpha step on the other half with the updated weights (the DARTS
  bilevel split, first-order). With 1 shot there is nothing to hold out, so
  both steps use the whole support set. Two backwards per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

Params = dict[str, torch.Tensor]


def is_alpha(name: str) -> bool:
    return name.startswith("alpha_")


def loss_fn(model, params: Params, x, y) -> torch.Tensor:
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def _sgd(params: Params, grads: Params, lr: float, lr_alpha: float, second_order: bool) -> Params:
    out = {}
    for k, p in params.items():
        step = lr_alpha if is_alpha(k) else lr
        g = grads[k] if second_order else grads[k].detach()  # first order: the inner gradient is a constant
        out[k] = p - step * g if step else p
    return out


def _halves(x, y, ways: int):
    """Split a class-major support set into two halves of each class's shots."""
    shots = x.shape[0] // ways
    if shots < 2:
        return (x, y), (x, y)
    xs, ys = x.unflatten(0, (ways, shots)), y.unflatten(0, (ways, shots))
    h = shots // 2
    return (xs[:, h:].flatten(0, 1), ys[:, h:].flatten(0, 1)), (xs[:, :h].flatten(0, 1), ys[:, :h].flatten(0, 1))


def adapt(model, params: Params, x, y, steps: int, lr: float, lr_alpha: float, variant: str = "joint",
          second_order: bool = False, ways: int = 1,
          trajectory: bool = False):
    """Adapt ``params`` to one task's support set ``(x, y)``.

    Returns the adapted params, or ``(params, path)`` with ``trajectory``: ``path[k]`` stacks
    ``params[k]`` before the first and after every step on a leading dim (e.g. to score the query set
    after each step, showing accuracy against adaptation steps).
    """
    g = grad(lambda p, xb, yb: loss_fn(model, p, xb, yb))
    path = [params] if trajectory else None
    if variant == "alternating":
        (xw, yw), (xa, ya) = _halves(x, y, ways)  # ways is static: y.max() cannot be read under vmap
    for _ in range(steps):
        if variant == "joint":
            params = _sgd(params, g(params, x, y), lr, lr_alpha, second_order)
        else:
            params = _sgd(params, g(params, xw, yw), lr, 0.0, second_order)
            params = _sgd(params, g(params, xa, ya), 0.0, lr_alpha, second_order)
        if trajectory:
            path.append(params)
    return (params, {k: torch.stack([p[k] for p in path]) for k in params}) if trajectory else params
