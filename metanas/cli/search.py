"""``metanas search``: discrete search strategies on a meta-learned supernet, for one task family.

The command line over :mod:`metanas.search.driver` (arguments, printing, files, tracking): candidates are scored on
*validation* tasks only; the winner (and the warm start's own argmax genotype, for comparison) is then scored
on fresh *test* tasks of disjoint classes, which the search never saw.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from metanas.cli.common import add_warm_start_args, load_warm_start
from metanas.core.errors import MetanasError
from metanas.core.resources import DATA_ROOT_HELP


def register(sub) -> None:
    h = sub.add_parser("search", help="search an architecture for a task family with a discrete strategy, scored "
                       "on the meta-learned supernet (random, evolution, reinforce, bohb, darts)")
    h.add_argument("--task", default="omniglot-5way", help="task family name (tasks/NAME.yaml) or YAML path")
    h.add_argument("--strategy", default="evolution",
                   help="random | evolution | reinforce | bohb | darts | nasrl | pnas | bo | nao (default evolution)")
    h.add_argument("--warm-from", metavar="RUN_ID[,RUN_ID]", help="warm-start the bo strategy's GP with the "
                   "(architecture, score) pairs of earlier metanas search runs (on other task families, same space)")
    h.add_argument("--compare", action="store_true", help="run every strategy with the same budget and seed: "
                   "table (markdown + CSV) and best-so-far plot")
    h.add_argument("--budget", type=float, default=200, help="evaluations per strategy: one = one candidate adapted "
                   "and scored on all --val-tasks validation tasks (default 200)")
    h.add_argument("--max-mflops", type=float, help="cost budget: candidates above this many MFLOPs per image are "
                   "not scored (they score 0 and cost no evaluation)")
    h.add_argument("--val-tasks", type=int, default=20, help="validation tasks a candidate is scored on (default 20)")
    h.add_argument("--test-tasks", type=int, default=600, help="fresh test tasks for the winner (default 600)")
    add_warm_start_args(h)
    h.add_argument("--steps", type=int, help="adaptation steps per task (default: the checkpoint's inner.eval_steps)")
    h.add_argument("--seed", type=int, default=0, help="seed of the strategies and of the tasks")
    h.add_argument("--data-root", help=DATA_ROOT_HELP)
    h.add_argument("--device", default="auto")
    h.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    r = h.add_argument_group("ranking the search estimator (--rank-children)")
    r.add_argument("--rank-children", type=int, metavar="N", help="instead of searching: score N random children, the "
                   "searched one (evolution, --budget evaluations) and the argmax one both by weight sharing "
                   "(--val-tasks) and by meta-training each alone (--test-tasks); Kendall tau between the two")
    r.add_argument("--child-iterations", type=int, default=300, help="stand-alone meta-iterations per child (300)")
    r.add_argument("--child-override", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for the stand-alone meta-training (repeatable)")
    r.add_argument("--csv", help="with --rank-children: also write the rows as CSV here")
    h.set_defaults(fn=cmd_search)


def cmd_search(args) -> None:
    from metanas.search.strategies import strategy_class

    if args.budget <= 0 or args.val_tasks < 1 or args.test_tasks < 2:
        raise MetanasError("--budget must be > 0, --val-tasks >= 1 and --test-tasks >= 2")
    if not args.compare:
        strategy_class(args.strategy)  # a typo fails before the checkpoint and the data are loaded
    args.genotype = None
    warm, dist = load_warm_start(args)
    if not warm.is_supernet:
        raise MetanasError(f"{warm.path} is not a supernet warm start (it is the fixed architecture "
                           f"{warm.space.describe(warm.arch)}): search needs a supernet")
    try:
        _rank(args, warm) if args.rank_children is not None else _search(args, warm)
    finally:
        dist.close()


def _rank(args, warm) -> None:
    """``--rank-children``: weight-sharing scores against stand-alone meta-training (:mod:`metanas.search.ranking`)."""
    from metanas.search.ranking import rank_children

    result = rank_children(warm, children=args.rank_children, iterations=args.child_iterations,
                           val_tasks=args.val_tasks, test_tasks=args.test_tasks, search_budget=args.budget,
                           seed=args.seed, output_dir=args.output_dir, overrides=args.child_override,
                           report=lambda line: print(line, flush=True))
    print(result.markdown(args.test_tasks))
    c = result.correlations()
    print(f"{len(result.children)} children: Kendall tau {c['tau']:+.3f} (p = {c['p_tau']:.3f}), Spearman rho "
          f"{c['rho']:+.3f} (p = {c['p_rho']:.3f})")
    for kind in ("searched", "argmax"):
        mean, ci = result.over_random(kind)
        i = next(j for j, child in enumerate(result.children) if child.kind == kind)
        print(f"{kind} child minus the mean random child, paired over {args.test_tasks} tasks: "
              f"{100 * mean:+.2f} ± {100 * ci:.2f} points (stand-alone rank {result.rank(i)} of {len(result.children)})")
    if args.csv:
        Path(args.csv).write_text(result.csv())
    if not args.no_track:
        from metanas.track.runs import child_tracker

        tracker = child_tracker(warm.config, "search", warm.run_id, "search-rank-children")
        tracker.log_text(result.csv(), "search/ranking.csv")
        tracker.log_metrics({"ranking/kendall_tau": c["tau"], "ranking/spearman_rho": c["rho"],
                             "ranking/searched_over_random": result.over_random("searched")[0]}, step=0)
        tracker.end()
        print(f"run id: {tracker.run_id}")


def _search(args, warm) -> None:
    from metanas.core.figures import save as save_figure
    from metanas.search.plots import plot_search_progress
    from metanas.data import get_tasksets, load_family
    from metanas.search.driver import run_strategies, table
    from metanas.search.strategies import STRATEGIES, best_so_far
    from metanas.track.runs import child_tracker

    cfg, space = warm.config, warm.space
    family = load_family(args.task)
    warm.check_family(family)
    # query size of meta-training (task.queries): scoring the query set is most of a child's cost
    sets = get_tasksets(family, cfg.data.root, queries=cfg.task.queries, skip_corrupt=cfg.data.skip_corrupt,
                        warm_format=warm.image)
    if args.warm_from:  # bo starts from earlier searches' pairs (prior observations of its GP)
        from mlflow.tracking import MlflowClient

        from metanas.search.literature import search_pairs, warm_bo
        from metanas.track.runs import tracking_uri

        pairs = search_pairs(MlflowClient(tracking_uri(cfg)), args.warm_from.split(","), space)
        STRATEGIES.register(warm_bo(pairs), name="bo")
        print(f"bo warm-started with {len(pairs)} (architecture, score) pairs of {args.warm_from}")
    names = list(STRATEGIES) if args.compare else [args.strategy]
    if not args.compare and args.strategy != "darts":
        names.append("darts")  # the meta-learned alpha's argmax, the reference every search is compared with
    max_flops = None if args.max_mflops is None else 1e6 * args.max_mflops
    results = run_strategies(names, warm, sets, args.budget, args.val_tasks, args.test_tasks, args.steps,
                             args.seed, progress=True, max_flops=max_flops)
    md, csv_text = table(results, space, args.budget, args.val_tasks, args.test_tasks)
    print(md)
    main, derived = results[0], next(r for r in results if r.strategy == "darts")
    if not args.compare:
        print(f"best genotype ({main.strategy}, {len(main.trials)} candidates, {main.trials[-1].spent:.1f} "
              f"evaluations): {space.describe(main.best.genotype)}")
        print(f"validation score: {100 * main.best.score:.2f}% ({args.val_tasks} tasks)")
        print(f"test accuracy: {main.test.summary()}  vs the warm start's argmax genotype: {derived.test.summary()} "
              f"(difference {100 * (main.test.mean - derived.test.mean):+.2f} points, same test tasks)")
    figures = {"best_genotype.png": space.draw(
        main.best.genotype, f"{main.strategy} on {family.name}: best architecture ({100 * main.best.score:.1f}% validation)"),
        "search_progress.png": plot_search_progress({r.strategy: r.trials for r in results}, args.val_tasks,
                                                          f"{family.name}, budget {args.budget:g} evaluations")}
    tracker = None
    if not args.no_track:
        tracker = child_tracker(cfg, "search", warm.run_id,
                                f"search-{'compare' if args.compare else args.strategy}-{family.name}",
                                **{"metanas.family": family.name, "metanas.strategies": ",".join(names)})
    folder = Path(args.output_dir) / "plots" / (f"search-{tracker.run_id}" if tracker
                                                 else time.strftime("search-%Y%m%d-%H%M%S"))
    for name, fig in figures.items():
        if tracker:
            tracker.log_figure(fig, f"plots/{name}")
        save_figure(fig, folder / name)
    best_file = folder / "best_genotype.json"
    best_file.write_text(json.dumps(space.dump(main.best.genotype), indent=1) + "\n")
    (folder / "table.md").write_text(md + "\n")
    (folder / "table.csv").write_text(csv_text)
    print(f"best genotype file: {best_file.resolve()}  (metanas adapt --genotype FILE)")
    print(f"table and plots: {folder.resolve()}")
    if tracker:
        tracker.log_config(cfg)
        for r in results:
            curve = best_so_far(r.trials, args.val_tasks)
            for i, (t, b) in enumerate(zip(r.trials, curve)):
                m = {f"search/{r.strategy}/score": t.score, f"search/{r.strategy}/spent": t.spent}
                tracker.log_metrics(m | ({f"search/{r.strategy}/best": b} if b == b else {}), step=i)
            tracker.log_metrics({f"search/{r.strategy}/test_accuracy": r.test.mean,
                                 f"search/{r.strategy}/test_ci95": r.test.ci95,
                                 f"search/{r.strategy}/seconds": r.seconds}, step=0)
            tracker.log_dict({"strategy": r.strategy, "best": space.dump(r.best.genotype),
                              "best_validation": r.best.score, "test_accuracy": r.test.accuracies.tolist(),
                              "trials": [{"genotype": space.dump(t.genotype), "score": t.score, "tasks": t.tasks,
                                          "spent": t.spent, "seconds": t.seconds} for t in r.trials], **r.extra},
                             f"search/{r.strategy}.json")
        for f in (best_file, folder / "table.md", folder / "table.csv"):
            tracker.log_artifact(f, "search")
        tracker.end()
        print(f"run id: {tracker.run_id}")
