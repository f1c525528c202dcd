"""Architecture adaptation per domain against per task: does a new domain's alpha, estimated from a few of its
tasks, pay where one task's support set does not?

    python benchmarks/domain_alpha.py --method RUN0,RUN1,RUN2 --families fonts-5way,digits-5way \
        [--calibration 50] [--rounds 1] [--tasks 100] [--inner inner.KEY=VALUE,...] [--output-dir runs]

For each warm start and family: ``--calibration`` tasks of the family (its validation split where it has one,
else its test split with another task seed: other tasks, the same classes) are adapted as usual (w and alpha);
the mean of their adapted alphas replaces the warm start's alpha (``--rounds`` times, each from the last:
:func:`metanas.api.adapt_domain`, the ``metanas adapt-domain`` command). Then
the same ``--tasks`` test tasks (seed ``--seed``) are adapted four ways: w only from the warm start, w and
alpha from the warm start (per-task architecture adaptation), w only from the domain's alpha, w and alpha
from the domain's alpha. Each is compared with the first, paired over tasks and averaged over seeds.
"""

from __future__ import annotations

import argparse
import sys

import torch

from metanas import api
from metanas.errors import MetanasError

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from transfer import _accuracies, _paired, emit, load_methods  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", required=True, metavar="RUN[,RUN...]", help="supernet warm starts, one per seed")
    p.add_argument("--families", required=True)
    p.add_argument("--calibration", type=int, default=50, help="tasks that estimate the domain's alpha")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the test tasks")
    p.add_argument("--calibration-seed", type=int, default=1000)
    p.add_argument("--inner", help="inner.KEY=VALUE,...: the adaptation's settings, for every warm start")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--csv")
    args = p.parse_args(argv)
    warms = load_methods([f"m={args.method}"], args.output_dir, args.inner)["m"]
    head = ["family", "calibration split", "w only (warm start)", "per-task alpha - w only",
            "domain alpha, w only - w only", "domain alpha + per-task alpha - w only"]
    rows = []
    for family in args.families.split(","):
        acc = {k: [] for k in ("w", "wa", "dw", "dwa")}
        for warm in warms:
            try:
                dom, info = api.adapt_domain(warm, family, args.calibration, args.rounds, args.calibration_seed)
            except MetanasError as e:
                raise SystemExit(f"domain_alpha.py: {family}: {e}") from None
            for key, w, arch in (("w", warm, False), ("wa", warm, True), ("dw", dom, False), ("dwa", dom, True)):
                acc[key].append(_accuracies(w, family, args.tasks, args.seed, adapt_arch=arch))
        mean = lambda a: 100 * torch.stack(a).mean().item()
        row = [family, info["split"], f"{mean(acc['w']):.2f}", *[_paired(acc[k], acc["w"]) for k in ("wa", "dw", "dwa")]]
        rows.append(row)
        print(" | ".join(row), flush=True)
    emit(head, rows, args.csv)


if __name__ == "__main__":
    sys.exit(main())
