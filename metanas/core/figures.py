"""Headless figures (matplotlib, Agg): what every drawing in metanas is made with, the spaces' included.

Figures are built as ``Figure`` + Agg canvas, never through pyplot: importing this module does not switch
matplotlib's global backend (an application's interactive backend stays as it was), and pyplot keeps no
reference to a figure made here. Callers log a figure (``Tracker.log_figure``) or :func:`save` it, then
:func:`close` it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


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


def op_colors(ops: list[str]) -> dict[str, tuple]:
    """One colour per op, the same for an op across cells and figures (tab10, in the order of ``ops``)."""
    cmap = matplotlib.colormaps["tab10"]
    return {op: cmap(i % 10) for i, op in enumerate(ops)}


def tex(name: str) -> str:
    """A state name as TeX (``c_{k-1}`` -> ``$c_{k-1}$``), anything else as it is."""
    return f"${name}$" if name.startswith("c_") else name
