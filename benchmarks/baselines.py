"""Baselines run by the same code, on the same held-out tasks, with the same seeds and time budget.

    python benchmarks/baselines.py --budget 600 --test-tasks 600 [key=value ...]

Each method is meta-trained by ``metanas.meta_train.train`` for the same wall-clock budget
(``meta.time_budget``), then scored on the same ``--test-tasks`` held-out tasks (the test generator
is seeded by ``run.seed``). Prints a markdown table and writes it (and a CSV) next to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from metanas.checkpoint import load_checkpoint, model_from_checkpoint
from metanas.config import load_config
from metanas.data import get_tasksets, load_family
from metanas.estimation import evaluate
from metanas.meta_train import TEST_SEED, eval_steps, train
from metanas.strategy import MetaLearner

ROOT = Path(__file__).resolve().parents[1]
METHODS = [  # (name, config file or None)
    ("metanas: meta-learned alpha + w, both adapted", None),
    ("supernet, frozen uniform alpha (weights only)", "configs/baseline-frozen-alpha.yaml"),
    ("random genotype (child net)", "configs/baseline-random-genotype.yaml"),
    ("conv4 MAML (fixed architecture)", "configs/baseline-conv4.yaml"),
]


def no_arch_adapt(checkpoint: Path, cfg_tasks: int):
    """The metanas warm start, adapted on the same test tasks with alpha frozen (weights only)."""
    state = load_checkpoint(checkpoint)
    model, cfg = model_from_checkpoint(state, checkpoint)
    cfg.inner.lr_alpha = 0.0
    sets = get_tasksets(load_family(cfg.task.family), cfg.data.root, cfg.task.ways, cfg.task.shots, cfg.task.queries)
    learner = MetaLearner(model, cfg, state["ways"])
    return evaluate(model, learner.params(), sets.test, cfg_tasks, learner.inner_kwargs(steps=eval_steps(cfg)),
                    torch.Generator().manual_seed(cfg.run.seed + TEST_SEED))


def run_methods(methods, budget: float, test_tasks: int, overrides: list[str], arch_ablation: bool = True):
    """Meta-train each (name, config) for ``budget`` seconds; rows of (name, test Evaluation, iterations, s, run id)."""
    common = [f"meta.time_budget={budget}", "meta.iterations=1000000", f"meta.test_tasks={test_tasks}",
              "run.progress=false", *overrides]
    rows = []
    for name, config in methods:
        cfg = load_config(ROOT / config if config else None, common)
        t0 = time.perf_counter()
        result = train(cfg)
        state = load_checkpoint(result.checkpoint)
        rows.append((name, result.test, state["iteration"], time.perf_counter() - t0, result.run_id))
        print(f"{name}: {result.test.summary()} after {state['iteration']} iterations", flush=True)
        if config is None and arch_ablation:
            ev = no_arch_adapt(result.checkpoint, test_tasks)
            rows.append(("metanas warm start, architecture not adapted", ev, state["iteration"], 0.0, result.run_id))
            print(f"{rows[-1][0]}: {ev.summary()}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600, help="meta-training seconds per method")
    p.add_argument("--test-tasks", type=int, default=600)
    p.add_argument("--out", default="runs/baselines.md")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    rows = run_methods(METHODS, args.budget, args.test_tasks, args.overrides)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"| method | held-out accuracy (95% CI, {args.test_tasks} tasks) | meta-iterations in {args.budget:.0f} s | "
             "run id |", "|---|---|---|---|"]
    lines += [f"| {n} | {100 * e.mean:.2f} ± {100 * e.ci95:.2f}% | {it} | {rid[:8]} |" for n, e, it, _, rid in rows]
    table = "\n".join(lines)
    print(table)
    out.write_text(table + "\n")
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "accuracy", "ci95", "iterations", "wall_seconds", "run_id"])
        w.writerows([(n, e.mean, e.ci95, it, round(s, 1), rid) for n, e, it, s, rid in rows])


if __name__ == "__main__":
    main()
