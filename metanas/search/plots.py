"""The search's own plot: best-so-far score against evaluations, one line per strategy."""

from __future__ import annotations

import numpy as np

from metanas.core.figures import subplots
from metanas.search.strategies import best_so_far


def plot_search_progress(trials_by_strategy: dict[str, list], tasks: int, title: str = "search"):
    """Best fully scored validation accuracy so far, against evaluations spent (left) and wall clock (right),
    one line per strategy; each candidate's own score as a faint dot. ``trials``: ``metanas.search.strategies.Trial``."""

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
