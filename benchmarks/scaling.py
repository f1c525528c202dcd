"""Scaling figure: meta-training speed with 1 process vs N torchrun processes on this machine.

    python benchmarks/scaling.py                          # default experiment, meta-batch 4, 1 and 2 processes
    python benchmarks/scaling.py --procs 1 2 4 --meta-batch 8 --iterations 30

Strong scaling: the global meta-batch stays fixed and each of W processes adapts meta_batch / W tasks per
step, so every run computes the same meta-steps (and ends with the same parameters). The time is the
meta-training loop alone, as ``python -m metanas.meta_train`` prints it ("meta-training: N steps in T s"):
no interpreter start, data loading, MLflow store creation or final test. The loop includes one validation
and one checkpoint at its end, made negligible here (2 validation tasks).

1 process uses torch's default threads (all cores); under torchrun each process gets cores / W threads
(metanas/distributed.py), so every configuration uses the whole machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(procs: int, meta_batch: int, iterations: int, config: str | None, out_dir: str) -> float:
    """Seconds per meta-step of the training loop."""
    args = ["-m", "metanas.meta_train", *(["--config", config] if config else []),
            f"meta.meta_batch={meta_batch}", f"meta.iterations={iterations}", f"meta.eval_every={iterations}",
            "meta.eval_tasks=2", "meta.test_tasks=2", f"meta.checkpoint_every={iterations}", "run.progress=false",
            f"run.output_dir={out_dir}", f"run.experiment=scaling-{procs}"]
    launcher = [] if procs == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, *launcher, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{procs} process(es) failed:\n{out.stderr[-3000:]}")
    m = re.search(r"meta-training: (\d+) steps in ([0-9.]+) s", out.stdout)
    return float(m.group(2)) / int(m.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--meta-batch", type=int, default=4, help="global meta-batch (a multiple of every --procs)")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--config", help="config YAML (default: the default experiment)")
    args = p.parse_args()
    bad = [w for w in args.procs if args.meta_batch % w]
    if bad:
        sys.exit(f"--meta-batch {args.meta_batch} does not split over {bad} processes")
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# {cores} cores, torch {torch.__version__}, config {args.config or 'default'}, "
          f"global meta-batch {args.meta_batch}, {args.iterations} meta-steps per run (gloo on CPU)")
    print(f"{'processes':>9} {'tasks/process':>13} {'s/step':>8} {'steps/s':>8} {'speedup':>8} {'efficiency':>10}")
    base = None
    with tempfile.TemporaryDirectory() as out_dir:
        for w in args.procs:
            t = run(w, args.meta_batch, args.iterations, args.config, out_dir)
            base = base or t
            print(f"{w:9d} {args.meta_batch // w:13d} {t:8.3f} {1 / t:8.2f} {base / t:7.2f}x {base / t / w:9.0%}",
                  flush=True)


if __name__ == "__main__":
    main()
