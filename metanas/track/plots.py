"""Pictures of what was learned (matplotlib, headless): every function returns a Figure.

* :func:`plot_alphas`, :func:`plot_alpha_evolution`, :func:`plot_alpha_entropy`: the architecture
  weights, once and over meta-training.
* :func:`plot_learning_curves`, :func:`plot_adaptation_curve`: accuracy and loss against meta-iteration,
  query accuracy against adaptation step.
* :func:`plot_op_wins`: how often each choice wins each edge or layer across adapted tasks, per task family.

An architecture itself is drawn by its own space (``space.draw(arch)``): nothing here looks inside one.
Callers log the figure (``Tracker.log_figure``) or :func:`save` it, then :func:`close` it. Figures are
headless (:mod:`metanas.core.figures`): importing this module does not switch matplotlib's global backend.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from metanas.core.figures import close, save, subplots  # noqa: F401  (plots.save / close / subplots, as before)


# -- architecture weights ---------------------------------------------------------------------------------------

def _weights(alpha) -> np.ndarray:
    return torch.softmax(torch.as_tensor(alpha).detach().float().cpu(), -1).numpy()


def _title(name: str) -> str:
    return {"alpha_normal": "normal cell", "alpha_reduce": "reduction cell"}.get(name, name.removeprefix("alpha_"))


def plot_alphas(params: dict, labels: dict[str, tuple[list[str], list[str]]]):
    """Heatmap of softmax(alpha) per row (edge, layer) x choice, one panel per alpha (``space.alpha_labels()``)."""
    fig, axes = subplots(1, len(labels), squeeze=False,
                             figsize=(2 + sum(0.9 * len(c) for _, c in labels.values()),
                                      1.5 + 0.35 * max(len(r) for r, _ in labels.values())))
    for ax, (name, (rows, cols)) in zip(axes[0], labels.items()):
        w = _weights(params[name])
        # Colours span the data's range: early in meta-training every weight is close to uniform, and a
        # 0..1 scale would paint one flat colour over the ranking that derivation reads.
        im = ax.imshow(w, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title(f"softmax(alpha), {_title(name)}", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def _pick(snapshots: list[dict], most: int) -> list[dict]:
    if len(snapshots) <= most:
        return snapshots
    idx = sorted({round(i * (len(snapshots) - 1) / (most - 1)) for i in range(most)})
    return [snapshots[i] for i in idx]


def plot_alpha_evolution(snapshots: list[dict], labels: dict[str, tuple[list[str], list[str]]], most: int = 6):
    """softmax(alpha) heatmaps at up to ``most`` evenly spaced snapshots (columns), one row per alpha."""
    if not snapshots:
        raise ValueError("no alpha snapshots to plot")
    shown = _pick(snapshots, most)
    width = max(len(c) for _, c in labels.values())
    height = max(len(r) for r, _ in labels.values())
    fig, axes = subplots(len(labels), len(shown), squeeze=False, layout="constrained",
                             figsize=(1.6 + 0.32 * width * len(shown), 1.4 + (0.55 + 0.3 * height) * len(labels)))
    # One colour scale over all panels, spanning the data (see plot_alphas).
    vmin = min(float(s[n].min()) for s in shown for n in labels)
    vmax = max(float(s[n].max()) for s in shown for n in labels)
    for col, snap in enumerate(shown):
        for row, (name, (rows, cols)) in enumerate(labels.items()):
            ax = axes[row, col]
            im = ax.imshow(np.asarray(snap[name]), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
            if row == 0:
                ax.set_title(f"iteration {snap['iteration']}", fontsize=9)
            ax.set_yticks(range(len(rows)), rows if col == 0 else [], fontsize=7)
            if col == 0:
                ax.set_ylabel(_title(name), fontsize=9)
            ax.set_xticks(range(len(cols)), cols, rotation=70, ha="right", fontsize=7)
    fig.colorbar(im, ax=axes, fraction=0.02, label="softmax(alpha)")
    fig.suptitle("architecture weights over meta-training (rows: edges or layers, columns: choices)", fontsize=10)
    return fig


def entropy(weights) -> float:
    """Mean over rows of the entropy (nats) of each row's choice distribution."""
    w = torch.as_tensor(weights).double().clamp_min(1e-12)
    return float(-(w * w.log()).sum(-1).mean())


def plot_alpha_entropy(snapshots: list[dict], labels: dict[str, tuple[list[str], list[str]]]):
    """Mean per-row entropy of softmax(alpha) against meta-iteration; log(#choices) = undecided (uniform)."""
    fig, ax = subplots(figsize=(5.5, 3.4))
    its = [s["iteration"] for s in snapshots]
    for name, (_, cols) in labels.items():
        line, = ax.plot(its, [entropy(s[name]) for s in snapshots], marker="o", ms=3, label=_title(name))
        ax.axhline(math.log(len(cols)), color=line.get_color(), ls="--", lw=1, label=f"uniform (log {len(cols)})")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean entropy per row (nats)")
    ax.set_title("how decided the architecture is", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# -- learning curves --------------------------------------------------------------------------------------------

def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    # Valid part only, then pad the start with the running mean so the curve starts at step 0.
    head = np.cumsum(values[:window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_learning_curves(histories: dict[str, list[tuple[int, float]]], title: str = "meta-training"):
    """Accuracy (left) and loss (right) against iteration, from ``{metric: [(step, value), ...]}``.

    Per-iteration train metrics are noisy (a few tasks each): drawn faint with a moving average on top.
    ``val/accuracy`` gets its ``val/ci95`` band when that is given.
    """
    fig, (acc_ax, loss_ax) = subplots(1, 2, figsize=(10, 3.6))
    for name, points in sorted(histories.items()):
        if not points or name.endswith("ci95"):
            continue
        ax = acc_ax if "accuracy" in name else loss_ax if "loss" in name else None
        if ax is None:
            continue
        steps, values = (np.asarray(v, dtype=float) for v in zip(*sorted(points)))
        if name.startswith("train/"):
            line, = ax.plot(steps, values, lw=0.8, alpha=0.3)
            window = max(1, len(values) // 20)
            ax.plot(steps, _smooth(values, window), color=line.get_color(), lw=1.8,
                    label=f"{name} (mean of {window})" if window > 1 else name)
        else:
            line, = ax.plot(steps, values, marker="o", ms=4, lw=1.5, label=name)
            ci = dict(histories.get(name.replace("accuracy", "ci95"), []))
            if ci and all(s in ci for s in steps):
                half = np.asarray([ci[s] for s in steps])
                ax.fill_between(steps, values - half, values + half, color=line.get_color(), alpha=0.15)
    for ax, label in ((acc_ax, "accuracy"), (loss_ax, "loss")):
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    acc_ax.set_ylim(0, 1)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_adaptation_curve(curve, title: str = "query accuracy vs adaptation step", ways: int | None = None):
    """Mean query accuracy (95% CI band over tasks) before (step 0) and after each adaptation step.

    ``curve``: [tasks, steps + 1], as ``Evaluation.curve``; ``ways`` draws the chance level.
    """
    c = torch.as_tensor(curve).double()
    mean = c.mean(0).numpy()
    half = (1.96 * c.std(0) / math.sqrt(c.shape[0])).nan_to_num(0.0).numpy() if c.shape[0] > 1 else 0 * mean
    steps = np.arange(c.shape[1])
    fig, ax = subplots(figsize=(5.5, 3.4))
    ax.plot(steps, mean, marker="o", label=f"mean over {c.shape[0]} tasks")
    ax.fill_between(steps, mean - half, mean + half, alpha=0.2, label="95% CI")
    if ways:
        ax.axhline(1 / ways, color="0.5", ls="--", lw=1, label=f"chance (1/{ways})")
    ax.set_xticks(steps)
    ax.set_xlabel("adaptation step (DARTS on w and alpha)")
    ax.set_ylabel("query accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# -- per-task genotype diversity --------------------------------------------------------------------------------

def plot_op_wins(by_family: dict[str, dict[str, torch.Tensor]], labels: dict[str, tuple[list[str], list[str]]],
                 tasks: dict[str, int] | None = None):
    """Per task family (rows) and alpha (columns): how often each choice wins each row (edge, layer) across
    adapted tasks. ``by_family[family]`` is ``space.choice_wins(archs)``; ``tasks[family]`` how many archs."""
    if not by_family:
        raise ValueError("no architectures to plot")
    width = max(len(c) for _, c in labels.values())
    height = max(len(r) for r, _ in labels.values())
    fig, axes = subplots(len(by_family), len(labels), squeeze=False, layout="constrained",
                             figsize=(2.5 + 0.75 * width * len(labels), 1.4 + (0.8 + 0.42 * height) * len(by_family)))
    for row, (family, wins) in enumerate(by_family.items()):
        for col, (name, (rows, cols)) in enumerate(labels.items()):
            ax = axes[row, col]
            w = np.asarray(wins[name])
            im = ax.imshow(w, cmap="magma_r", vmin=0, vmax=1, aspect="auto")
            for (e, o), v in np.ndenumerate(w):
                if v > 0:
                    ax.text(o, e, f"{v:.0%}", ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 else "black")
            ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
            ax.set_yticks(range(len(rows)), rows, fontsize=8)
            n = f", {tasks[family]} tasks" if tasks and family in tasks else ""
            ax.set_title(f"{family}: {_title(name)}{n}", fontsize=9)
    fig.colorbar(im, ax=axes, fraction=0.025, label="fraction of tasks choosing it")
    return fig


# -- discrete search ---------------------------------------------------------------------------------------------
