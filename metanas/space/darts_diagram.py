"""Drawings of DARTS genotypes: each cell as a graph, laid out left to right like the DARTS paper's figures,
drawn with matplotlib alone (no system graphviz). :meth:`metanas.space.darts.DartsSpace.draw` draws with it."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from metanas.core.figures import op_colors, subplots, tex

TITLES = (("normal", "normal cell"), ("reduce", "reduction cell"))
# Node colours of the DARTS paper's graphviz figures: inputs green, intermediate nodes blue, output yellow.
COLORS = {"input": "#b4eeb4", "node": "#add8e6", "output": "#eee8aa"}


def state_name(state: int) -> str:
    """Input state of a genotype pair: 0, 1 = the two previous cells, 2 + i = node i."""
    return ("c_{k-2}", "c_{k-1}")[state] if state < 2 else str(state - 2)


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


def draw_cell(cell: list[tuple[str, int]], concat: list[int], ax, title: str = "", ops: list[str] | None = None):
    """Draw one cell (a genotype's ``normal`` or ``reduce`` list of ``(op, input_state)``) on ``ax``.

    Edges carry their op as a label along the edge and are coloured by op (same colour = same op
    across cells and figures when ``ops`` is given); dashed grey edges concatenate into the cell output.
    """
    nodes = len(concat)
    k = max(1, len(cell) // nodes)
    pos = _cell_positions(nodes)
    colors = op_colors(ops or sorted({op for op, _ in cell}))
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
        ax.text(x, y, tex(name), ha="center", va="center", fontsize=10, zorder=4,
                bbox=dict(boxstyle="circle,pad=0.3" if kind == "node" else "round,pad=0.35", fc=COLORS[kind],
                          ec="0.3"))
    ax.set_xlim(-0.5, DX * (nodes + 1) + 0.5)
    ax.set_ylim(-1.75, 1.75)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)


def draw_genotype(genotype, title: str | None = None, ops: list[str] | None = None):
    """The normal and the reduction cell of ``genotype``, side by side."""
    nodes = len(genotype.normal_concat)
    fig, axes = subplots(1, 2, figsize=(2 * (DX * (nodes + 1) + 1.2), 4.0))
    for ax, (field, label) in zip(axes, TITLES):
        draw_cell(getattr(genotype, field), getattr(genotype, f"{field}_concat"), ax, label, ops)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
