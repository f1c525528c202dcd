"""Calibrating a warm start's adaptation on labelled tasks it will not be tested on.

* ``metanas select-adaptation``: choose its adaptation (steps, alpha's step) on its validation tasks and keep it in
  the checkpoint (what ``inner.select_steps``/``inner.select_lr_alpha`` do at the end of meta-training).
* ``metanas adapt-domain``: move its alpha to a new domain, the mean adapted alpha of a few of the domain's tasks,
  and write the result as a new checkpoint (:func:`metanas.api.adapt_domain`).
"""

from __future__ import annotations

from metanas.commands import add_warm_start_args, load_warm_start
from metanas.errors import MetanasError
from metanas.resources import DATA_ROOT_HELP


def _numbers(kind):
    def parse(text: str) -> list:
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise MetanasError(f"{text!r} is not a comma-separated list of numbers: write e.g. 3,10") from None
    return parse


def register(sub) -> None:
    s = sub.add_parser("select-adaptation", help="choose the adaptation steps and alpha step on the warm start's "
                       "validation tasks (of every domain, for a mixture) and keep the best in its checkpoint")
    add_warm_start_args(s, registry=False)
    s.add_argument("--steps", type=_numbers(int), default=[], metavar="N,N,...",
                   help="adaptation steps to try (default: the checkpoint's inner.eval_steps)")
    s.add_argument("--lr-alpha", type=_numbers(float), default=[], metavar="A,A,...",
                   help="alpha steps to try; 0 keeps the architecture fixed (default: the checkpoint's)")
    s.add_argument("--tasks", type=int, default=200, help="validation tasks every setting adapts (default 200)")
    s.add_argument("--seed", type=int, help="seed of the tasks (default: the run's seed + 3)")
    s.add_argument("--dry-run", action="store_true", help="print the table, leave the checkpoint as it is")
    s.add_argument("--data-root", help=DATA_ROOT_HELP)
    s.add_argument("--device", default="auto")
    s.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    s.set_defaults(fn=cmd_select)

    d = sub.add_parser("adapt-domain", help="move the warm start's architecture to a new domain (the mean adapted "
                       "alpha of a few of its labelled tasks) and write it as a new checkpoint")
    d.add_argument("--task", required=True, help="the new domain's task family (its validation split where it has "
                   "one, else other tasks of its test classes)")
    add_warm_start_args(d, registry=False)
    d.add_argument("--tasks", type=int, default=50, help="labelled tasks that estimate the domain's alpha (default 50)")
    d.add_argument("--rounds", type=int, default=1, help="repeat from the last estimate (default 1)")
    d.add_argument("--seed", type=int, help="seed of the tasks (default: the run's seed + 4)")
    d.add_argument("--steps", type=int, help="the tasks' adaptation steps (default: the checkpoint's)")
    d.add_argument("--lr-alpha", type=float, help="the tasks' alpha step, > 0 (default: the checkpoint's)")
    d.add_argument("--out", help="the new checkpoint (default OUTPUT_DIR/domains/RUN_ID-TASK.pt)")
    d.add_argument("--data-root", help=DATA_ROOT_HELP)
    d.add_argument("--device", default="auto")
    d.set_defaults(fn=cmd_adapt_domain)


def cmd_select(args) -> None:
    from metanas import api
    from metanas.checkpoint import write_adaptation
    from metanas.tables import markdown, pct
    from metanas.tracking import child_tracker

    warm, dist = load_warm_start(args)
    try:
        before = api.inner_loop(warm)
        best, table = api.select_adaptation(warm, args.steps, args.lr_alpha, args.tasks, args.seed, progress=True)
    finally:
        dist.close()
    rows = [[r["steps"], r["lr_alpha"], pct(r["accuracy"], r["ci95"]),
             "-" if r["arch_gain"] is None else f"{100 * r['arch_gain']:+.2f} ± {100 * r['arch_gain_ci95']:.2f}",
             "**chosen**" if r is best else ""] for r in table]
    print(markdown(["steps", "alpha step", f"validation accuracy ({args.tasks} tasks)",
                    "architecture adaptation's gain (paired, points)", ""], rows))
    print(f"chosen: {best['steps']} steps, alpha step {best['lr_alpha']} (was {before.steps}, {before.lr_alpha})")
    if not args.dry_run:
        write_adaptation(warm.path, best)
        print(f"kept in {warm.path}: adapt, evaluate, export and the API now adapt this way")
    if not args.no_track:
        tracker = child_tracker(warm.config, "select_adaptation", warm.run_id, "select-adaptation")
        tracker.log_dict({"chosen": best, "candidates": table, "kept": not args.dry_run}, "adaptation_selection.json")
        tracker.log_metrics({"select/accuracy": best["accuracy"], "select/steps": best["steps"],
                             "select/lr_alpha": best["lr_alpha"]}, step=0)
        tracker.end()
        print(f"run id: {tracker.run_id}")


def cmd_adapt_domain(args) -> None:
    from pathlib import Path

    from metanas import api
    from metanas.checkpoint import write_domain

    warm, dist = load_warm_start(args)
    out = Path(args.out or Path(args.output_dir) / "domains" / f"{warm.run_id}-{Path(args.task).stem}.pt")
    try:
        if out.resolve() == Path(warm.path).resolve():
            raise MetanasError(f"--out {out} is the warm start's own checkpoint: give another path (adapt-domain "
                               "writes a new checkpoint and leaves the run's own as it is)")
        domain, info = api.adapt_domain(warm, args.task, args.tasks, args.rounds, args.seed, args.steps,
                                           args.lr_alpha, progress=True)
    finally:
        dist.close()
    write_domain(warm.path, out, domain.params, warm.space.to_json(domain.derive()), info, domain.adaptation)
    what = "validation classes" if info["split"] == "validation" else "test classes (other tasks; it has no validation split)"
    print(f"{args.task}: alpha = the mean adapted alpha of {args.tasks} tasks of its {what}, {args.rounds} round(s)")
    print(f"architecture: {warm.space.describe(warm.derive())} -> {warm.space.describe(domain.derive())}")
    print(f"its tasks adapt as the calibration did: {domain.adaptation['steps']} steps, alpha step "
          f"{domain.adaptation['lr_alpha']}")
    print(f"checkpoint: {out}\nadapt to the domain's tasks from it: metanas evaluate --checkpoint {out} --task {args.task}")
