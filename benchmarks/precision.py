"""What run.amp=bf16 and run.deterministic cost on this machine: meta-step time against float32, measured in one run,
and accuracy, paired against float32 on the same test tasks.

    python benchmarks/precision.py                                  # the default config, 40 meta-iterations each
    python benchmarks/precision.py --iterations 300 --tasks 200     # the accuracy figure of docs/operations.md
    python benchmarks/precision.py --iterations 4 --tasks 4 --repeats 1 search.channels=4   # a smoke

Step time: one meta-learner per setting (float32; bf16 autocast; float32 under run.deterministic), the same
meta-batch, the settings interleaved over ``--repeats`` rounds after a warm-up, median seconds per step and its
ratio to float32. Accuracy: ``--iterations`` meta-steps from the same seed and the same task sequence with float32
and with bf16, then each warm start adapts the same ``--tasks`` test tasks (in its own precision) and the per-task
accuracies are compared, paired (mean difference ± 95% CI). ``run.deterministic`` changes no CPU result (the CPU
kernels are deterministic either way), so only its step time is measured.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from metanas.config import load_config, replace
from metanas.core.resources import add_config_arg
from metanas.core.runtime import resolve_device, set_deterministic
from metanas.data import get_tasksets, load_family
from metanas.estimation.loop import evaluate
from metanas.estimation.seeds import TEST_SEED
from metanas.estimation.stats import mean_ci95
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import InnerLoop
from metanas.meta.outer import MetaLearner
from metanas.space import build_model

SETTINGS = {"float32": {}, "bf16": {"run.amp": "bf16"}, "deterministic": {"run.deterministic": True}}


def _learner(cfg, ways, channels):
    torch.manual_seed(cfg.run.seed)
    return MetaLearner(build_model(cfg, ways, in_channels=channels)[0].to(resolve_device(cfg.run.device)), cfg, ways)


def step_times(cfgs: dict, sets, repeats: int) -> dict[str, float]:
    device = resolve_device(next(iter(cfgs.values())).run.device)
    task = [t.to(device) for t in sets.train.sample_batch(cfgs["float32"].meta.meta_batch,
                                                          torch.Generator().manual_seed(0))]
    learners = {name: _learner(cfg, sets.train.ways, sets.train.format.channels) for name, cfg in cfgs.items()}
    times: dict[str, list[float]] = {name: [] for name in cfgs}
    for r in range(repeats + 1):  # round 0 warms up
        for name, learner in learners.items():
            set_deterministic(name == "deterministic")
            t = time.perf_counter()
            learner.step(task, r)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r:
                times[name].append(time.perf_counter() - t)
            torch.use_deterministic_algorithms(False)
    return {name: statistics.median(ts) for name, ts in times.items()}


def trained_accuracy(cfg, sets, iterations: int, tasks: int) -> torch.Tensor:
    """Per-task test accuracy after ``iterations`` meta-steps (the same seed and task sequence for every cfg)."""
    learner, device = _learner(cfg, sets.train.ways, sets.train.format.channels), resolve_device(cfg.run.device)
    sampler = torch.Generator().manual_seed(cfg.run.seed)
    for it in range(iterations):
        learner.step([t.to(device) for t in sets.train.sample_batch(cfg.meta.meta_batch, sampler)], it)
    inner = InnerLoop.for_adaptation(cfg, sets.test.ways, Adaptation.from_config(cfg))
    params = {k: v.detach() for k, v in learner.params().items()}
    return evaluate(learner.model, params, sets.test, tasks=tasks, inner=inner, device=device,
                    generator=torch.Generator().manual_seed(cfg.run.seed + TEST_SEED)).accuracies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=40, help="meta-steps per precision before the accuracy test")
    p.add_argument("--tasks", type=int, default=100, help="test tasks, the same for both precisions")
    p.add_argument("--repeats", type=int, default=5, help="timed meta-steps per setting")
    add_config_arg(p)
    p.add_argument("overrides", nargs="*", help="config overrides (dotted keys)")
    args = p.parse_intermixed_args()
    base = load_config(args.config, args.overrides)
    cfgs = {name: replace(base, changes) for name, changes in SETTINGS.items()}
    if base.run.threads:
        torch.set_num_threads(base.run.threads)
    sets = get_tasksets(load_family(base.task.family), base.data.root, base.task.ways, base.task.shots,
                        base.task.queries)
    print(f"device: {resolve_device(base.run.device)}, threads: {torch.get_num_threads()}, {base.task.family}, "
          f"{base.search.space} space, meta-batch {base.meta.meta_batch}, {base.inner.steps} inner steps")
    seconds = step_times(cfgs, sets, args.repeats)
    print(f"| setting | s / meta-step (median of {args.repeats}) | vs float32 |\n|---|---|---|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.3f} | {s / seconds['float32']:.2f}x |")
    acc = {name: trained_accuracy(cfgs[name], sets, args.iterations, args.tasks) for name in ("float32", "bf16")}
    diff, ci = mean_ci95(acc["bf16"] - acc["float32"])
    print(f"accuracy after {args.iterations} meta-steps, {args.tasks} test tasks: " + ", ".join(
        f"{name} {100 * mean_ci95(a)[0]:.2f} ± {100 * mean_ci95(a)[1]:.2f}%" for name, a in acc.items())
          + f"; bf16 - float32, paired: {100 * diff:+.2f} ± {100 * ci:.2f} points")


if __name__ == "__main__":
    main()
