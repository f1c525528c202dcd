"""The inner loop: adapt ``(w, alpha)`` to one task's support set (DARTS on one task).

Purely functional (``torch.func``): parameters are a dict, every step returns
a new dict, so the same code runs a single task, is ``vmap``-ed over a
meta-batch, and is differentiated through for second-order MAML.

:class:`InnerLoop` is the one home of the inner-loop settings: built from ``cfg.inner`` for meta-training
(``inner.steps``, ``inner.lr_alpha``), or for a new task from a :class:`~metanas.meta.adaptation.Adaptation` (its steps
and alpha step; an alpha step of 0 keeps the architecture).

Variants (``inner.variant``):

* ``joint`` (default): one forward/backward on the support set yields the
  gradient of the loss w.r.t. both the weights ``w`` and the architecture
  ``alpha``; both take an SGD step. This is first-order DARTS with a shared
  batch, as METANAS uses for few-shot tasks, and costs one backward per step.
* ``alternating``: a weight step on one half of each class's support shots,
  then an alpha step on the other half with the updated weights (the DARTS
  bilevel split, first-order). With 1 shot there is nothing to hold out, so
  both steps use the whole support set. Two backwards per step.

With ``inner.learn_lr_alpha``, each alpha ``alpha_X [rows, choices]`` has a meta-learned log step size
``lr_alpha_X [rows, 1]`` (one per choice point, :func:`metanas.space.base.attach_learned_lrs`): a parameter of the warm start that
the inner loop reads and never updates; ``lr_alpha = 0`` (``--no-arch-adapt``) still holds alpha fixed.

The execution policy's temperature goes from ``inner.temperature`` at the first step to
``inner.final_temperature`` at the last step and the query (geometrically): the adapted
architecture of a task is then near-discrete.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from metanas.meta.adaptation import Adaptation
from metanas.policy.execution import executing
# the parameter names (alpha_*, and lr_alpha_* with inner.learn_lr_alpha) belong to the space layer
from metanas.space.base import LEARNED_LR, attach_learned_lrs, is_alpha, is_learned_lr  # noqa: F401

Params = dict[str, torch.Tensor]
HEAD = ("classifier.weight", "classifier.bias")  # the classifier of both spaces, which a prototype head replaces


def forward(model, params: Params, x, amp: str = "fp32", embed: bool = False) -> torch.Tensor:
    """The network's float32 logits (``embed``: the features its classifier reads); with ``amp="bf16"`` its
    convolutions and matmuls run in bfloat16 under ``torch.autocast`` (parameters, gradients and the loss stay
    float32)."""
    kwargs = {"embed": True} if embed else None
    if amp == "fp32":
        return functional_call(model, params, (x,), kwargs)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return functional_call(model, params, (x,), kwargs).float()


def prototype_head(model, params: Params, x, y, ways: int, amp: str = "fp32") -> Params:
    """``params`` with the classifier set from the support set ``(x, y)``'s class prototypes (Proto-MAML): with c_k
    the mean feature of class k, W_k = 2 c_k and b_k = -|c_k|^2, so the logits are -|f - c_k|^2 up to a term common
    to every class. Differentiable (the meta-gradient flows into the features through the prototypes), free of
    host reads and of data-dependent shapes, so it runs under ``vmap``; ``ways`` is static."""
    features = forward(model, params, x, amp, embed=True)  # [S, D]
    onehot = (y[:, None] == torch.arange(ways, device=y.device)).to(features)  # [S, ways]; one_hot reads y.max()
    prototypes = onehot.T @ features / onehot.sum(0)[:, None]
    return {**params, HEAD[0]: 2 * prototypes, HEAD[1]: -(prototypes ** 2).sum(-1)}


def activation_bytes(model, x) -> int:
    """Bytes autograd saves for a backward through ``model``'s forward of ``x`` (its own parameters, no
    ``torch.func``: transforms refuse saved-tensor hooks): the activation memory of an inner step on ``x``."""
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        model(x).sum()
    return saved


def loss_fn(model, params: Params, x, y, amp: str = "fp32") -> torch.Tensor:
    return F.cross_entropy(forward(model, params, x, amp), y)


def _sgd(params: Params, grads: Params, lr: float, lr_alpha: float, second_order: bool) -> Params:
    out = {}
    for k, p in params.items():
        step = 0.0 if is_learned_lr(k) else lr_alpha if is_alpha(k) else lr
        if not step:
            out[k] = p
            continue
        if LEARNED_LR + k in params:  # an alpha with a meta-learned step: [rows, 1], one per choice point
            step = params[LEARNED_LR + k].exp()
        g = grads[k] if second_order else grads[k].detach()  # first order: the inner gradient is a constant
        out[k] = p - step * g
    return out


def _halves(x, y, ways: int):
    """Split a class-major support set into two halves of each class's shots."""
    shots = x.shape[0] // ways
    if shots < 2:
        return (x, y), (x, y)
    xs, ys = x.unflatten(0, (ways, shots)), y.unflatten(0, (ways, shots))
    h = shots // 2
    return (xs[:, h:].flatten(0, 1), ys[:, h:].flatten(0, 1)), (xs[:, :h].flatten(0, 1), ys[:, :h].flatten(0, 1))


@dataclass(frozen=True)
class InnerLoop:
    """How one task is adapted: built by :meth:`from_config`, never from loose keyword arguments."""

    steps: int
    lr: float
    lr_alpha: float  # 0: the architecture is not adapted
    ways: int
    variant: str = "joint"
    temperature: float = 1.0
    final_temperature: float | None = None
    amp: str = "fp32"  # run.amp: the forward's mixed precision
    head: str = "fixed"  # inner.head: proto sets the classifier from the support set's prototypes first

    @classmethod
    def for_meta_training(cls, cfg, ways: int) -> "InnerLoop":
        """The inner loop of meta-training: ``inner.steps`` steps, alpha's step ``inner.lr_alpha``."""
        return cls._from(cfg, ways, cfg.inner.steps, cfg.inner.lr_alpha)

    @classmethod
    def for_adaptation(cls, cfg, ways: int, adaptation: Adaptation) -> "InnerLoop":
        """The inner loop of a new task (evaluation, adaptation, search, export): ``adaptation``'s steps and alpha
        step, the rest of ``cfg.inner`` (learning rate, variant, temperatures)."""
        return cls._from(cfg, ways, adaptation.steps, adaptation.lr_alpha)

    @classmethod
    def _from(cls, cfg, ways: int, steps: int, lr_alpha: float) -> "InnerLoop":
        i = cfg.inner
        return cls(steps=steps, lr=i.lr, lr_alpha=lr_alpha, ways=ways, variant=i.variant, temperature=i.temperature,
                   final_temperature=i.final_temperature, amp=cfg.run.amp, head=i.head)

    def with_ways(self, ways: int) -> "InnerLoop":
        """The same loop for tasks of ``ways`` classes (a prototype head takes any number)."""
        return replace(self, ways=ways)

    def weights_only(self) -> "InnerLoop":
        """The same loop with the architecture held fixed (the ``--no-arch-adapt`` ablation, a child net)."""
        return replace(self, lr_alpha=0.0)

    @property
    def adapts_arch(self) -> bool:
        return self.lr_alpha > 0

    def temperature_at(self, step: int) -> float:
        """Step ``step`` of ``steps`` (``steps``: the query): geometric from ``temperature`` to the final one."""
        end = self.temperature if self.final_temperature is None else self.final_temperature
        return self.temperature * (end / self.temperature) ** (step / self.steps) if self.steps else end

    def adapt(self, model, params: Params, x, y, second_order: bool = False, trajectory: bool = False):
        """Adapt ``params`` to one task's support set ``(x, y)``.

        Returns the adapted params, or ``(params, path)`` with ``trajectory``: ``path[k]`` stacks
        ``params[k]`` before the first and after every step on a leading dim (e.g. to score the query set
        after each step, showing accuracy against adaptation steps).
        """
        g = grad(lambda p, xb, yb: loss_fn(model, p, xb, yb, self.amp))
        if self.head == "proto":
            with executing(model, temperature=self.temperature_at(0)):
                params = prototype_head(model, params, x, y, self.ways, self.amp)
        path = [params] if trajectory else None
        if self.variant == "alternating":
            (xw, yw), (xa, ya) = _halves(x, y, self.ways)  # ways is static: y.max() cannot be read under vmap
        for step in range(self.steps):
            with executing(model, temperature=self.temperature_at(step)):
                if self.variant == "joint":
                    params = _sgd(params, g(params, x, y), self.lr, self.lr_alpha, second_order)
                else:
                    params = _sgd(params, g(params, xw, yw), self.lr, 0.0, second_order)
                    params = _sgd(params, g(params, xa, ya), 0.0, self.lr_alpha, second_order)
            if trajectory:
                path.append(params)
        return (params, {k: torch.stack([p[k] for p in path]) for k in params}) if trajectory else params

    def logits(self, model, params: Params, x) -> torch.Tensor:
        """The adapted network's output on ``x`` (the query), at the final temperature."""
        with executing(model, temperature=self.temperature_at(self.steps)):
            return forward(model, params, x, self.amp)
