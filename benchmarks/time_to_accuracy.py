"""Held-out accuracy against wall-clock: the default metanas configuration and the conv4 MAML baseline.

    python benchmarks/time_to_accuracy.py --budget 1800 --test-tasks 600 meta.eval_every=50
    python benchmarks/time_to_accuracy.py --from-csv runs/baselines.csv   # plot runs baselines.py made

Both are meta-trained for the same budget by the same code (or, with ``--from-csv``, the metanas and
conv4 runs of a ``benchmarks/baselines.py`` table are read back); validation accuracy is read back from
MLflow with its timestamps and plotted against seconds since the run started (PNG next to --out, also
logged to each MLflow run), and the final held-out test accuracy is printed for both.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from baselines import run_methods

from metanas.config import load_config
from metanas.track.plots import subplots
from metanas.core.resources import add_config_arg
from metanas.track.runs import Tracker, client_for

COMPARED = ["metanas", "conv4"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=1800)
    p.add_argument("--test-tasks", type=int, default=600)
    p.add_argument("--from-csv", help="a baselines.py CSV: plot its metanas and conv4 runs instead of training")
    p.add_argument("--out", default="runs/time_to_accuracy.png")
    add_config_arg(p, "the defaults, under each method's own config")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args()
    if args.from_csv:
        names = COMPARED
        with open(args.from_csv) as f:
            rows = [(r["method"], float(r["accuracy"]), float(r["ci95"]), int(r["iterations"]), r["run_id"])
                    for r in csv.DictReader(f) if r["method"] in names]
        if len(rows) != len(names):
            raise SystemExit(f"{args.from_csv} lacks a row for each of {names}")
    else:
        rows = [(name, test.mean, test.ci95, it, run_id)
                for name, test, it, _, run_id, *_ in run_methods(COMPARED, args.budget, args.test_tasks, args.overrides,
                                                                       configs=args.config)]
    cfg = load_config(args.config, args.overrides)
    client = client_for(cfg)
    fig, ax = subplots(figsize=(6, 4))
    for name, mean, ci95, iterations, run_id in rows:
        start = client.get_run(run_id).info.start_time
        hist = sorted(client.get_metric_history(run_id, "val/accuracy"), key=lambda m: m.timestamp)
        ax.plot([(m.timestamp - start) / 1000 for m in hist], [100 * m.value for m in hist], marker="o",
                label=f"{name}: test {100 * mean:.1f} ± {100 * ci95:.1f}%")
        print(f"{name}: {iterations} iterations, test {100 * mean:.2f} ± {100 * ci95:.2f}%")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("time to accuracy")
    ax.legend(fontsize=7)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    for *_, run_id in rows:
        tracker = Tracker(cfg, "benchmark", run_id=run_id)  # reopens the finished run to attach the plot
        tracker.log_figure(fig, "plots/time_to_accuracy.png")
        tracker.end()
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
