"""The GPU figures of a warm start against conv4 on the same device, in one run: meta-iterations per second,
adaptation latency per task (median, p90), peak device memory, and test accuracy at a fixed wall-clock budget.

    python benchmarks/gpu.py                                          # default and miniimagenet, 300 s each, cuda
    python benchmarks/gpu.py --configs default --budget 60 run.amp=bf16
    python benchmarks/gpu.py --device cpu --configs smoke --budget 5 --tasks 4 --latency-tasks 3   # a smoke

For every config and for conv4 (the config with ``search.genotype=conv4`` at ``--conv4-width`` channels, the same
family, inner loop and meta-learner), one meta-training of ``--budget`` seconds (``meta.time_budget``; the
final test on ``--tasks`` tasks is its accuracy), then the warm start adapts ``--latency-tasks`` test tasks one at a
time (``chunk=1``, after a warm-up), each timed to the end of its query prediction. Peak memory is
``torch.cuda.max_memory_allocated`` over the meta-training and its test (the CPU has no such counter: ``n/a``).
Runs and checkpoints go to ``--output-dir`` (default: a temporary folder, deleted at the end). Overrides after the
options apply to every run (``run.amp=bf16``, ``run.deterministic=true``, ...).
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from metanas import load_config, train
from metanas.config import replace
from metanas.core.runtime import resolve_device
from metanas.data import get_tasksets, load_family
from metanas.estimation.loop import evaluate
from metanas.estimation.seeds import TEST_SEED
from metanas.meta.warm_start import WarmStart


def _run(cfg, latency_tasks: int) -> dict:
    device = resolve_device(cfg.run.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = train(cfg)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    warm = WarmStart.load(result.checkpoint).to(device)
    sets = get_tasksets(load_family(cfg.task.family), cfg.data.root, warm_format=warm.image)
    inner = warm.inner_loop()

    def timed():
        return evaluate(warm.model, warm.params, sets.test, tasks=latency_tasks, inner=inner, chunk=1, device=device,
                        generator=torch.Generator().manual_seed(cfg.run.seed + TEST_SEED)).seconds

    timed()  # warm-up: allocator, kernels, autotuning
    seconds = timed()
    return {"it/s": result.steps / result.train_seconds, "iterations": result.steps,
            "latency median ms": 1000 * seconds.median().item(), "latency p90 ms": 1000 * seconds.quantile(0.9).item(),
            "peak GiB": peak, "accuracy": f"{result.test.summary()}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="default,miniimagenet", help="comma-separated config names or YAML files")
    p.add_argument("--budget", type=float, default=300, help="seconds of meta-training per run")
    p.add_argument("--tasks", type=int, default=600, help="test tasks of each run's accuracy")
    p.add_argument("--latency-tasks", type=int, default=50, help="tasks adapted one at a time for the latency")
    p.add_argument("--conv4-width", type=int, default=32, help="conv4's channels (32 wins on the CPU; MAML's is 64)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (a smoke of this script)")
    p.add_argument("--output-dir", help="where runs and checkpoints go (default: a temporary folder)")
    p.add_argument("overrides", nargs="*", help="config overrides for every run (dotted keys)")
    args = p.parse_intermixed_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        out = args.output_dir or tmp
        common = [f"run.device={args.device}", f"meta.time_budget={args.budget}", "meta.iterations=1000000",
                  f"meta.test_tasks={args.tasks}", f"run.output_dir={out}", "run.progress=false",
                  *args.overrides]
        rows = []
        for config in args.configs.split(","):
            cfg = load_config(config, common)
            conv4 = replace(cfg, {"search.space": "chain", "search.genotype": "conv4",
                                  "search.channels": args.conv4_width})
            for label, c in ((config, cfg), (f"conv4@{args.conv4_width}", conv4)):
                rows.append({"config": config, "model": label, **_run(c, args.latency_tasks)})
    print(f"device: {name}, {args.budget:.0f} s of meta-training per run; " + " ".join(args.overrides))
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join("n/a" if r[k] is None else f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k])
                                for k in keys) + " |")


if __name__ == "__main__":
    main()
