"""Does a validation source rank warm starts as a held-out test source does? Robustness as a selection criterion.

    python benchmarks/selection_agreement.py --method default=RUN0,RUN1,RUN2 --method narrow=RUN0,RUN1,RUN2 ... \
        --validation omniglot-5way-shift-val,glyphs-5way --target fonts-5way,digits-5way \
        [--tasks 200] [--target-tasks 100] [--inner inner.KEY=VALUE,...] [--output-dir runs] [--csv FILE]

Every warm start (several methods, one warm start per seed) adapts to the same ``--tasks`` tasks of each
validation family's *validation* classes and to the same ``--target-tasks`` tasks of each target family's *test*
classes (each as its checkpoint says, or as ``--inner`` sets for all). Printed: each method's mean accuracy per
family (with the seed range); then, for each validation family and target, Kendall's tau between the two over
every warm start and over the method means, the method the validation family ranks first, and that method's
target accuracy minus the best method's there (0: choosing on this validation family loses nothing on the
target). A validation family that ranks as the targets do is one to choose a default on.
"""

from __future__ import annotations

import argparse
import sys

from metanas import api
from metanas.estimation.stats import rank_agreement
from metanas.core.tables import markdown
from transfer import emit, load_methods


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", action="append", required=True, metavar="NAME=RUN[,RUN...]",
                   help="a method and its warm starts, one per seed (at least two methods)")
    p.add_argument("--validation", required=True, help="comma-separated families, scored on their validation classes")
    p.add_argument("--target", required=True, help="comma-separated families, scored on their test classes")
    p.add_argument("--tasks", type=int, default=200, help="tasks per validation family")
    p.add_argument("--target-tasks", type=int, default=100, help="tasks per target family")
    p.add_argument("--seed", type=int, default=0, help="seed of the tasks")
    p.add_argument("--inner", help="inner.KEY=VALUE,...: how every warm start adapts (default: as it chose)")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--csv", help="also write the agreement table as CSV here")
    args = p.parse_args(argv)
    if len(args.method) < 2:
        raise SystemExit("selection_agreement.py: give at least two --method to rank")
    methods = load_methods(args.method, args.output_dir, args.inner)
    validation, targets = args.validation.split(","), args.target.split(",")
    families = [(f, "validation", args.tasks) for f in validation] + [(f, "test", args.target_tasks) for f in targets]
    score = {}  # (family, method) -> accuracy of each warm start
    for family, split, n in families:
        for m, warms in methods.items():
            score[family, m] = [api.evaluate(w, family, n, args.seed, curve=False, split=split)[1].mean for w in warms]
            print(f"{family} ({split}) {m}: " + " ".join(f"{100 * a:.2f}" for a in score[family, m]), flush=True)
    mean = {k: sum(v) / len(v) for k, v in score.items()}
    head = ["method", *[f"{f} ({s}, {n} tasks)" for f, s, n in families]]
    rows = [[m, *[f"{100 * mean[f, m]:.2f} ({100 * min(score[f, m]):.1f}-{100 * max(score[f, m]):.1f})"
                  for f, _, _ in families]] for m in methods]
    print(markdown(head, rows), flush=True)
    head = ["validation", "target", "tau over warm starts", "tau over methods", "validation picks",
            "its target accuracy - the best method's"]
    rows = []
    for v in validation:
        for t in targets:
            a = rank_agreement({m: score[v, m] for m in methods}, {m: score[t, m] for m in methods})
            rows.append([v, t, f"{a['tau']:+.3f} (p = {a['p']:.3f})", f"{a['tau_methods']:+.3f}", a["picked"],
                         f"{100 * a['regret']:+.2f}"])
    emit(head, rows, args.csv)


if __name__ == "__main__":
    sys.exit(main())
