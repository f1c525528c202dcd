"""``metanas adapt``: adapt a warm start to a few new tasks, one at a time, each shown with its accuracy and its
own architecture. The adaptation and reporting code here is ``metanas evaluate``'s too."""

from __future__ import annotations

import time
from pathlib import Path

from metanas.cli.common import add_warm_start_args, load_warm_start
from metanas.config import replace as replace_config
from metanas.core.errors import MetanasError
from metanas.core.resources import DATA_ROOT_HELP


def register(sub) -> None:
    a = sub.add_parser("adapt", help="adapt a meta-trained warm start to new tasks, showing each")
    add_arguments(a, tasks=20)
    a.set_defaults(fn=cmd_adapt)


def add_arguments(a, tasks: int) -> None:
    """The arguments ``adapt`` and ``evaluate`` share (``tasks``: the default number of tasks)."""
    a.add_argument("--task", default="omniglot-5way", help="task family name (tasks/NAME.yaml) or YAML path")
    add_warm_start_args(a)
    a.add_argument("--tasks", type=int, default=tasks, help=f"number of test tasks (default {tasks})")
    a.add_argument("--steps", type=int, help="adaptation steps (default: the checkpoint's inner.eval_steps)")
    a.add_argument("--lr-alpha", type=float, help="alpha's adaptation step (default: the checkpoint's "
                   "inner.eval_lr_alpha, else inner.lr_alpha)")
    a.add_argument("--no-arch-adapt", action="store_true", help="adapt the weights only, keep the warm alpha")
    a.add_argument("--genotype", metavar="FILE.json", help="adapt the weights of this fixed architecture only "
                   "(e.g. the best_genotype.json of metanas search), cut out of the supernet warm start")
    a.add_argument("--ways", type=int, help="classes per task instead of the family's (more ways than the warm "
                   "start was meta-trained on need its prototype head, inner.head=proto)")
    a.add_argument("--shots", type=int, help="support images per class instead of the family's")
    a.add_argument("--seed", type=int, default=0, help="seed of the test tasks")
    a.add_argument("--data-root", help=DATA_ROOT_HELP)
    a.add_argument("--device", default="auto")
    a.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    a.add_argument("--plot", action="store_true", help="draw the first task's architecture and the choice wins "
                   "over all tasks (run artifacts and OUTPUT_DIR/plots/)")


def cmd_adapt(args) -> None:
    if args.tasks < 1:
        raise MetanasError("--tasks must be >= 1")
    warm, dist = load_warm_start(args)
    try:
        # the command line's adaptation, validated (one line, before any run is logged); alpha step 0 keeps the
        # architecture
        warm = warm.with_adaptation(warm.adaptation.replace(
            steps=args.steps, lr_alpha=0.0 if args.no_arch_adapt else args.lr_alpha))
        if getattr(args, "suite", None):
            from metanas.cli.evaluate import suite

            return suite(args, warm, dist)
        _adapt_one(args, warm, dist)
    finally:
        dist.close()


def evaluate_family(args, warm, dist, family: str, *, progress=True, curve=True, adaptation=None):
    """``family``'s tasks adapted as ``warm`` does (or as ``adaptation`` says): ``(TaskFamily, Evaluation)``."""
    from metanas import api

    return api.evaluate(warm, family, args.tasks, seed=args.seed, adaptation=adaptation, chunk=1 if args.command ==
                        "adapt" else 10, curve=curve, progress=progress and dist.is_main, dist=dist,
                        ways=args.ways, shots=args.shots)


def paired_run(args, warm, dist, family: str, ev, **kw):
    """The same tasks with the architecture fixed: (Evaluation, mean difference, CI half-width) or None."""
    from metanas.estimation.stats import paired_difference

    if not getattr(args, "paired", False) or not warm.adaptation.adapts_arch or not warm.is_supernet:
        return None
    _, fixed = evaluate_family(args, warm, dist, family, adaptation=warm.adaptation.replace(lr_alpha=0.0), **kw)
    return (fixed, *paired_difference(ev, fixed))


def _adapt_one(args, warm, dist) -> None:
    from metanas import api
    from metanas.track.runs import child_tracker

    kind = args.command
    tracker = None if args.no_track or not dist.is_main else child_tracker(
        warm.config, kind, warm.run_id, f"{kind}-{args.task}", **{"metanas.family": args.task})
    family, ev = evaluate_family(args, warm, dist, args.task)
    paired = paired_run(args, warm, dist, args.task, ev)
    if not dist.is_main:  # rank 0 prints and logs for all
        return
    inner = warm.inner_loop()
    archs = api.architectures(warm, ev)
    space = warm.space
    wins = space.choice_wins(archs)
    if kind == "adapt":
        for i, a in enumerate(archs):
            print(f"task {i:3d}: accuracy {100 * ev.accuracies[i]:5.1f}%  {inner.steps} steps  "
                  f"{ev.seconds[i]:.3f} s  {space.describe(a)}")
    else:
        for name, w in wins.items():  # per row (edge, layer): the choice most tasks took, and their fraction
            cols = space.alpha_labels()[name][1]
            print(f"choice wins ({name}, fraction of tasks): " + "  ".join(
                f"{e}:{cols[int(row.argmax())]}={row.max():.2f}" for e, row in enumerate(w)))
    what = "w and alpha" if inner.adapts_arch else "w only (architecture fixed)"
    other = f", {args.ways or family.ways}-way {args.shots or family.shots}-shot" if args.ways or args.shots else ""
    print(f"query accuracy: {ev.summary()}  [{family.name}{other}, {inner.steps} steps on {what}]")
    if paired:
        print(f"architecture fixed, same tasks: {paired[0].summary()}")
        print(f"paired difference (adapted - fixed): {100 * paired[1]:+.2f} ± {100 * paired[2]:.2f} points")
    print(f"time per task: median {ev.seconds.median():.3f} s")
    print(f"accuracy after each step: {' '.join(f'{100 * a:.1f}' for a in ev.curve.mean(0).tolist())}")
    moved = f"; alpha moved to {warm.domain['family']} by adapt-domain" if warm.domain else ""
    print(f"warm start: {warm.path} (run {warm.run_id}{moved})")
    if args.plot:
        print(f"plots: {_plot_adaptation(tracker, args.output_dir, family, warm, archs, ev, args.ways or family.ways)}")
    if tracker:  # the config of what ran: the adaptation settings as given on the command line
        tracker.log_config(replace_config(warm.config, {"inner.eval_steps": inner.steps,
                                                       "inner.eval_lr_alpha": inner.lr_alpha}))
        for step, acc in enumerate(ev.curve.mean(0).tolist()):
            tracker.log_metrics({f"{kind}/accuracy_at_step": acc}, step=step)
        metrics = {f"{kind}/accuracy": ev.mean, f"{kind}/ci95": ev.ci95,
                   f"{kind}/seconds_per_task": ev.seconds.median().item()}
        if paired:
            metrics |= {f"{kind}/paired_gain": paired[1], f"{kind}/paired_gain_ci95": paired[2]}
        tracker.log_metrics(metrics, step=inner.steps)
        tracker.log_dict({"genotypes": [space.dump(a) for a in archs], "accuracies": ev.accuracies.tolist(),
                          "choice_wins": {k: v.tolist() for k, v in wins.items()}}, "adapted_genotypes.json")
        tracker.end()
        print(f"run id: {tracker.run_id}")


def _plot_adaptation(tracker, output_dir, family, warm, archs, ev, ways: int) -> Path:
    """The first task's architecture, choice wins over all tasks, accuracy vs step: saved and logged."""
    from metanas.track import plots

    folder = Path(output_dir) / "plots" / (f"adapt-{tracker.run_id}" if tracker else time.strftime("adapt-%Y%m%d-%H%M%S"))
    figures = {
        "genotype_task0.png": warm.space.draw(
            archs[0], f"{family.name}, task 0: adapted architecture ({100 * ev.accuracies[0]:.0f}% query accuracy)"),
        "op_wins.png": plots.plot_op_wins({family.name: warm.space.choice_wins(archs)}, warm.space.alpha_labels(),
                                          {family.name: len(archs)}),
        "adaptation_curve.png": plots.plot_adaptation_curve(
            ev.curve, f"{family.name}: query accuracy vs adaptation step", ways),
    }
    for name, fig in figures.items():
        if tracker:
            tracker.log_figure(fig, f"plots/{name}")
        plots.save(fig, folder / name)
    return folder.resolve()
