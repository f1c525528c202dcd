"""Where a task's architecture adaptation starts: from the warm start's alpha, from a new domain's alpha estimated
from a few of its labelled tasks, or from the alpha a set encoder predicts from the task's support images.

    python benchmarks/domain_alpha.py --method RUN0,RUN1,RUN2 --families fonts-5way,digits-5way \
        [--calibration 50] [--rounds 1] [--encoder 0] [--tasks 100] [--inner inner.KEY=VALUE,...] [--output-dir runs]

Domain alpha (``--calibration`` > 0): that many tasks of the family (its validation split where it has one, else its
test split with another task seed: other tasks, the same classes) are adapted as usual (w and alpha); the mean of
their adapted alphas replaces the warm start's alpha (``--rounds`` times, each from the last:
:func:`metanas.api.adapt_domain`, the ``metanas adapt-domain`` command). Set encoder (``--encoder`` N > 0): trained
on N tasks of the warm start's own training split to predict each task's adapted alpha from its support images
(:func:`metanas.api.fit_set_encoder`); its held-out R^2 is printed per warm start. Then the same ``--tasks`` test
tasks (seed ``--seed``) are adapted from each start twice, w only and w and alpha, each compared with w only from the
warm start, paired over tasks and averaged over seeds; the encoder's zero-step alpha is also compared with per-task
gradient adaptation of alpha, and with its control: every task's alpha moved by the training tasks' mean move (w
only), whatever its images.
"""

from __future__ import annotations

import argparse
import sys

import torch

from metanas import api
from metanas.core.errors import MetanasError

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from transfer import _accuracies, _paired, emit, fit_encoders, load_methods  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", required=True, metavar="RUN[,RUN...]", help="supernet warm starts, one per seed")
    p.add_argument("--families", required=True)
    p.add_argument("--calibration", type=int, default=50, help="tasks that estimate the domain's alpha (0: none)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--encoder", type=int, default=0, help="training tasks of a set encoder (0: none)")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the test tasks")
    p.add_argument("--calibration-seed", type=int, default=1000)
    p.add_argument("--inner", help="inner.KEY=VALUE,...: the adaptation's settings, for every warm start")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--csv")
    args = p.parse_args(argv)
    warms = load_methods([f"m={args.method}"], args.output_dir, args.inner)["m"]
    fits = fit_encoders(warms, args.encoder, "domain_alpha.py") if args.encoder else []
    encoders = [(f.encoder, f.encoder.constant(f.mean_move)) for f in fits]  # each with its control
    starts = (["domain alpha"] if args.calibration else []) + (["encoder alpha"] if args.encoder else [])
    head = ["family", "calibration split", "w only (warm start)", "per-task alpha - w only",
            *[f"{s}{how} - w only" for s in starts for how in (", w only", " + per-task alpha")],
            *(["encoder alpha, w only - per-task alpha", "encoder alpha, w only - training mean move, w only"]
              if args.encoder else [])]
    rows = []
    for family in args.families.split(","):
        acc = {k: [] for k in ("w", "wa", "dw", "dwa", "ew", "ewa", "mw")}
        split = "-"
        for i, warm in enumerate(warms):
            runs = [("w", warm, False, None), ("wa", warm, True, None)]
            if args.calibration:
                try:
                    dom, info = api.adapt_domain(warm, family, args.calibration, args.rounds, args.calibration_seed)
                except MetanasError as e:
                    raise SystemExit(f"domain_alpha.py: {family}: {e}") from None
                split = info["split"]
                runs += [("dw", dom, False, None), ("dwa", dom, True, None)]
            if args.encoder:
                encoder, control = encoders[i]
                runs += [("ew", warm, False, encoder), ("ewa", warm, True, encoder), ("mw", warm, False, control)]
            for key, w, arch, enc in runs:
                acc[key].append(_accuracies(w, family, args.tasks, args.seed, adapt_arch=arch, encoder=enc))
        mean = lambda a: 100 * torch.stack(a).mean().item()
        keys = ["wa"] + (["dw", "dwa"] if args.calibration else []) + (["ew", "ewa"] if args.encoder else [])
        row = [family, split, f"{mean(acc['w']):.2f}", *[_paired(acc[k], acc["w"]) for k in keys],
               *([_paired(acc["ew"], acc["wa"]), _paired(acc["ew"], acc["mw"])] if args.encoder else [])]
        rows.append(row)
        print(" | ".join(row), flush=True)
    emit(head, rows, args.csv)


if __name__ == "__main__":
    sys.exit(main())
