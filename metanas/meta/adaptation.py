"""How a warm start adapts to a new task: one frozen value, with one owner.

An :class:`Adaptation` is written to the checkpoint (by meta-training's choice on validation tasks, by
``metanas select-adaptation``, by ``metanas adapt-domain``), carried by the :class:`~metanas.meta.warm_start.WarmStart`
loaded from it, and read by :meth:`metanas.meta.inner.InnerLoop.for_adaptation`. A caller that wants another
setting (``--steps``, ``--lr-alpha``) takes :meth:`Adaptation.replace`, which validates the new value; nothing
writes the setting into a config. An alpha step of 0 keeps the warm start's architecture: there is no separate
switch for it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from metanas.core.errors import MetanasError


@dataclass(frozen=True)
class Adaptation:
    """``steps`` SGD steps on the support set, with ``lr_alpha`` as alpha's step (0: the architecture is fixed)."""

    steps: int
    lr_alpha: float

    def __post_init__(self):
        for name, value in (("steps", self.steps), ("lr_alpha", self.lr_alpha)):
            what = f"{name} (--{name.replace('_', '-')}) {value!r}"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MetanasError(f"{what}: must be a number")
            if value < 0:
                raise MetanasError(f"{what}: must be >= 0")
        if self.steps != int(self.steps):
            raise MetanasError(f"adaptation steps (--steps) {self.steps!r}: must be a whole number")
        object.__setattr__(self, "steps", int(self.steps))
        object.__setattr__(self, "lr_alpha", float(self.lr_alpha))

    @classmethod
    def from_config(cls, cfg) -> "Adaptation":
        """A config's adaptation: ``inner.eval_steps`` and ``inner.eval_lr_alpha`` where set, else the
        meta-training inner loop's ``inner.steps`` and ``inner.lr_alpha``."""
        i = cfg.inner
        return cls(steps=i.steps if i.eval_steps is None else i.eval_steps,
                   lr_alpha=i.lr_alpha if i.eval_lr_alpha is None else i.eval_lr_alpha)

    @classmethod
    def from_dict(cls, d: dict) -> "Adaptation":
        """From a checkpoint's ``adaptation`` entry (extra keys, such as the validation score it was chosen with,
        are ignored)."""
        return cls(steps=d["steps"], lr_alpha=d["lr_alpha"])

    def replace(self, *, steps: int | None = None, lr_alpha: float | None = None) -> "Adaptation":
        """This adaptation with ``steps`` and/or ``lr_alpha`` changed (``None``: kept), validated."""
        changes = {k: v for k, v in (("steps", steps), ("lr_alpha", lr_alpha)) if v is not None}
        return dataclasses.replace(self, **changes)

    @property
    def adapts_arch(self) -> bool:
        return self.lr_alpha > 0

    def as_dict(self) -> dict:
        return {"steps": self.steps, "lr_alpha": self.lr_alpha}

    def __str__(self) -> str:
        return f"{self.steps} steps, alpha step {self.lr_alpha:g}"
