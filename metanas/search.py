"""``metanas search``: discrete search strategies on a meta-learned supernet, for one task family.

Search space (``metanas.space``), search strategy (``metanas.strategy.discrete``)
and performance estimation (``metanas.estimation.ChildNetScorer``) meet here:
candidates are scored on *validation* tasks only; the winner (and the warm
start's own argmax genotype, for comparison) is then scored on fresh *test*
tasks of disjoint classes, which the search never saw.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from metanas.errors import MetanasError
from metanas.estimation import ChildNetScorer, Evaluation
from metanas.space import Network, genotype_str, genotype_to_json
from metanas.space.encoding import GenotypeEncoding
from metanas.strategy.discrete import STRATEGIES, Trial, best, best_so_far, search, strategy_class


@dataclass
class SearchResult:
    strategy: str
    trials: list[Trial]
    best: Trial
    test: Evaluation  # the best genotype on the test tasks
    seconds: float  # search wall clock (test scoring excluded)
    extra: dict = field(default_factory=dict)


def scorers(model, params, cfg, sets, val_tasks: int, test_tasks: int, steps: int, seed: int, device="cpu"):
    """Weight-sharing scorers of a genotype: on ``val_tasks`` of ``sets.validation`` (the search's) and on
    ``test_tasks`` fresh tasks of ``sets.test`` (the winner's report)."""
    from metanas.checkpoint import child_of
    from metanas.strategy import MetaLearner

    if sets.validation is None or sets.test is None:
        raise MetanasError("this task family has no validation or no test split (search scores candidates on "
                           "validation tasks and reports on test tasks): search a family with train/validation/test "
                           "classes, e.g. omniglot-5way")
    ways = sets.test.ways
    build = lambda g: child_of(cfg, params, g, ways)
    inner = MetaLearner(model, cfg, ways).inner_kwargs(alpha_frozen=True, steps=steps)  # a child has no alpha
    return (ChildNetScorer(build, sets.validation, val_tasks, inner, seed, device),
            ChildNetScorer(build, sets.test, test_tasks, inner, seed + 1, device))


def run_strategies(names: list[str], model, params, cfg, sets, budget: float, val_tasks: int, test_tasks: int,
                   steps: int, seed: int, device="cpu", progress: bool = False) -> list[SearchResult]:
    """Each strategy with the same budget, seed and validation tasks; each winner scored on the same test tasks."""
    from tqdm import tqdm

    encoding = GenotypeEncoding(cfg.search.ops, cfg.search.nodes, cfg.search.k)
    warm = model.derive(params, cfg.search.k)
    classes = [strategy_class(name) for name in names]  # every name checked before any work
    results = []
    for name, cls in zip(names, classes):
        scorer, tester = scorers(model, params, cfg, sets, val_tasks, test_tasks, steps, seed, device)
        strategy = cls(encoding, seed, **({"genotype": warm} if name == "darts" else {}))
        bar = tqdm(total=budget, desc=f"search {name}", disable=not progress, leave=False,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total} evaluations [{elapsed}<{remaining}{postfix}]")
        top_score = [float("nan")]

        def show(trial, bar=bar, top_score=top_score):
            if trial.tasks == val_tasks and not trial.score <= top_score[0]:
                top_score[0] = trial.score
                bar.set_postfix(best=f"{100 * trial.score:.1f}%", refresh=False)
            bar.update(trial.spent - bar.n)

        t0 = time.perf_counter()
        trials = search(strategy, scorer, budget, progress=show)
        seconds = time.perf_counter() - t0
        bar.close()
        top = best(trials, val_tasks)
        extra = {"probabilities": strategy.probabilities()} if hasattr(strategy, "probabilities") else {}
        results.append(SearchResult(name, trials, top, tester.evaluate(top.genotype), seconds, extra))
    return results


def table(results: list[SearchResult], budget: float, val_tasks: int, test_tasks: int) -> tuple[str, str]:
    """Markdown and CSV: strategy, evaluations, best validation score, test accuracy ± CI, wall clock."""
    head = ["strategy", "evaluations", "candidates", f"best validation ({val_tasks} tasks)",
            f"test accuracy ± 95% CI ({test_tasks} tasks)", "search s", "genotype"]
    rows = [[r.strategy, f"{r.trials[-1].spent:.1f}", str(len(r.trials)), f"{100 * r.best.score:.2f}%",
             f"{100 * r.test.mean:.2f} ± {100 * r.test.ci95:.2f}%", f"{r.seconds:.0f}", genotype_str(r.best.genotype)]
            for r in results]
    md = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["strategy", "evaluations", "candidates", "best_validation", "test_accuracy", "test_ci95",
                "search_seconds", "genotype"])
    for r in results:
        w.writerow([r.strategy, r.trials[-1].spent, len(r.trials), r.best.score, r.test.mean, r.test.ci95,
                    r.seconds, json.dumps(genotype_to_json(r.best.genotype))])
    return md, buf.getvalue()


def cmd_search(args) -> None:
    from metanas.cli import _warm_start

    if args.budget <= 0 or args.val_tasks < 1 or args.test_tasks < 2:
        raise MetanasError("--budget must be > 0, --val-tasks >= 1 and --test-tasks >= 2")
    if not args.compare:
        strategy_class(args.strategy)  # a typo fails before the checkpoint and the data are loaded
    path, state, model, cfg, dist = _warm_start(args)
    if not isinstance(model, Network) or not model.is_supernet:
        raise MetanasError(f"{path} is not a DARTS supernet warm start (it is {cfg.search.space}"
                           f"{', a fixed genotype' if cfg.search.genotype else ''}): search needs a supernet")
    try:
        _search(args, path, state, model, cfg, dist)
    finally:
        dist.close()


def _search(args, path, state, model, cfg, dist) -> None:
    from metanas import plots
    from metanas.cli import family_for
    from metanas.data import get_tasksets
    from metanas.meta_train import eval_steps
    from metanas.tracking import PARENT, Tracker

    family = family_for(state, args.task, path)
    # query size of meta-training (task.queries): scoring the query set is most of a child's cost
    sets = get_tasksets(family, cfg.data.root, queries=cfg.task.queries, skip_corrupt=cfg.data.skip_corrupt)
    params = {k: v.detach() for k, v in model.named_parameters()}
    steps = eval_steps(cfg)
    names = list(STRATEGIES) if args.compare else [args.strategy]
    if not args.compare and args.strategy != "darts":
        names.append("darts")  # the meta-learned alpha's argmax, the reference every search is compared with
    results = run_strategies(names, model, params, cfg, sets, args.budget, args.val_tasks, args.test_tasks, steps,
                             args.seed, dist.device, progress=True)
    md, csv_text = table(results, args.budget, args.val_tasks, args.test_tasks)
    print(md)
    main, warm = results[0], next(r for r in results if r.strategy == "darts")
    if not args.compare:
        print(f"best genotype ({main.strategy}, {len(main.trials)} candidates, {main.trials[-1].spent:.1f} "
              f"evaluations): {genotype_str(main.best.genotype)}")
        print(f"validation score: {100 * main.best.score:.2f}% ({args.val_tasks} tasks, {steps} steps)")
        print(f"test accuracy: {main.test.summary()}  vs the warm start's argmax genotype: {warm.test.summary()} "
              f"(difference {100 * (main.test.mean - warm.test.mean):+.2f} points, same test tasks)")
    figures = {"best_genotype.png": plots.plot_genotype(
        main.best.genotype, f"{main.strategy} on {family.name}: best genotype ({100 * main.best.score:.1f}% validation)",
        cfg.search.ops),
        "search_progress.png": plots.plot_search_progress({r.strategy: r.trials for r in results}, args.val_tasks,
                                                          f"{family.name}, budget {args.budget:g} evaluations")}
    tracker = None
    if not args.no_track:
        tracker = Tracker(cfg, "search", run_name=f"search-{'compare' if args.compare else args.strategy}-{family.name}",
                          tags={PARENT: state["run_id"], "metanas.warm_start": state["run_id"],
                                "metanas.family": family.name, "metanas.strategies": ",".join(names)})
    folder = Path(args.output_dir) / "plots" / (f"search-{tracker.run_id}" if tracker
                                                 else time.strftime("search-%Y%m%d-%H%M%S"))
    for name, fig in figures.items():
        if tracker:
            tracker.log_figure(fig, f"plots/{name}")
        plots.save(fig, folder / name)
    best_file = folder / "best_genotype.json"
    best_file.write_text(json.dumps(genotype_to_json(main.best.genotype), indent=1) + "\n")
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
            tracker.log_dict({"strategy": r.strategy, "best": genotype_to_json(r.best.genotype),
                              "best_validation": r.best.score, "test_accuracy": r.test.accuracies.tolist(),
                              "trials": [{"genotype": genotype_to_json(t.genotype), "score": t.score, "tasks": t.tasks,
                                          "spent": t.spent, "seconds": t.seconds} for t in r.trials], **r.extra},
                             f"search/{r.strategy}.json")
        for f in (best_file, folder / "table.md", folder / "table.csv"):
            tracker.log_artifact(f, "search")
        tracker.end()
        print(f"run id: {tracker.run_id}")
