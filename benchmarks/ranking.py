"""How well the search estimator ranks children: weight-sharing scores against stand-alone meta-training.

    python benchmarks/ranking.py CHECKPOINT [--children 12] [--iterations 300] [--val-tasks 40] \
        [--test-tasks 100] [--search-budget 50] [--seed 0] [--output-dir runs] [--csv FILE] [key=value ...]

Children of the warm start's space: ``--children`` drawn uniformly at random (seeded by ``--seed``), the child
``metanas search`` picks (regularized evolution, ``--search-budget`` evaluations) and the warm start's argmax child.
Each gets

* its **weight-sharing score**: the child cut out of the supernet, adapted on ``--val-tasks`` validation tasks
  (what ``metanas search`` ranks candidates by; the same tasks for every child);
* its **stand-alone accuracy**: the child meta-trained from scratch by ``metanas.train`` with the warm start's
  own config for ``--iterations`` meta-iterations (a fixed count: reproducible at any machine speed;
  ``key=value`` overrides change it, e.g. ``meta.time_budget=60``), tested on ``--test-tasks`` held-out tasks
  (seeded by ``run.seed``: the same tasks for every child).

Prints one row per child, the Kendall tau and the Spearman rho between the two (scipy, with p-values), and
the searched child against the random children, paired: per test task, its accuracy minus the mean of the
random children's, with a Student's t 95% CI.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from metanas import api
from metanas.config import load_config, to_yaml
from metanas.estimation.stats import mean_ci95
from metanas.search.driver import run_strategies, scorers
from metanas.core.tables import csv_text, markdown, pct
from metanas.training.loop import tasksets, train


def children(warm, n: int, seed: int, search_budget: float, sets, val_tasks: int) -> list[tuple[str, object]]:
    """``(kind, architecture)``: ``n`` distinct random children, the searched one and the argmax one."""
    encoding, rng = warm.space.encoding(), random.Random(seed)
    drawn: dict[str, object] = {}
    while len(drawn) < min(n, encoding.size):
        arch = encoding.decode(encoding.sample(rng))
        drawn.setdefault(json.dumps(warm.space.dump(arch)), arch)
    found = run_strategies(["evolution"], warm, sets, search_budget, val_tasks, 2, None, seed)[0].best.genotype
    return [*(("random", a) for a in drawn.values()), ("searched", found), ("argmax", warm.derive())]


def stand_alone(warm, arch, config: Path, name: str, overrides: list[str]):
    """``arch`` meta-trained from scratch with ``config`` (the warm start's): the test Evaluation and iterations."""
    genotype = config.parent / f"{name}.json"
    genotype.write_text(json.dumps(warm.space.dump(arch)))
    result = train(load_config(config, [f"search.genotype={genotype}", *overrides]))
    return result.test, result.steps


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a supernet warm start: checkpoint path or run id")
    p.add_argument("--children", type=int, default=12, help="random children (the searched and argmax ones are added)")
    p.add_argument("--iterations", type=int, default=300, help="stand-alone meta-iterations per child")
    p.add_argument("--val-tasks", type=int, default=40, help="validation tasks of the weight-sharing score")
    p.add_argument("--test-tasks", type=int, default=100, help="test tasks of the stand-alone accuracy")
    p.add_argument("--search-budget", type=float, default=50, help="evaluations of the search's evolution")
    p.add_argument("--seed", type=int, default=0, help="seed of the random children and the search")
    p.add_argument("--output-dir", default="runs", help="where the stand-alone runs are tracked")
    p.add_argument("--csv", help="also write the rows as CSV here")
    p.add_argument("overrides", nargs="*", help="key=value for the stand-alone meta-training")
    args = p.parse_intermixed_args(argv)  # key=value overrides may follow the options
    from scipy.stats import kendalltau, spearmanr

    warm = api.load(args.checkpoint, args.output_dir)
    if not warm.is_supernet:
        raise SystemExit("ranking.py: give a supernet warm start (this checkpoint is a fixed architecture)")
    sets = tasksets(warm.config, warm.image)
    t0 = time.perf_counter()
    kids = children(warm, args.children, args.seed, args.search_budget, sets, args.val_tasks)
    shared, _ = scorers(warm, sets, args.val_tasks, 2, None, args.seed)
    common = [f"meta.iterations={args.iterations}", f"meta.eval_every={args.iterations}",
              f"meta.test_tasks={args.test_tasks}", f"run.output_dir={args.output_dir}", "run.progress=false",
              *args.overrides]
    rows, config = [], Path(tempfile.mkdtemp(prefix="ranking-")) / "config.yaml"
    config.write_text(to_yaml(warm.config))
    for i, (kind, arch) in enumerate(kids):
        score = shared.evaluate(arch)
        test, steps = stand_alone(warm, arch, config, f"child{i}", common)
        rows.append((kind, arch, score, test, steps))
        print(f"{i:2d} {kind:8s} weight sharing {100 * score.mean:5.1f}%  stand-alone {test.summary()} "
              f"({steps} iterations)  {warm.space.describe(arch)}", flush=True)
    ws = [r[2].mean for r in rows]
    alone = [r[3].mean for r in rows]
    tau, p_tau = kendalltau(ws, alone)
    rho, p_rho = spearmanr(ws, alone)
    rank = lambda i: 1 + sum(a > alone[i] for a in alone)
    print(markdown(["#", "child", "weight-sharing score", f"stand-alone accuracy ({args.test_tasks} tasks)",
                    "stand-alone rank", "architecture"],
                   [[i, kind, f"{100 * score.mean:.1f}%", pct(test.mean, test.ci95), rank(i), warm.space.describe(arch)]
                    for i, (kind, arch, score, test, _) in enumerate(rows)]))
    print(f"{len(rows)} children: Kendall tau {tau:+.3f} (p = {p_tau:.3f}), Spearman rho {rho:+.3f} (p = {p_rho:.3f})")
    randoms = torch.stack([r[3].accuracies for r in rows if r[0] == "random"]).mean(0)
    for kind in ("searched", "argmax"):
        i = next(j for j, r in enumerate(rows) if r[0] == kind)
        mean, ci = mean_ci95(rows[i][3].accuracies - randoms)
        print(f"{kind} child minus the mean random child, paired over {args.test_tasks} tasks: "
              f"{100 * mean:+.2f} ± {100 * ci:.2f} points (stand-alone rank {rank(i)} of {len(rows)})")
    print(f"{time.perf_counter() - t0:.0f} s")
    if args.csv:
        Path(args.csv).write_text(csv_text(
            ["child", "weight_sharing", "stand_alone", "stand_alone_ci95", "iterations", "architecture"],
            [[kind, score.mean, test.mean, test.ci95, steps, json.dumps(warm.space.dump(arch))]
             for kind, arch, score, test, steps in rows]))


if __name__ == "__main__":
    sys.exit(main())
