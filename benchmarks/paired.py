"""Two warm starts adapted to the same test tasks: each one's accuracy and their paired difference (95% CI).

    python benchmarks/paired.py A B [--task FAMILY] [--tasks 600] [--output-dir runs] [--seed S] [--as-trained]

A and B are run ids (under ``--output-dir``; each may also be ``DIR:RUN_ID``) or checkpoint paths. Both are
adapted by ``metanas.evaluate`` (their own ``inner.eval_steps``, architecture adapted) to the same tasks
of ``--task`` (default: A's family), drawn with ``--seed`` (default: A's ``run.seed + TEST_SEED``, the
seed meta-training's test uses). The paired difference is the mean of A's minus B's per-task accuracy:
the task-to-task spread both share cancels, so it can separate two methods whose unpaired CIs overlap.
``--as-trained`` instead re-tests each as its meta-training tested it (``metanas.api.retest``: ``task.queries``
queries per class, the tasks its ``run.seed`` draws), so the accuracies are the ones meta-training printed and
the pair is the one ``benchmarks/baselines.py`` prints for runs of one invocation; A and B must then share the
family, the queries and the seed.
"""

from __future__ import annotations

import argparse

from metanas import api
from metanas.estimation.seeds import TEST_SEED
from metanas.estimation.stats import paired_difference


def _load(ref: str, output_dir: str):
    folder, _, run = ref.rpartition(":")
    return api.load(run, folder or output_dir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--task", help="task family (default: A's)")
    p.add_argument("--tasks", type=int, default=600)
    p.add_argument("--seed", type=int, help="seed of the test tasks (default: A's run.seed + TEST_SEED)")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--as-trained", action="store_true", help="re-test each as its meta-training tested it (its "
                   "task.queries, tasks drawn by its run.seed); A and B must share family, queries and seed")
    args = p.parse_args()
    a, b = _load(args.a, args.output_dir), _load(args.b, args.output_dir)
    if args.as_trained:
        keys = lambda w: (w.config.task.family, w.config.task.queries, w.config.run.seed)
        if args.task or args.seed is not None or keys(a) != keys(b):
            raise SystemExit(f"--as-trained pairs two runs of the same task.family, task.queries and run.seed (A: "
                             f"{keys(a)}, B: {keys(b)}) and takes no --task or --seed; drop --as-trained to pair "
                             "them on other tasks")
        family = a.config.task.family
        test = lambda warm: api.retest(warm, args.tasks)
    else:
        family = args.task or a.family
        seed = a.config.run.seed + TEST_SEED if args.seed is None else args.seed
        test = lambda warm: api.evaluate(warm, family, args.tasks, seed)[1]
    evs = []
    for name, warm in (("A", a), ("B", b)):
        ev = test(warm)
        print(f"{name} ({warm.run_id[:8]}, {warm.space.describe(warm.derive())}): {ev.summary()}", flush=True)
        evs.append(ev)
    mean, ci = paired_difference(*evs)
    print(f"paired difference A - B on the same {args.tasks} tasks of {family}: {100 * mean:+.2f} ± {100 * ci:.2f} points")


if __name__ == "__main__":
    main()
