"""Seconds per meta-iteration: a naive per-task deepcopy loop against metanas's torch.func path.

    python benchmarks/meta_step.py                      # the reference configuration (below)
    python benchmarks/meta_step.py --repeats 1 search.channels=8 search.cells=3 meta.meta_batch=4   # other sizes
    python benchmarks/meta_step.py --against 7941745 --no-reference --config default --repeats 10   # vs a commit

Reference configuration (issue "Performance"): DARTS supernet, 4 cells, 3 nodes, C=28 (stem 3x28),
7 ops, BatchNorm without affine, Omniglot 5-way 1-shot 28x28, meta-batch 10, 5 inner steps, each a
weight step and an alpha step (first-order DARTS, alternating), FOMAML outer step.

Every method runs in its own subprocess so its peak RSS is its own. Printed: seconds per
meta-iteration (median of --repeats after one warm-up), the ratio to the naive loop measured in the
same run, achieved GFLOP/s (FLOPs counted once with torch.utils.flop_counter), the machine's rate
for the same network at batch 50, peak RSS, and the naive loop's per-phase breakdown.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import metanas

from metanas.config import load_config
from metanas.data import get_tasksets, load_family
from metanas.meta.outer import MetaLearner
from metanas.core.resources import add_config_arg
from metanas.space import build_model, is_alpha

# One query per class: the issue's >= 2.3 TFLOP per meta-iteration is the 100 support passes (10 tasks x 5 steps
# x weight + alpha step x 22.8 GFLOP) plus a query set the size of a support set; 15 queries per class would add
# 3.4 TFLOP, and under vmap of 10 tasks (750 query images at once) the kernel killed it at 12.5 GB (measured).
ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ["search.space=darts", "search.cells=4", "search.nodes=3", "search.channels=28", "search.stem_multiplier=3",
             "meta.meta_batch=10", "inner.steps=5", "task.queries=1", "inner.variant=alternating",
             "meta.algorithm=fomaml"]


def peak_rss_gb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: Linux carries ru_maxrss over fork + exec, so a child
    would report the parent's peak (here: the batch-50 FLOP-rate probe) whenever its own is lower."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**30 if sys.platform == "darwin" else 2**20)


def naive_iteration(model, cfg, task, phases: dict) -> None:
    """What reference code does: deepcopy per task, optimizer steps, accumulate first-order meta-gradients."""
    meta_grads = [torch.zeros_like(p) for p in model.parameters()]
    sx, sy, qx, qy = task
    for b in range(sx.shape[0]):
        t = time.perf_counter()
        learner = copy.deepcopy(model)
        w = [p for n, p in learner.named_parameters() if not is_alpha(n)]
        a = [p for n, p in learner.named_parameters() if is_alpha(n)]
        opt_w, opt_a = torch.optim.SGD(w, cfg.inner.lr), torch.optim.SGD(a, cfg.inner.lr_alpha)
        phases["copy"] += time.perf_counter() - t
        for _ in range(cfg.inner.steps):
            t = time.perf_counter()
            opt_w.zero_grad()
            F.cross_entropy(learner(sx[b]), sy[b]).backward()
            opt_w.step()
            phases["inner weight step"] += time.perf_counter() - t
            t = time.perf_counter()
            opt_a.zero_grad()
            F.cross_entropy(learner(sx[b]), sy[b]).backward()
            opt_a.step()
            phases["inner alpha step"] += time.perf_counter() - t
        t = time.perf_counter()
        learner.zero_grad()
        F.cross_entropy(learner(qx[b]), qy[b]).backward()
        for g, p in zip(meta_grads, learner.parameters()):
            if p.grad is not None:  # e.g. alpha_normal of a net with reduction cells only
                g += p.grad / sx.shape[0]
        phases["query backward"] += time.perf_counter() - t
    t = time.perf_counter()
    for p, g in zip(model.parameters(), meta_grads):
        p.grad = g
    phases["outer step"] += time.perf_counter() - t


def measure(method: str, configs: list[str], overrides: list[str], repeats: int) -> dict:
    torch.manual_seed(0)
    cfg = load_config(configs, overrides)
    sets = get_tasksets(load_family(cfg.task.family), cfg.data.root, cfg.task.ways, cfg.task.shots, cfg.task.queries)
    model = build_model(cfg, sets.train.ways, in_channels=sets.train.format.channels)[0]
    learner = MetaLearner(model, cfg, sets.train.ways)
    gen = torch.Generator().manual_seed(0)
    phases = {k: 0.0 for k in ("data", "copy", "inner weight step", "inner alpha step", "query backward", "outer step")}
    times = []
    for r in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        task = tuple(sets.train.sample_batch(cfg.meta.meta_batch, gen))
        phases["data"] += time.perf_counter() - t0
        if method == "naive":
            naive_iteration(model, cfg, task, phases)
        else:
            learner.meta_gradient(task)
        learner.optimizer.step()
        learner.optimizer.zero_grad(set_to_none=True)
        if r:
            times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "peak_rss_gb": peak_rss_gb(), "family": cfg.task.family,
            "package": str(Path(metanas.__file__).parent),
            "phases": {k: v / (repeats + 1) for k, v in phases.items()} if method == "naive" else None}


def flops_per_iteration(configs: list[str], overrides: list[str]) -> tuple[float, float]:
    """FLOPs of one meta-iteration (counted on the naive loop: same work), and GFLOP/s at batch 50."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = load_config(configs, overrides)
    model = build_model(cfg, cfg.task.ways or 5)[0]
    ways, q = cfg.task.ways or 5, cfg.task.queries
    task = (torch.rand(cfg.meta.meta_batch, ways, 1, 28, 28), torch.arange(ways).repeat(cfg.meta.meta_batch, 1),
            torch.rand(cfg.meta.meta_batch, ways * q, 1, 28, 28),
            torch.arange(ways).repeat_interleave(q).repeat(cfg.meta.meta_batch, 1))
    with FlopCounterMode(display=False) as fc:
        naive_iteration(model, cfg, task, {k: 0.0 for k in ("copy", "inner weight step", "inner alpha step",
                                                               "query backward", "outer step")})
    total = fc.get_total_flops()
    x, y = torch.rand(50, 1, 28, 28), torch.randint(ways, (50,))
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), y).backward()
    per50 = fc.get_total_flops()
    times = []
    for _ in range(4):
        t = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        times.append(time.perf_counter() - t)
    return total, per50 / statistics.median(times[1:]) / 1e9


def against(ref: str, rounds: int, run) -> None:
    """Seconds per joint meta-step of this tree and of commit ``ref``, each in its own process, alternating."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                       capture_output=True)
        try:
            here, there = [], []
            for _ in range(rounds):
                here.append(run("metanas", ["inner.variant=joint"]))
                there.append(run("metanas", ["inner.variant=joint"], package=tree))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    assert {Path(r["package"]).parent for r in here} == {ROOT} and {Path(r["package"]).parent for r in there} == {tree}
    a, b = statistics.median(r["seconds"] for r in here), statistics.median(r["seconds"] for r in there)
    print(f"family {here[0]['family']}: this tree {a:.3f} s / meta-step, {ref} {b:.3f} s (medians of {rounds} "
          f"alternating processes); this tree / {ref} = {a / b:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", help=argparse.SUPPRESS)  # internal: measure one method in this process
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--chunks", default="1,2,5", help="meta.task_chunk values for the memory table")
    p.add_argument("--no-reference", action="store_true", help="do not prepend the reference configuration")
    p.add_argument("--against", metavar="REF", help="only time this tree's joint meta-step against git commit REF's "
                   "(a temporary worktree), alternating, and print the ratio")
    p.add_argument("--rounds", type=int, default=3, help="alternations with --against")
    add_config_arg(p)
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args()
    overrides = ([] if args.no_reference else REFERENCE) + args.overrides
    if args.method:
        print(json.dumps(measure(args.method, args.config, overrides, args.repeats)))
        return

    configs = [a for c in args.config for a in ("--config", c)]

    def run(method, extra=(), package=ROOT):
        out = subprocess.run([sys.executable, __file__, "--method", method, "--repeats", str(args.repeats),
                              "--no-reference", *configs, *overrides, *extra], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(package)})
        if out.returncode:
            why = f"killed by signal {-out.returncode} (out of memory?)" if out.returncode < 0 else out.stderr
            sys.exit(f"meta_step.py: {method} {' '.join(extra)} failed: {why}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    if args.against:
        against(args.against, args.rounds, run)
        return
    flops, rate50 = flops_per_iteration(args.config, overrides)
    naive = run("naive")
    same = run("metanas")
    less = run("metanas", ["inner.variant=joint"])
    print(f"config: {' '.join([*(f'--config {c}' for c in args.config), *overrides])} "
          f"(task family measured: {naive['family']})")
    print(f"FLOPs per meta-iteration (naive loop, counted): {flops / 1e12:.3f} TFLOP; "
          f"this machine at batch 50 (fwd+bwd): {rate50:.1f} GFLOP/s -> floor {flops / rate50 / 1e9:.1f} s")
    print("| method | s / meta-iteration | vs naive | GFLOP/s | peak RSS GB |")
    print("|---|---|---|---|---|")
    for name, r, work in (("naive deepcopy loop (alternating)", naive, flops),
                          ("metanas torch.func + vmap (alternating, same work)", same, flops),
                          ("metanas joint w+alpha step (one backward per step)", less, None)):
        gf = f"{work / r['seconds'] / 1e9:.1f}" if work else "-"
        print(f"| {name} | {r['seconds']:.2f} | {naive['seconds'] / r['seconds']:.2f}x | {gf} | {r['peak_rss_gb']:.2f} |")
    print("\nnaive loop per-phase seconds per iteration: "
          + ", ".join(f"{k} {v:.2f}" for k, v in naive["phases"].items()))
    print("\n| meta.task_chunk (tasks per vmap call) | s / meta-iteration | peak RSS GB |")
    print("|---|---|---|")
    for c in args.chunks.split(","):
        r = run("metanas", [f"meta.task_chunk={c}"])
        print(f"| {c} | {r['seconds']:.2f} | {r['peak_rss_gb']:.2f} |")


if __name__ == "__main__":
    main()
