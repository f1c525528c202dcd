"""Inner-loop settings for adaptation, chosen on validation tasks: the paired gain of adapting the architecture.

    python benchmarks/adapt_sweep.py RUN [--families F1,F2,...] [--tasks 400] [--split validation]
                                     [--output-dir runs] SETTING [SETTING ...]

Each SETTING is a comma-separated list of InnerLoop overrides (``lr_alpha=1.0``, ``steps=6,lr_alpha=0.25``;
``base``: the warm start's own). For each family and setting, the warm start adapts the same ``--tasks``
tasks of ``--split`` (default: validation, so choosing a setting does not touch the test classes) twice,
weights and alpha, then weights only with the same steps, and prints both accuracies and their paired
difference ± 95% CI.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from metanas import api
from metanas.data import get_tasksets, load_family
from metanas.estimation.loop import evaluate
from metanas.estimation.stats import paired_difference

SEED = 7


def parse(setting: str) -> dict:
    if setting == "base":
        return {}
    out = {}
    for item in setting.split(","):
        key, _, value = item.partition("=")
        out[key] = int(value) if key == "steps" else float(value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run id (under --output-dir) or checkpoint path of a supernet warm start")
    p.add_argument("settings", nargs="+")
    p.add_argument("--families", default="omniglot-5way")
    p.add_argument("--tasks", type=int, default=400)
    p.add_argument("--split", choices=["validation", "test"], default="validation")
    p.add_argument("--output-dir", default="runs")
    args = p.parse_args()
    warm = api.load(args.run, args.output_dir)
    base = api.inner_loop(warm)
    print("| family | setting | adapted | architecture fixed | paired gain (points) |\n|---|---|---|---|---|")
    for family in args.families.split(","):
        fam = load_family(family)
        warm.check_family(fam)
        tasks = getattr(get_tasksets(fam, warm.config.data.root, warm_format=warm.image), args.split)
        if tasks is None:
            raise SystemExit(f"{family} has no {args.split} split: use --split test")
        run = lambda inner: evaluate(warm.model, warm.params, tasks, args.tasks, inner, torch.Generator().manual_seed(SEED))
        fixed = {}
        for setting in args.settings:
            inner = replace(base, **parse(setting))
            if inner.steps not in fixed:
                fixed[inner.steps] = run(replace(inner, lr_alpha=0.0))
            ev, fx = run(inner), fixed[inner.steps]
            d, ci = paired_difference(ev, fx)
            print(f"| {family} | {setting} | {100 * ev.mean:.2f}% | {100 * fx.mean:.2f}% | {100 * d:+.2f} ± {100 * ci:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
