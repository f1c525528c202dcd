"""Pictures of what was learned (matplotlib, headless): every function returns a Figure.

* :func:`plot_genotype` / :func:`plot_cell`: the cells of a genotype as a graph, drawn with matplotlib
  alone (no system graphviz), laid out left to right like the DARTS paper's figures.
* :func:`plot_alphas`, :func:`plot_alpha_evolution`, :func:`plot_alpha_entropy`: the architecture
  weights, once and over meta-training.
* :func:`plot_learning_curves`, :func:`plot_adaptation_curve`: accuracy and loss against meta-iteration,
  query accuracy against adaptation step.
* :func:`plot_op_wins`: how often each choice wins each edge or layer across adapted tasks, per task family.
* :func:`plot_chain`: a chain-space architecture.

Callers log the figure (``Tracker.log_figure``) or :func:`save` it, then :func:`close` it.

Figures are built as ``Figure`` + Agg canvas, never through pyplot: importing this module does not switch
matplotlib's global backend (an application's interactive backend stays as it was), and pyplot keeps no
reference to a figure made here.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


CELLS = (("normal", "normal cell"), ("reduce", "reduction cell"))
# Node colours of the DARTS paper's graphviz figures: inputs green, intermediate nodes blue, output yellow.
COLORS = {"input": "#b4eeb4", "node": "#add8e6", "output": "#eee8aa"}


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    close(fig)
    return path


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, layout=None, **kwargs):
    """``pyplot.subplots`` without pyplot: a headless Agg figure and its axes (``Figure.subplots`` keywords)."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def close(fig) -> None:
    """Free a figure's artists now; one made with pyplot elsewhere is also released from pyplot's registry."""
    pyplot = sys.modules.get("matplotlib.pyplot")  # never imported here: that would pick a backend
    if pyplot is not None:
        pyplot.close(fig)
    fig.clear()


def state_name(state: int) -> str:
    """Input state of a genotype pair: 0, 1 = the two previous cells, 2 + i = node i."""
    return ("c_{k-2}", "c_{k-1}")[state] if state < 2 else str(state - 2)


def _tex(name: str) -> str:
    return f"${name}$" if name.startswith("c_") else name


def _op_colors(ops: list[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab10"]
    return {op: cmap(i % 10) for i, op in enumerate(ops)}


# -- cell diagrams ----------------------------------------------------------------------------------------------

DX = 1.7  # horizontal distance between node columns, in data units (= inches at the figure's scale)


def _cell_positions(nodes: int) -> dict[str, tuple[float, float]]:
    # Intermediate nodes zig-zag so that a straight edge never runs through a third node.
    pos = {"c_{k-2}": (0.0, 1.25), "c_{k-1}": (0.0, -1.25), "c_{k}": (DX * (nodes + 1), 0.0)}
    for i in range(nodes):
        pos[str(i)] = (DX * (i + 1), 0.0 if nodes == 1 else 0.6 if i % 2 == 0 else -0.6)
    return pos


def _bezier(p0, p1, rad: float, t: np.ndarray) -> np.ndarray:
    """Points of matplotlib's ``arc3,rad=rad`` quadratic Bezier (control point = chord midpoint + rad * (dy, -dx))."""
    p0, p1 = np.asarray(p0), np.asarray(p1)
    d = p1 - p0
    c = (p0 + p1) / 2 + rad * np.array([d[1], -d[0]])
    t = t[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t ** 2 * p1


def _bend(p0, p1, others: list) -> float:
    """The curvature that keeps an edge farthest from the nodes it does not connect (straight if clear)."""
    t = np.linspace(0.1, 0.9, 17)
    best = None
    for rad in (0.0, 0.3, -0.3, 0.5, -0.5):
        pts = _bezier(p0, p1, rad, t)
        clearance = min((np.linalg.norm(pts - np.asarray(o), axis=1).min() for o in others), default=9.0)
        if clearance > 0.45:  # clear of every node circle and its label: take the straightest such edge
            return rad
        if best is None or clearance > best[0]:
            best = (clearance, rad)
    return best[1]


def _label_spot(p0, p1, rad: float, taken: list) -> tuple[float, float, float]:
    """Where on the edge its op label goes: the spot farthest from nodes and labels already placed.

    Two edges that cross mid-way (c_{k-2} -> 1 and c_{k-1} -> 0) would otherwise stack their labels.
    """
    best = None
    for t in (0.5, 0.38, 0.62, 0.3, 0.7):
        (x, y), = _bezier(p0, p1, rad, np.array([t]))
        room = min((math.dist((x, y), q) for q in taken), default=9.0)
        if best is None or room > best[0] + 1e-9:
            best = (room, t, x, y)
        if room > 0.75:
            break
    _, t, x, y = best
    c = (np.asarray(p0) + np.asarray(p1)) / 2 + rad * np.array([p1[1] - p0[1], -(p1[0] - p0[0])])
    dx, dy = 2 * (1 - t) * (c - np.asarray(p0)) + 2 * t * (np.asarray(p1) - c)  # the curve's tangent at t
    angle = math.degrees(math.atan2(dy, dx))
    taken.append((x, y))
    return x, y, angle


def plot_cell(cell: list[tuple[str, int]], concat: list[int], ax, title: str = "", ops: list[str] | None = None):
    """Draw one cell (a genotype's ``normal`` or ``reduce`` list of ``(op, input_state)``) on ``ax``.

    Edges carry their op as a label along the edge and are coloured by op (same colour = same op
    across cells and figures when ``ops`` is given); dashed grey edges concatenate into the cell output.
    """
    nodes = len(concat)
    k = max(1, len(cell) // nodes)
    pos = _cell_positions(nodes)
    colors = _op_colors(ops or sorted({op for op, _ in cell}))
    seen: Counter = Counter()
    taken = list(pos.values())
    for n, (op, state) in enumerate(cell):
        src, dst = state_name(state), str(n // k)
        p0, p1 = pos[src], pos[dst]
        rad = _bend(p0, p1, [p for name, p in pos.items() if name not in (src, dst)])
        rad += 0.35 * seen[(src, dst)] * (-1) ** seen[(src, dst)]  # a repeated pair bends apart
        seen[(src, dst)] += 1
        color = colors.get(op, "0.3")
        ax.annotate("", xy=p1, xytext=p0, zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.6, shrinkA=15, shrinkB=15,
                                    connectionstyle=f"arc3,rad={rad}"))
        mx, my, angle = _label_spot(p0, p1, rad, taken)
        ax.text(mx, my, op.replace("_", " "), ha="center", va="center", fontsize=7.5, color=color, zorder=3,
                rotation=angle, rotation_mode="anchor", transform_rotates_text=True,
                bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.9))
    for i in concat:
        ax.annotate("", xy=pos["c_{k}"], xytext=pos[state_name(i)], zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color="0.6", lw=1.0, ls="--", shrinkA=15, shrinkB=15))
    for name, (x, y) in pos.items():
        kind = "node" if name.isdigit() else "output" if name == "c_{k}" else "input"
        ax.text(x, y, _tex(name), ha="center", va="center", fontsize=10, zorder=4,
                bbox=dict(boxstyle="circle,pad=0.3" if kind == "node" else "round,pad=0.35", fc=COLORS[kind],
                          ec="0.3"))
    ax.set_xlim(-0.5, DX * (nodes + 1) + 0.5)
    ax.set_ylim(-1.75, 1.75)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)


def plot_genotype(genotype, title: str | None = None, ops: list[str] | None = None):
    """The normal and the reduction cell of ``genotype``, side by side."""
    nodes = len(genotype.normal_concat)
    fig, axes = subplots(1, 2, figsize=(2 * (DX * (nodes + 1) + 1.2), 4.0))
    for ax, (field, label) in zip(axes, CELLS):
        plot_cell(getattr(genotype, field), getattr(genotype, f"{field}_concat"), ax, label, ops)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


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


def plot_chain(arch, ops: list[str], max_width: int, title: str | None = None):
    """A chain architecture as a row of layer boxes: op, width (and pooling), box height proportional to the width."""
    fig, ax = subplots(figsize=(1.8 + 1.7 * len(arch), 2.6))
    colors = _op_colors(ops)
    for l, (op, w, *pool) in enumerate(arch):
        h = 0.4 + 1.2 * w / max_width
        ax.add_patch(Rectangle((l * 1.7, -h / 2), 1.3, h, fc=colors[op], ec="0.3"))
        ax.text(l * 1.7 + 0.65, 0, f"{_tex(op)}\n@{w}" + "".join(f"\n{p} pool" for p in pool), ha="center",
                va="center", fontsize=8)
        if l:
            ax.annotate("", (l * 1.7, 0), (l * 1.7 - 0.4, 0), arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.set_xlim(-0.3, 1.7 * len(arch))
    ax.set_ylim(-1.0, 1.0)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# -- discrete search ---------------------------------------------------------------------------------------------

def plot_search_progress(trials_by_strategy: dict[str, list], tasks: int, title: str = "search"):
    """Best fully scored validation accuracy so far, against evaluations spent (left) and wall clock (right),
    one line per strategy; each candidate's own score as a faint dot. ``trials``: ``metanas.search_strategies.Trial``."""
    from metanas.search_strategies import best_so_far

    fig, (ax_e, ax_t) = subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for name, trials in trials_by_strategy.items():
        spent = np.array([t.spent for t in trials])
        seconds = np.array([t.seconds for t in trials])
        top = np.array(best_so_far(trials, tasks))
        line, = ax_e.step(spent, top, where="post", lw=1.8, label=name, marker="o" if len(trials) == 1 else None)
        ax_t.step(seconds, top, where="post", lw=1.8, color=line.get_color(), marker="o" if len(trials) == 1 else None)
        full = [t.tasks == tasks for t in trials]
        ax_e.scatter(spent[full], [t.score for t, f in zip(trials, full) if f], s=6, alpha=0.25,
                     color=line.get_color())
    ax_e.set_xlabel("evaluations spent (1 = one candidate on all validation tasks)")
    ax_t.set_xlabel("search wall clock (s)")
    ax_e.set_ylabel(f"best validation accuracy ({tasks} tasks)")
    for ax in (ax_e, ax_t):
        ax.grid(alpha=0.3)
    ax_e.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
