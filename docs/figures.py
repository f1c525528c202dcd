"""Draw the plots of docs/results.md from the numbers it records (docs/data/*.csv) into docs/img/*.png.

    python docs/figures.py            # every plot
    python docs/figures.py ranking    # one (the name of its PNG)

Nothing is measured here: each CSV holds figures copied from a table of results.md, with the commit that recorded
them. Matplotlib only, headless (the Agg canvas, no pyplot state).
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DOCS = Path(__file__).resolve().parent
DATA, IMG = DOCS / "data", DOCS / "img"
DPI = 100

SHORT = {
    "omniglot-5way": "Omniglot",
    "omniglot-5way-shift-train": "Omniglot source",
    "omniglot-5way-shift-val": "pixelated",
    "glyphs-5way": "glyphs",
    "fonts-5way": "fonts",
    "digits-5way": "digits",
    "omniglot-5way-shift-invert": "inverted",
    "omniglot-5way-shift-blur": "blur",
    "omniglot-5way-shift-elastic": "elastic",
    "omniglot-5way-shift-mixed": "mixed",
}
ORDER = list(SHORT)
COLORS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377"]


def rows(name: str) -> list[dict]:
    with open(DATA / f"{name}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def num(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def figure(width: float, height: float, ncols: int = 1, **kwargs):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False, **kwargs)[0]


def save(fig: Figure, name: str) -> Path:
    IMG.mkdir(exist_ok=True)
    path = IMG / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    shown = path.relative_to(DOCS.parent) if path.is_relative_to(DOCS.parent) else path
    print(f"{shown}: {path.stat().st_size // 1024} KB")
    return path


def grouped_bars(ax, series: dict[str, dict[str, tuple[float, float | None]]], families: list[str],
                 ylabel: str, rotation: float = 0) -> None:
    """One group of bars per family, one bar per series, each with its 95% CI as an error bar."""
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        xs, ys, errs = [], [], []
        for j, family in enumerate(families):
            if family in values:
                y, ci = values[family]
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(y)
                errs.append(ci or 0.0)
        ax.bar(xs, ys, width, yerr=errs if any(errs) else None, capsize=2, label=label,
               color=COLORS[i % len(COLORS)], error_kw={"elinewidth": 0.8})
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(families)), [SHORT.get(f, f) for f in families], fontsize=8, rotation=rotation,
                  ha="right" if rotation else "center", rotation_mode="anchor")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def by_series(table: list[dict], key: str, value: str = "difference", ci: str = "ci"):
    series: dict[str, dict[str, tuple[float, float | None]]] = defaultdict(dict)
    for r in table:
        series[r[key]][r["family"]] = (float(r[value]), num(r[ci]))
    return series


def families_of(series) -> list[str]:
    present = {f for values in series.values() for f in values}
    return [f for f in ORDER if f in present]


def default_vs_conv4() -> Path:
    table = rows("default_vs_conv4")
    families = [r["family"] for r in table]
    fig, (left, right) = figure(10, 3.8, ncols=2)
    diff = {"default − better conv4 (paired, 3 seeds)": {r["family"]: (float(r["difference"]), float(r["ci"]))
                                                          for r in table}}
    grouped_bars(left, diff, families, "points", rotation=35)
    left.set_title("against conv4 at the default's own wall clock", fontsize=10)
    gain = {"architecture adaptation, mean of 3 seeds": {r["family"]: (float(r["arch_gain"]), None) for r in table}}
    grouped_bars(right, gain, families, "points", rotation=35)
    for s in range(3):
        right.plot(range(len(families)), [float(r[f"arch_gain_s{s}"]) for r in table], "k.", markersize=4,
                   label="one seed (paired, 100 tasks)" if s == 0 else None)
    right.set_title("per-task architecture adaptation (w and alpha − w only)", fontsize=10)
    right.legend(fontsize=7)
    return save(fig, "default_vs_conv4")


def new_source() -> Path:
    series = by_series(rows("new_source"), "setting")
    fig, (ax,) = figure(10, 4)
    grouped_bars(ax, series, families_of(series), "default − conv4 (points, paired, 3 seeds)")
    ax.set_title("fonts left out of training: one source (Omniglot) against conv4@32, "
                 "two sources (Omniglot, glyphs) against the better conv4", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return save(fig, "new_source")


def alpha_routes() -> Path:
    series = by_series(rows("alpha_routes"), "route", value="gain")
    fig, (ax,) = figure(10, 4)
    grouped_bars(ax, series, families_of(series), "gain over w only (points, paired, 3 seeds)")
    ax.set_title("where architecture adaptation starts, fonts left out of three sources", fontsize=10)
    ax.axhline(1, color="grey", linewidth=0.6, linestyle="--")
    ax.legend(fontsize=7)
    return save(fig, "alpha_routes")


def variants() -> Path:
    table = rows("variants")
    panels = list(dict.fromkeys(r["panel"] for r in table))
    fig, axes = figure(12, 4, ncols=len(panels), sharey=True)
    titles = {"one source": "Omniglot + fonts mixture, fonts left out, 300 s",
              "two sources": "three-source mixture, fonts left out"}
    for ax, panel in zip(axes, panels):
        series = by_series([r for r in table if r["panel"] == panel], "variant")
        grouped_bars(ax, series, families_of(series), "variant − default (points, paired, 3 seeds)")
        ax.set_title(titles.get(panel, panel), fontsize=10)
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    return save(fig, "variants")


def omniglot() -> Path:
    table = rows("omniglot")
    panels = list(dict.fromkeys(r["panel"] for r in table))
    fig, axes = figure(11, 3.6, ncols=len(panels))
    for ax, panel in zip(axes, panels):
        part = [r for r in table if r["panel"] == panel]
        ys = [float(r["accuracy"]) for r in part]
        if part[0]["ci"]:
            errs = [[float(r["ci"]) for r in part]] * 2
            note = "± 95% CI, 600 tasks"
        else:
            errs = [[y - float(r["low"]) for y, r in zip(ys, part)], [float(r["high"]) - y for y, r in zip(ys, part)]]
            note = "seed range, 200 tasks"
        ax.bar(range(len(part)), ys, yerr=errs, capsize=3, color=COLORS[: len(part)])
        ax.set_xticks(range(len(part)), [r["method"].replace(" (", "\n(") for r in part], fontsize=7, rotation=20)
        for x, (y, r) in enumerate(zip(ys, part)):
            ax.text(x, min(ys) - 4, f"{r['iterations']} it.", ha="center", fontsize=7)
        ax.set_ylim(min(ys) - 5, max(ys) + 2)
        ax.set_title(f"{panel} ({note})", fontsize=9)
        ax.set_ylabel("accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    return save(fig, "omniglot")


def ranking() -> Path:
    children, seeds = rows("ranking"), rows("ranking_seeds")
    fig, (left, right) = figure(10, 3.8, ncols=2)
    marks = {"random": ("o", COLORS[0]), "searched": ("*", COLORS[1]), "argmax": ("D", COLORS[2])}
    for kind, (marker, color) in marks.items():
        part = [r for r in children if r["kind"] == kind]
        left.errorbar([float(r["weight_sharing"]) for r in part], [float(r["accuracy"]) for r in part],
                      yerr=[float(r["ci"]) for r in part], fmt=marker, color=color, capsize=2,
                      markersize=9 if marker == "*" else 5, label=f"{kind} child")
    left.set_xlabel("weight-sharing score, 40 validation tasks (%)")
    left.set_ylabel("meta-trained alone, 100 test tasks (%)")
    left.set_title(f"seed 0's 14 children: Kendall tau {seeds[0]['tau']}", fontsize=10)
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    x = range(len(seeds))
    for i, (what, label) in enumerate([("searched", "searched child"), ("argmax", "warm start's argmax child")]):
        right.bar([s - 0.2 + 0.4 * i for s in x], [float(r[f"{what}_gain"]) for r in seeds], 0.4,
                  yerr=[float(r[f"{what}_ci"]) for r in seeds], capsize=3, color=COLORS[i + 1], label=label)
    right.set_xticks(list(x), [f"seed {r['seed']}\ntau {r['tau']}" for r in seeds], fontsize=8)
    right.set_ylabel("− mean random child (points, paired)")
    right.set_title("against the mean random child, 100 test tasks", fontsize=10)
    right.legend(fontsize=7)
    right.grid(axis="y", alpha=0.3)
    return save(fig, "ranking")


def search_strategies() -> Path:
    """Best-so-far validation score against evaluations, mean over seeds, per strategy: in distribution, held out,
    and the learned strategies cold and warm-started on the held-out family (docs/data/search_curves.csv, the
    curves.csv files of metanas search --compare)."""
    import numpy as np

    curves = rows("search_curves")
    families = list(dict.fromkeys(r["family"] for r in curves))
    fig, axes = figure(13, 3.8, ncols=len(families) + 1, sharey=True)

    def mean_curve(part: list[dict], budget: int) -> np.ndarray:
        """Per evaluation 1..budget, the best so far, averaged over the seeds."""
        per_seed = []
        for seed in dict.fromkeys(r["seed"] for r in part):
            trials = [(float(r["evaluations"]), float(r["best"])) for r in part if r["seed"] == seed and r["best"]
                      not in ("", "nan")]
            per_seed.append([max([b for e, b in trials if e <= x] or [np.nan]) for x in range(1, budget + 1)])
        return 100 * np.nanmean(np.array(per_seed), axis=0)

    budget = int(max(float(r["evaluations"]) for r in curves))
    x = np.arange(1, budget + 1)
    for ax, family in zip(axes, families):
        part = [r for r in curves if r["family"] == family and not r["strategy"].endswith("-warm")]
        for i, name in enumerate(dict.fromkeys(r["strategy"] for r in part)):
            ax.step(x, mean_curve([r for r in part if r["strategy"] == name], budget), where="post", lw=1.5,
                    label=name, color=(COLORS + ["#777777", "#000000", "#bbbbbb"])[i % 9],
                    ls="-" if i < 6 else "--")
        seeds = len(set(r["seed"] for r in part))
        ax.set_title(f"{SHORT.get(family, family)}: all strategies, {seeds} seeds", fontsize=10)
    held = families[-1]
    ax = axes[-1]
    for i, name in enumerate(["pnas", "bo", "nao"]):
        for suffix, ls in (("", ":"), ("-warm", "-")):
            part = [r for r in curves if r["family"] == held and r["strategy"] == name + suffix]
            if part:
                ax.step(x, mean_curve(part, budget), where="post", lw=1.6, ls=ls, color=COLORS[i],
                        label=f"{name} {'warm' if suffix else 'cold'}")
    ax.set_title(f"{SHORT.get(held, held)}: warm-started from {SHORT.get(families[0], families[0])}'s searches",
                 fontsize=10)
    for ax in axes:
        ax.set_xlabel("evaluations (candidates scored)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("best validation accuracy so far (%)")
    return save(fig, "search_strategies")


PLOTS = {f.__name__: f for f in (default_vs_conv4, new_source, alpha_routes, variants, omniglot, ranking,
                                  search_strategies)}


def main(names: list[str]) -> None:
    for name in names or PLOTS:
        PLOTS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
