"""Adaptation latency of one task at the default configuration, and accuracy after each inner step.

    python benchmarks/adapt_latency.py --checkpoint runs/checkpoints/RUN_ID.pt --tasks 50
    python benchmarks/adapt_latency.py --tasks 5 search.channels=4        # no checkpoint: a fresh init
    python benchmarks/adapt_latency.py --checkpoint CKPT --tasks 200 --against-steps 10   # the chosen steps vs 10

One task at a time (no batching across tasks): all inner steps on weights and alpha from the support
set, plus the query prediction. Process start-up and data loading are excluded.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from metanas.config import load_config
from metanas.data import get_tasksets, load_family
from metanas.estimation.loop import evaluate
from metanas.estimation.seeds import TEST_SEED
from metanas.estimation.stats import mean_ci95
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import InnerLoop
from metanas.core.resources import add_config_arg
from metanas.core.runtime import resolve_device
from metanas.space import build_model
from metanas.meta.warm_start import WarmStart


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint")
    p.add_argument("--tasks", type=int, default=50)
    p.add_argument("--against-steps", type=int, help="also adapt the same tasks with this many steps (the same "
                   "alpha step): both latencies, their ratio and the paired accuracy difference")
    add_config_arg(p, "the defaults, when no checkpoint is given")
    p.add_argument("overrides", nargs="*", help="config overrides when no checkpoint is given")
    args = p.parse_intermixed_args()
    if args.checkpoint:
        warm = WarmStart.load(args.checkpoint)
        model, cfg, adaptation = warm.model, warm.config, warm.adaptation
    else:
        cfg = load_config(args.config, args.overrides)
        torch.manual_seed(cfg.run.seed)
        model, adaptation = build_model(cfg, cfg.task.ways or 5)[0], Adaptation.from_config(cfg)
    device = resolve_device(cfg.run.device)
    model.to(device)
    sets = get_tasksets(load_family(cfg.task.family), cfg.data.root, cfg.task.ways, cfg.task.shots, cfg.task.queries)
    inner = InnerLoop.for_adaptation(cfg, sets.test.ways, adaptation)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def run(curve, inner=inner):
        return evaluate(model, params, sets.test, tasks=args.tasks, inner=inner,
                        generator=torch.Generator().manual_seed(cfg.run.seed + TEST_SEED), chunk=1, curve=curve,
                        device=device)

    run(False)  # warm-up: allocator, kernels
    timed = run(False)
    traced = run(True)
    s = timed.seconds
    print(f"device: {device}, {inner.steps} inner steps on w and alpha ({cfg.inner.variant}), "
          f"{cfg.task.family} ({sets.test.ways}-way {sets.test.shots}-shot), {args.tasks} tasks")
    print(f"latency per task: median {s.median():.3f} s, p90 {s.quantile(0.9):.3f} s")
    print(f"query accuracy: {timed.summary()}")
    print("accuracy after each step: " + " ".join(f"{100 * a:.1f}" for a in traced.curve.mean(0).tolist()))
    if args.against_steps is not None:  # the same tasks (same seed), timed after the first run's warm-up
        other = run(False, dataclasses.replace(inner, steps=args.against_steps))
        o = other.seconds
        diff, ci = mean_ci95(timed.accuracies - other.accuracies)
        print(f"against {args.against_steps} steps: median {o.median():.3f} s, p90 {o.quantile(0.9):.3f} s, "
              f"accuracy {other.summary()}")
        print(f"latency ratio (these {inner.steps} steps / {args.against_steps}): {s.median() / o.median():.3f}; "
              f"accuracy difference, paired: {100 * diff:+.2f} ± {100 * ci:.2f} points")


if __name__ == "__main__":
    main()
