"""Baselines run by the same code, on the same held-out tasks, with the same seeds and time budget.

    python benchmarks/baselines.py --budget 600 --test-tasks 600 [--methods metanas,conv4,...] [--config F ...] \
        [key=value ...]

Each method is meta-trained by ``metanas.train`` for the same wall-clock budget (``meta.time_budget``,
data loading and validation included), then scored on the same ``--test-tasks`` held-out tasks (the
test generator is seeded by ``run.seed``); every row's paired difference to conv4 on those tasks is
printed with its 95% CI. ``--config`` (repeatable) and the overrides apply to every method, under its own
config (``--config omniglot``: the Omniglot-only experiment). Prints a markdown table and writes it (and a
CSV) next to ``--out``. Methods (``--methods``, comma-separated, in this order):

* ``metanas``: the default config (``python -m metanas.meta_train``), architecture adapted per task;
* ``no-arch-adapt``: the same warm start, alpha held at the warm start's; both arms adapted by
  ``metanas.evaluate`` on the same tasks (the family's queries per class), and their paired difference
  printed with its 95% CI;
* ``conv4``: MAML's conv4 (``configs/baseline-conv4.yaml``: the chain space's conv4 architecture);
* ``searched``: the best child that ``metanas search`` (evolution, ``--search-budget`` evaluations on
  validation tasks) finds on the metanas warm start, meta-trained from scratch for the same budget
  (the search's own time is not in that budget; it is printed);
* ``random``: a random child of the default space (drawn with ``run.seed``), meta-trained from scratch;
* ``frozen-alpha``: the supernet with its initial (near-uniform) alpha frozen (weights only).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from metanas import api
from metanas.config import load_config
from metanas.estimation.seeds import TEST_SEED
from metanas.estimation.stats import paired_difference
from metanas.core.resources import add_config_arg
from metanas.core.tables import csv_text, markdown, pct
from metanas.training.loop import train
from metanas.meta.warm_start import WarmStart

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"metanas": None, "conv4": "configs/baseline-conv4.yaml", "random": "configs/baseline-random-genotype.yaml",
           "frozen-alpha": "configs/baseline-frozen-alpha.yaml"}
METHODS = ("metanas", "no-arch-adapt", "conv4", "searched", "random", "frozen-alpha")


def _train(name, config, common, extra=(), configs=()):
    cfg = load_config([*configs, *([ROOT / config] if config else [])], [*common, *extra])
    result = train(cfg)
    warm = WarmStart.load(result.checkpoint)
    print(f"{name}: {result.test.summary()} after {warm.iteration} iterations ({result.describe})", flush=True)
    return cfg, result, warm


def _search(warm, budget: float, seed: int) -> Path:
    """The best child of ``warm``'s space by regularized evolution on validation tasks: a genotype file."""
    from metanas.search.driver import run_strategies
    from metanas.data import get_tasksets, load_family

    cfg = warm.config
    sets = get_tasksets(load_family(warm.family), cfg.data.root, queries=cfg.task.queries, warm_format=warm.image)
    t0 = time.perf_counter()
    top = run_strategies(["evolution"], warm, sets, budget, val_tasks=20, test_tasks=2, steps=None, seed=seed)[0]
    print(f"search: {warm.space.describe(top.best.genotype)} ({100 * top.best.score:.1f}% validation, "
          f"{time.perf_counter() - t0:.0f} s, not counted in the budget)", flush=True)
    path = Path(tempfile.mkdtemp()) / "searched.json"
    path.write_text(json.dumps(warm.space.dump(top.best.genotype)))
    return path


def _reuse(path: str, test_tasks: int):
    """An earlier metanas row's warm start (a checkpoint), re-tested as meta-training tests (its task.queries,
    the tasks seeded by run.seed), so its row and paired differences are those of the run that made it."""
    warm = api.load(path)
    cfg = warm.config
    ev = api.retest(warm, test_tasks)
    arch = warm.space.describe(warm.derive(warm.params))
    print(f"metanas (reused {path}): {ev.summary()} after {warm.iteration} iterations ({arch})", flush=True)
    return cfg, SimpleNamespace(test=ev, run_id=warm.run_id, describe=arch), warm


def run_methods(methods, budget: float, test_tasks: int, overrides: list[str], search_budget: float = 50,
                warm: str | None = None, configs: list[str] = ()):
    """Rows of (name, test Evaluation, iterations, seconds, run id, architecture, paired gain of adapting the
    architecture (mean, ci) or None, paired difference to conv4 (mean, ci) or None). ``warm``: reuse this
    metanas warm start (trained for the same budget earlier) instead of training one. ``configs``: merged under
    every method's own config."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}: choose from {', '.join(METHODS)}")
    common = [f"meta.time_budget={budget}", "meta.iterations=1000000", f"meta.test_tasks={test_tasks}",
              "run.progress=false", *overrides]
    rows, base = [], (_reuse(warm, test_tasks) if warm else None)
    for name in (m for m in METHODS if m in methods):
        t0 = time.perf_counter()
        if name == "no-arch-adapt":
            if base is None:
                base = _train("metanas", None, common, configs=configs)
            cfg, result, warm = base
            # Both arms through api.evaluate: the same tasks (the family's queries; meta-training's own test
            # samples task.queries per class, so its query sets differ and cannot be paired with these).
            seed = cfg.run.seed + TEST_SEED
            _, adapted = api.evaluate(warm, cfg.task.family, test_tasks, seed, adapt_arch=True)
            _, ev = api.evaluate(warm, cfg.task.family, test_tasks, seed, adapt_arch=False)
            gain = paired_difference(adapted, ev)
            print(f"{name}: {ev.summary()}, adapted {adapted.summary()} on the same tasks; paired gain of adapting "
                  f"the architecture {100 * gain[0]:+.2f} ± {100 * gain[1]:.2f} points", flush=True)
            rows.append((name, ev, warm.iteration, 0.0, result.run_id, result.describe, gain))
            continue
        if name == "searched":
            if base is None:
                base = _train("metanas", None, common, configs=configs)
            cfg, result, warm = _train(name, None, common, [f"search.genotype={_search(base[2], search_budget, 0)}"],
                                       configs=configs)
        elif name == "metanas" and base is not None:
            cfg, result, warm = base
        else:
            cfg, result, warm = _train(name, CONFIGS[name], common, configs=configs)
            if name == "metanas":
                base = (cfg, result, warm)
        rows.append((name, result.test, warm.iteration, time.perf_counter() - t0, result.run_id, result.describe, None))
    # Every meta-training run tests on the same seeded tasks (run.seed, task.queries): rows pair with conv4's per task.
    conv4 = next((ev for name, ev, *_ in rows if name == "conv4"), None)
    return [(*row, paired_difference(row[1], conv4) if conv4 is not None and row[0] not in ("conv4", "no-arch-adapt")
             else None) for row in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600, help="meta-training seconds per method")
    p.add_argument("--test-tasks", type=int, default=600)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--search-budget", type=float, default=50, help="evaluations of the search for 'searched'")
    p.add_argument("--out", default="runs/baselines.md")
    p.add_argument("--warm", metavar="CHECKPOINT", help="reuse this metanas warm start (a checkpoint meta-trained for "
                   "the same budget) for the metanas, no-arch-adapt and searched rows instead of training one")
    add_config_arg(p, "the defaults, under each method's own config")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args()
    rows = run_methods(args.methods.split(","), args.budget, args.test_tasks, args.overrides, args.search_budget,
                       args.warm, args.config)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    points = lambda d: f"{100 * d[0]:+.2f} ± {100 * d[1]:.2f}" if d else "-"
    table = markdown(["method", f"held-out accuracy (95% CI, {args.test_tasks} tasks)",
                      f"meta-iterations in {args.budget:.0f} s", "paired gain of arch adaptation",
                      "paired difference to conv4", "architecture", "run id"],
                     [[n, pct(e.mean, e.ci95), it, points(g), points(v), a, rid[:8]]
                      for n, e, it, _, rid, a, g, v in rows])
    print(table)
    out.write_text(table + "\n")
    out.with_suffix(".csv").write_text(csv_text(
        ["method", "accuracy", "ci95", "iterations", "wall_seconds", "run_id", "architecture", "paired_gain",
         "paired_gain_ci95", "paired_vs_conv4", "paired_vs_conv4_ci95"],
        [[n, e.mean, e.ci95, it, round(s, 1), rid, a, *(g or ("", "")), *(v or ("", ""))]
         for n, e, it, s, rid, a, g, v in rows]))


if __name__ == "__main__":
    main()
