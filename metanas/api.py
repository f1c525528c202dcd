"""The Python API a researcher scripts against (the CLI commands are thin layers over it).

    import metanas
    cfg = metanas.load_config("configs/smoke.yaml", ["meta.iterations=20"])
    result = metanas.train(cfg)                          # meta-train: test accuracy, run id, checkpoint
    warm = metanas.load(result.run_id, output_dir=cfg.run.output_dir)   # or a path, or "models:/NAME/1"
    task = metanas.adapt(warm, support_x, support_y)     # the task's own architecture and weights
    task.arch, task.predict(query_x)
    family, ev = metanas.evaluate(warm, "omniglot-5way", tasks=100)     # many test tasks: ev.mean, ev.ci95
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# a warm start on many tasks of a family (performance estimation) is metanas.estimation.warm's; the API exposes it
from metanas.estimation.warm import (  # noqa: F401
    adapt_domain, architectures, evaluate, fit_set_encoder, retest, select_adaptation,
)
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import HEAD, InnerLoop, Params
from metanas.meta.warm_start import WarmStart


def load(ref: str | None = None, output_dir: str = "runs", *, device=None) -> WarmStart:
    """A warm start from a checkpoint path, an MLflow run id, a registered model (``models:/NAME/VERSION``),
    or ``None`` (the newest checkpoint under ``output_dir``); on ``device`` where given (else the CPU)."""
    if ref is not None and str(ref).startswith("models:/"):
        from metanas.track.model_registry import fetch_warm_start

        ref = fetch_warm_start(str(ref), output_dir)
    warm = WarmStart.load(ref, output_dir)
    return warm if device is None else warm.to(device)


@dataclass
class Adapted:
    """A warm start adapted to one task: its architecture, its parameters, and a predictor."""

    warm: WarmStart
    params: Params
    inner: InnerLoop
    arch: Any

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.inner.logits(self.warm.model, self.params, x.to(next(iter(self.params.values())).device))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices (0..ways-1, in the order of the support labels) for images ``x [N, C, H, W]``."""
        return self.logits(x).argmax(-1)

    def child(self) -> torch.nn.Module:
        """The discrete child net of :attr:`arch` with the adapted weights (a fixed architecture: itself)."""
        if not self.warm.is_supernet:
            ways = len(self.params[HEAD[1]])  # a prototype head has the task's ways
            net = self.warm.space.child(self.arch, ways, self.warm.image.channels).to(self.warm.device)
            net.load_state_dict(self.params)
            return net
        return self.warm.child(self.arch, self.params)


def adapt(warm: WarmStart, support_x: torch.Tensor, support_y: torch.Tensor, *,
          adaptation: Adaptation | None = None) -> Adapted:
    """Adapt ``(w, alpha)`` to one task's support set (``support_y``: labels 0..ways-1, class-major for
    ``inner.variant=alternating``), as ``adaptation`` says (default: the warm start's own; e.g.
    ``warm.adaptation.replace(lr_alpha=0)`` keeps the architecture). A warm start with a prototype head
    (``inner.head=proto``) takes a support set of any number of ways."""
    inner = warm.inner_loop(adaptation, ways=int(support_y.max()) + 1)
    device = warm.device
    params = inner.adapt(warm.model, warm.params, support_x.to(device), support_y.to(device))
    params = {k: v.detach() for k, v in params.items()}
    return Adapted(warm, params, inner, warm.derive(params))

