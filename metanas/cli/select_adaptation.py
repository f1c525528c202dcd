"""``metanas select-adaptation``: choose a warm start's adaptation (steps, alpha's step) on its validation tasks
and keep it in the checkpoint (what ``inner.select_steps``/``inner.select_lr_alpha`` do at the end of meta-training)."""

from __future__ import annotations

from metanas.cli.common import add_warm_start_args, load_warm_start, numbers
from metanas.config import SELECT_RULES
from metanas.core.resources import DATA_ROOT_HELP


def register(sub) -> None:
    s = sub.add_parser("select-adaptation", help="choose the adaptation steps and alpha step on the warm start's "
                       "validation tasks (of every domain, for a mixture) and keep the best in its checkpoint")
    add_warm_start_args(s, registry=False)
    s.add_argument("--steps", type=numbers(int), default=[], metavar="N,N,...",
                   help="adaptation steps to try (default: the checkpoint's inner.eval_steps)")
    s.add_argument("--lr-alpha", type=numbers(float), default=[], metavar="A,A,...",
                   help="alpha steps to try; 0 keeps the architecture fixed (default: the checkpoint's)")
    s.add_argument("--tasks", type=int, default=200, help="validation tasks every setting adapts (default 200)")
    s.add_argument("--seed", type=int, help="seed of the tasks (default: the run's seed + 3)")
    s.add_argument("--rule", choices=SELECT_RULES, help="latency: the fewest steps tied with the most "
                   "accurate (paired 95%% CI of the difference reaches 0); accuracy: the most accurate (default: the "
                   "checkpoint's inner.select_rule)")
    s.add_argument("--dry-run", action="store_true", help="print the table, leave the checkpoint as it is")
    s.add_argument("--data-root", help=DATA_ROOT_HELP)
    s.add_argument("--device", default="auto")
    s.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    s.set_defaults(fn=cmd_select)


def cmd_select(args) -> None:
    from metanas import api
    from metanas.meta.checkpoint import write_adaptation
    from metanas.core.tables import markdown, pct
    from metanas.track.runs import child_tracker

    warm, dist = load_warm_start(args)
    try:
        best, table = api.select_adaptation(warm, args.steps, args.lr_alpha, tasks=args.tasks, seed=args.seed,
                                            progress=True, rule=args.rule)
    finally:
        dist.close()
    rows = [[r["steps"], r["lr_alpha"], pct(r["accuracy"], r["ci95"]),
             "-" if r["arch_gain"] is None else f"{100 * r['arch_gain']:+.2f} ± {100 * r['arch_gain_ci95']:.2f}",
             "**chosen**" if r is best else ""] for r in table]
    print(markdown(["steps", "alpha step", f"validation accuracy ({args.tasks} tasks)",
                    "architecture adaptation's gain (paired, points)", ""], rows))
    print(f"chosen: {best['steps']} steps, alpha step {best['lr_alpha']} (was {warm.adaptation})")
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
