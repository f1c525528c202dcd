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
                       "on the meta-learned supernet (random, evolution, reinforce, bohb, darts, nasrl, pnas, bo, nao)")
    h.add_argument("--task", default="omniglot-5way", help="task family name (tasks/NAME.yaml) or YAML path")
    h.add_argument("--strategy", help="random | evolution | reinforce | bohb | darts | nasrl | pnas | bo | nao "
                   "(default evolution); with --compare, a comma-separated subset (default: all)")
    h.add_argument("--warm-from", metavar="RUN_ID[,RUN_ID]", help="start the learned strategies (bo, pnas, nao) "
                   "from the (architecture, score) pairs of earlier metanas search runs (on other task families, "
                   "same space): bo's GP prior mean, pnas's and nao's pre-trained surrogates")
    h.add_argument("--compare", action="store_true", help="run every strategy with the same budget and seed: "
                   "table (markdown + CSV), best-so-far plot, Kendall tau of each learned surrogate")
    h.add_argument("--held-out", type=int, metavar="N", help="children drawn apart from the search and scored on "
                   "the supernet, to rank each learned surrogate's predictions against (Kendall tau; default 20 "
                   "with --compare, 0 otherwise)")
    h.add_argument("--children", metavar="CSV", help="a metanas search --rank-children --csv file: each learned "
                   "surrogate's predictions for its children ranked against their stand-alone accuracy (Kendall tau)")
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
    d = h.add_argument_group("a search over several worker processes (Optuna's shared storage)")
    d.add_argument("--storage", metavar="URL", help="an Optuna RDB storage (sqlite:///FILE, postgresql://...) that "
                   "several metanas search workers share: each runs --strategy, told every worker's results, and "
                   "scores candidates no worker has claimed; all log into one MLflow run")
    d.add_argument("--study", metavar="NAME", help="the study's name in --storage (workers of one search give the same)")
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
    if (args.storage is None) != (args.study is None):
        raise MetanasError("--storage and --study go together: the workers of one search share a study of a storage")
    if args.storage and (args.compare or args.rank_children is not None):
        raise MetanasError("--storage runs one strategy over several workers: not with --compare or --rank-children")
    if args.held_out is not None and args.held_out < 0:
        raise MetanasError(f"--held-out must be >= 0 (got {args.held_out})")
    if args.compare:
        args.strategies = args.strategy.split(",") if args.strategy else None
    elif args.strategy and "," in args.strategy:
        raise MetanasError(f"--strategy {args.strategy}: one strategy, or a list with --compare")
    args.strategy = args.strategy or "evolution"
    for name in (args.strategies or []) if args.compare else [args.strategy]:
        strategy_class(name)  # a typo fails before the checkpoint and the data are loaded
    args.genotype = None
    warm, dist = load_warm_start(args)
    if not warm.is_supernet:
        raise MetanasError(f"{warm.path} is not a supernet warm start (it is the fixed architecture "
                           f"{warm.space.describe(warm.arch)}): search needs a supernet")
    try:
        if args.rank_children is not None:
            _rank(args, warm)
        elif args.storage:
            _distributed(args, warm)
        else:
            _search(args, warm)
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


def _prior(args, cfg, space):
    """The prior of ``--warm-from``'s runs (:mod:`metanas.search.prior`), or ``None``."""
    if not args.warm_from:
        return None
    from metanas.search.prior import load_prior
    from metanas.track.runs import client_for

    return load_prior(client_for(cfg), args.warm_from.split(","), space)


def _tau_table(taus: dict, n_held: int, children_csv: str | None) -> tuple[str, str]:
    """Markdown and CSV: per learned surrogate, Kendall tau against the supernet score of held-out children and
    against the stand-alone accuracy of ``--children``'s."""
    from metanas.core.tables import csv_text, markdown

    names = list(dict.fromkeys(n for by in taus.values() for n in by))
    if not names:
        return "", ""
    fmt = lambda kind, n: (f"{taus[kind][n]['tau']:+.3f} (p {taus[kind][n]['p']:.3f}, {taus[kind][n]['n']})"
                           if n in taus.get(kind, {}) else "–")
    md = markdown(["surrogate", f"Kendall tau vs supernet score ({n_held} held-out children)",
                   f"Kendall tau vs stand-alone ({children_csv or 'no --children'})"],
                  [[n, fmt("supernet", n), fmt("stand_alone", n)] for n in names])
    rows = [[n, kind, t["tau"], t["p"], t["n"]] for kind, by in taus.items() for n, t in by.items()]
    return md, csv_text(["strategy", "against", "kendall_tau", "p", "children"], rows)


def _savings(cold: list, warm: list, budget: float, tasks: int) -> tuple[str, str]:
    """Markdown and CSV: per learned strategy, the evaluations its warm-started run needs to reach the best score
    its cold run found with the whole ``budget`` (and what that saves), and both runs' best."""
    from metanas.core.tables import csv_text, markdown
    from metanas.search.strategies import evaluations_to_reach

    rows = []
    for w in warm:
        c = next(r for r in cold if r.strategy == w.strategy.removesuffix("-warm"))
        reach = evaluations_to_reach(w.trials, tasks, c.best.score)
        rows.append([c.strategy, c.best.score, w.best.score, reach, None if reach is None else budget - reach])
    md = markdown(["strategy", "cold: best validation", "warm: best validation", "warm: evaluations to the cold best",
                   f"evaluations saved (of {budget:g})"],
                  [[n, f"{100 * cb:.2f}%", f"{100 * wb:.2f}%", "not reached" if r is None else f"{r:g}",
                    "–" if s is None else f"{s:g}"] for n, cb, wb, r, s in rows])
    return md, csv_text(["strategy", "cold_best", "warm_best", "warm_evaluations_to_cold_best", "evaluations_saved",
                         "budget"], [[*row, budget] for row in rows])


def _curves(results: list, tasks: int) -> str:
    """CSV: per strategy and candidate, evaluations spent and the best validation score so far."""
    from metanas.core.tables import csv_text
    from metanas.search.strategies import best_so_far

    return csv_text(["strategy", "evaluations", "score", "best"],
                    [[r.strategy, round(t.spent, 4), round(t.score, 4), round(b, 4)] for r in results
                     for t, b in zip(r.trials, best_so_far(r.trials, tasks))])


def _tagged(csv: str, family: str, seed: int, warm_from: str) -> str:
    """``csv`` with the family, seed and prior runs as first columns: files of several searches concatenate."""
    import csv as csvlib
    import io

    rows = list(csvlib.reader(io.StringIO(csv)))
    out = io.StringIO()
    w = csvlib.writer(out, lineterminator="\n")
    w.writerow(["family", "seed", "warm_from", *rows[0]])
    w.writerows([family, seed, warm_from, *row] for row in rows[1:])
    return out.getvalue()


def _search(args, warm) -> None:
    from metanas.core.figures import save as save_figure
    from metanas.search.plots import plot_search_progress
    from metanas.data import get_tasksets, load_family
    from metanas.search.driver import (held_out_children, mean_random_child, read_children, run_strategies,
                                       surrogate_taus, table)
    from metanas.search.strategies import STRATEGIES, best_so_far, strategy_class
    from metanas.track.runs import child_tracker

    cfg, space = warm.config, warm.space
    family = load_family(args.task)
    warm.check_family(family)
    # query size of meta-training (task.queries): scoring the query set is most of a child's cost
    sets = get_tasksets(family, cfg.data.root, queries=cfg.task.queries, skip_corrupt=cfg.data.skip_corrupt,
                        warm_format=warm.image)
    names = (args.strategies or list(STRATEGIES)) if args.compare else [args.strategy]
    if not args.compare and args.strategy != "darts":
        names.append("darts")  # the meta-learned alpha's argmax, the reference every search is compared with
    children = read_children(args.children, space) if args.children else None
    prior = _prior(args, cfg, space)
    max_flops = None if args.max_mflops is None else 1e6 * args.max_mflops
    run = lambda names, prior: run_strategies(names, warm, sets, args.budget, args.val_tasks, args.test_tasks,
                                              args.steps, args.seed, progress=True, max_flops=max_flops, prior=prior)
    # --compare with a prior: every strategy cold, then each learned one again from the prior (NAME-warm)
    results = run(names, None if args.compare else prior)
    savings = ""
    if prior is not None and args.compare:
        warm_results = run([n for n in names if getattr(strategy_class(n), "uses_prior", False)], prior)
        for r in warm_results:
            r.strategy += "-warm"
        savings = _savings(results, warm_results, args.budget, args.val_tasks)
        results += warm_results
    if prior is not None:
        used = [r.strategy for r in results if r.from_prior]
        print(f"warm start: {len(prior)} architectures of {args.warm_from} given to "
              f"{', '.join(used) if used else 'no strategy (only bo, pnas and nao learn a surrogate)'}")
    n_held = args.held_out if args.held_out is not None else (20 if args.compare else 0)
    taus, random_child = {}, None
    if n_held:
        held = held_out_children(warm, sets, n_held, args.val_tasks, args.steps, args.seed)
        taus["supernet"] = surrogate_taus(results, held)
        # the winners' baseline: the held-out (uniformly drawn) children on the same test tasks
        random_child = mean_random_child(warm, sets, [x for x, _ in held], args.test_tasks, args.steps, args.seed)
    md, csv_text = table(results, space, args.budget, args.val_tasks, args.test_tasks, random_child)
    print(md)
    if children:
        taus["stand_alone"] = surrogate_taus(results, children)
    tau_md, tau_csv = _tau_table(taus, n_held, args.children)
    if tau_md:
        print(f"\nlearned surrogates ranked against measured scores (Kendall tau, p, children):\n{tau_md}")
    if savings:
        print(f"\nwhat the warm start saves: evaluations the warm search needs to reach the cold search's best "
              f"validation score of its whole budget:\n{savings[0]}")
    main = results[0]
    if not args.compare:
        derived = next(r for r in results if r.strategy == "darts")
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
    (folder / "table.csv").write_text(_tagged(csv_text, family.name, args.seed, args.warm_from or ""))
    tagged = lambda text: _tagged(text, family.name, args.seed, args.warm_from or "")
    (folder / "curves.csv").write_text(tagged(_curves(results, args.val_tasks)))
    if tau_md:
        (folder / "surrogates.md").write_text(tau_md + "\n")
        (folder / "surrogates.csv").write_text(tagged(tau_csv))
    if savings:
        (folder / "savings.csv").write_text(tagged(savings[1]))
    print(f"best genotype file: {best_file.resolve()}  (metanas adapt --genotype FILE)")
    print(f"table and plots: {folder.resolve()}")
    if tracker:
        tracker.log_config(cfg)
        for r in results:
            curve = best_so_far(r.trials, args.val_tasks)
            for i, (t, b) in enumerate(zip(r.trials, curve)):
                m = {f"search/{r.strategy}/score": t.score, f"search/{r.strategy}/spent": t.spent}
                tracker.log_metrics(m | ({f"search/{r.strategy}/best": b} if b == b else {}), step=i)
            if random_child is not None:
                tracker.log_metrics({f"search/{r.strategy}/over_random_child": float((r.test.accuracies
                                                                                      - random_child).mean())}, step=0)
            tracker.log_metrics({f"search/{r.strategy}/test_accuracy": r.test.mean,
                                 f"search/{r.strategy}/test_ci95": r.test.ci95,
                                 f"search/{r.strategy}/seconds": r.seconds}, step=0)
            tracker.log_dict({"strategy": r.strategy, "best": space.dump(r.best.genotype),
                              "best_validation": r.best.score, "test_accuracy": r.test.accuracies.tolist(),
                              "trials": [{"genotype": space.dump(t.genotype), "score": t.score, "tasks": t.tasks,
                                          "spent": t.spent, "seconds": t.seconds} for t in r.trials], **r.extra},
                             f"search/{r.strategy}.json")
        for kind, by_strategy in taus.items():
            for name, t in by_strategy.items():
                tracker.log_metrics({f"search/{name}/tau_{kind}": t["tau"], f"search/{name}/tau_{kind}_p": t["p"]},
                                    step=0)
        for f in (best_file, folder / "table.md", folder / "table.csv", folder / "surrogates.csv",
                  folder / "curves.csv", folder / "savings.csv"):
            if f.exists():
                tracker.log_artifact(f, "search")
        tracker.end()
        print(f"run id: {tracker.run_id}")


def _distributed(args, warm) -> None:
    """``--storage URL --study NAME``: one worker of a search shared by several processes
    (:mod:`metanas.search.distributed`)."""
    import os

    from metanas.data import get_tasksets, load_family
    from metanas.search.distributed import SharedStudy, work
    from metanas.search.driver import scorers
    from metanas.search.strategies import best, best_so_far, strategy_class
    from metanas.track.runs import child_tracker, client_for, retry

    cfg, space = warm.config, warm.space
    if args.budget != int(args.budget):
        raise MetanasError(f"--budget with --storage counts candidates: a whole number (got {args.budget:g})")
    family = load_family(args.task)
    warm.check_family(family)
    sets = get_tasksets(family, cfg.data.root, queries=cfg.task.queries, skip_corrupt=cfg.data.skip_corrupt,
                        warm_format=warm.image)
    encoding = space.encoding()
    study = SharedStudy(args.storage, args.study, encoding, space)
    # the tasks are the study's (--seed: every worker scores on the same ones); proposals are the worker's own
    seed = args.seed if study.created else args.seed + 1 + os.getpid() % 100_000
    strategy = strategy_class(args.strategy)(encoding, seed, **({"prior": _prior(args, cfg, space)}
                                                                if args.warm_from else {}))
    scorer, tester = scorers(warm, sets, args.val_tasks, args.test_tasks, args.steps, args.seed)
    tracker, log = None, None
    if not args.no_track:
        if study.created:
            tracker = child_tracker(cfg, "search", warm.run_id, f"search-{args.strategy}-{family.name}-{args.study}",
                                    **{"metanas.family": family.name, "metanas.strategies": args.strategy,
                                       "metanas.study": args.study})
            study.set_run(tracker.run_id)
            run_id, client = tracker.run_id, tracker.client
        else:  # log into the first worker's run without touching its status (it ends the run)
            run_id, client = study.run_id(), client_for(cfg)
        log = lambda number, score: retry(client.log_metric, run_id, f"search/{args.strategy}/score", score,
                                          step=number)
    n = work(strategy, scorer, study, int(args.budget), log=log)
    print(f"worker {study.worker}: scored {n} candidates of study {args.study}")
    if not study.created:
        return
    study.wait_for_others()
    trials = study.results(args.val_tasks)
    top = best(trials, args.val_tasks)
    test = tester.evaluate(top.genotype)
    workers = {t.user_attrs.get("metanas.worker") for t in study.trials((study.states.COMPLETE,))}
    print(f"study {args.study}: {len(trials)} candidates scored by {len(workers)} workers; best "
          f"{100 * top.score:.2f}% validation ({args.val_tasks} tasks): {space.describe(top.genotype)}")
    print(f"test accuracy: {test.summary()}")
    if tracker:
        for i, b in enumerate(best_so_far(trials, args.val_tasks)):
            tracker.log_metrics({f"search/{args.strategy}/best": b}, step=i)
        tracker.log_metrics({f"search/{args.strategy}/test_accuracy": test.mean,
                             f"search/{args.strategy}/test_ci95": test.ci95,
                             f"search/{args.strategy}/workers": len(workers)}, step=0)
        tracker.log_dict({"strategy": args.strategy, "study": args.study, "best": space.dump(top.genotype),
                          "best_validation": top.score, "test_accuracy": test.accuracies.tolist(),
                          "trials": [{"genotype": space.dump(t.genotype), "score": t.score, "tasks": t.tasks,
                                      "spent": t.spent, "seconds": t.seconds} for t in trials]},
                         f"search/{args.strategy}.json")
        tracker.end()
        print(f"run id: {tracker.run_id}")
