"""Pictures of what was learned (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402



def plot_alphas(params: dict, ops: list[str]):
    """Heatmap of softmax(alpha) per edge x op, normal and reduction cell side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.9 * len(ops) * 2, 1.5 + 0.35 * params["alpha_normal"].shape[0]))
    for ax, name in zip(axes, ("alpha_normal", "alpha_reduce")):
        w = torch.softmax(params[name].detach().float().cpu(), -1).numpy()
        im = ax.imshow(w, cmap="viridis", vmin=0, aspect="auto")
        ax.set_xticks(range(len(ops)), ops, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(w.shape[0]), [f"edge {e}" for e in range(w.shape[0])], fontsize=8)
        ax.set_title(f"softmax({name})")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
