"""``metanas compare``: warm starts of several methods (each from several seeds) adapted to the same tasks of each
family, paired: a table (markdown, CSV) and a figure of the paired differences, logged to one MLflow run
(:mod:`metanas.estimation.compare`)."""

from __future__ import annotations

from metanas.core.errors import MetanasError
from metanas.core.resources import DATA_ROOT_HELP


def register(sub) -> None:
    c = sub.add_parser("compare", help="adapt several methods' warm starts (one per seed) to the same tasks of each "
                       "family: accuracies, paired differences ± 95%% CI against the first method, a plot")
    c.add_argument("--method", action="append", required=True, metavar="NAME=RUN[,RUN...]",
                   help="a method and its warm starts, one per seed (run ids under --output-dir, DIR:RUN_ID, or "
                   "checkpoint paths); repeat; the first method is paired with each other one")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--suite", help="a suite of the first warm start's families: domains (default) or shift")
    where.add_argument("--families", help="comma-separated task families instead of a suite")
    where.add_argument("--as-trained", action="store_true", help="re-test each warm start as its meta-training "
                       "tested it (its family, queries and seed), so the accuracies are the ones it printed")
    where.add_argument("--rank", metavar="VALIDATION:TARGET", help="comma-separated validation families (their "
                       "validation classes) and target families (test classes): does each validation rank the warm "
                       "starts as each target does? (Kendall's tau, the method it picks, what that costs)")
    c.add_argument("--tasks", type=int, default=200, help="tasks per family (default 200)")
    c.add_argument("--validation-tasks", type=int, default=200, help="with --rank: tasks per validation family")
    c.add_argument("--seed", type=int, default=0, help="seed of the tasks (default 0)")
    c.add_argument("--ways", type=int, help="every family's tasks at this many ways (more than a warm start was "
                   "meta-trained on need inner.head=proto)")
    c.add_argument("--shots", type=int, help="every family's tasks at this many shots")
    c.add_argument("--steps", type=int, help="every warm start adapts with this many steps (default: its own)")
    c.add_argument("--lr-alpha", type=float, help="every warm start adapts with this alpha step (default: its own)")
    c.add_argument("--variant", action="append", default=[], metavar="NAME:steps=N,lr_alpha=A",
                   help="another adaptation of the first method, paired with its plain one; repeat")
    c.add_argument("--encoder", type=int, default=0, metavar="N", help="the first method's tasks start from the alpha "
                   "a set encoder predicts from their support images, fitted on N of each warm start's training tasks")
    c.add_argument("--csv", help="also write the table as CSV here")
    c.add_argument("--output-dir", default="runs", help="runs folder with checkpoints/ and mlflow.db")
    c.add_argument("--data-root", help=DATA_ROOT_HELP)
    c.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    c.set_defaults(fn=cmd_compare)


def _changes(option: str, body: str) -> dict:
    """``steps=N,lr_alpha=A`` as :meth:`Adaptation.replace` keywords."""
    types = {"steps": int, "lr_alpha": float}
    out = {}
    for pair in filter(None, body.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or key not in types:
            raise MetanasError(f"{option} {body!r}: give steps=N and/or lr_alpha=A, comma-separated")
        try:
            out[key] = types[key](value)
        except ValueError:
            raise MetanasError(f"{option} {body!r}: {key} must be a number") from None
    if not out:
        raise MetanasError(f"{option} {body!r}: give steps=N and/or lr_alpha=A, comma-separated")
    return out


def _variants(specs: list[str]) -> dict[str, dict]:
    variants = {}
    for spec in specs:
        name, colon, body = spec.partition(":")
        if not name or not colon:
            raise MetanasError(f"--variant {spec!r}: give NAME:steps=N,lr_alpha=A")
        variants[name] = _changes("--variant", body)
    return variants


def load_methods(args) -> dict[str, list]:
    """``--method NAME=RUN[,RUN...]`` as ``{NAME: warm starts}``, each adapting as ``--steps``/``--lr-alpha`` say
    (default: as its checkpoint says)."""
    from metanas import api

    methods = {}
    for spec in args.method:
        name, eq, refs = spec.partition("=")
        if not name or not eq or not refs.strip(","):
            raise MetanasError(f"--method {spec!r}: give NAME=RUN[,RUN...]")
        if name in methods:
            raise MetanasError(f"--method {name} is given twice: give each method one name")
        warms = []
        for ref in filter(None, refs.split(",")):
            folder, _, run = ref.rpartition(":")
            warm = api.load(run, folder or args.output_dir)
            if args.data_root:
                warm = warm.with_config({"data.root": args.data_root})
            warms.append(warm.with_adaptation(warm.adaptation.replace(steps=args.steps, lr_alpha=args.lr_alpha)))
        methods[name] = warms
    return methods


def cmd_compare(args) -> None:
    from metanas.core.tables import markdown
    from metanas.data.suites import suite_families
    from metanas.estimation import compare as cmp

    if args.tasks < 2 or args.validation_tasks < 2:
        raise MetanasError("--tasks and --validation-tasks must be >= 2 (a CI needs two tasks)")
    variants = _variants(args.variant)
    methods = load_methods(args)
    first = next(iter(methods))
    warm0 = methods[first][0]
    seeds = len(methods[first])
    if args.rank:
        validation, colon, targets = args.rank.partition(":")
        if not colon or not validation or not targets:
            raise MetanasError(f"--rank {args.rank!r}: give VALIDATION_FAMILIES:TARGET_FAMILIES, e.g. "
                               "omniglot-5way-shift-val,glyphs-5way:fonts-5way,digits-5way")
        head, rows = cmp.rank(methods, validation.split(","), targets.split(","), tasks=args.validation_tasks,
                              target_tasks=args.tasks, seed=args.seed)
        print(markdown(head, rows))
        return _finish(args, "rank", head, rows, None, warm0)
    encoders = {}
    if args.encoder:
        from metanas.estimation.warm import fit_set_encoder

        for i, warm in enumerate(methods[first]):
            fit = fit_set_encoder(warm, args.encoder)
            print(f"set encoder {i}: {fit.tasks} training tasks, R^2 on {fit.held_out} held out: encoder {fit.r2:.3f}, "
                  f"mean move {fit.mean_r2:.3f}, no move {fit.zero_r2:.3f}", flush=True)
            encoders[id(warm)] = fit.encoder
    if args.as_trained:
        if variants or encoders:
            raise MetanasError("--as-trained re-tests each warm start as it was tested: drop --variant and --encoder")
        result = cmp.compare_as_trained(methods, tasks=args.tasks)
    else:
        families = [(n, "") for n in args.families.split(",")] if args.families else \
            suite_families(args.suite or "domains", warm0.family, warm0.config.task.leave_out)
        size = "".join(f"; {v} {k} each" for k, v in (("ways", args.ways), ("shots", args.shots)) if v)
        print(f"{first} vs {', '.join(list(methods)[1:]) or 'nothing'}; {seeds} seed(s); {args.tasks} tasks per "
              f"family{size}; test seed {args.seed}", flush=True)
        result = cmp.compare(methods, families, tasks=args.tasks, seed=args.seed, variants=variants,
                             encoders=encoders, report=lambda line: print(line, flush=True), ways=args.ways,
                             shots=args.shots)
    if not result.rows:
        raise MetanasError("no family could be evaluated: " + "; ".join(f"{f}: {why}" for f, why in result.skipped.items()))
    head, rows = result.table()
    print(markdown(head, rows))
    _finish(args, "compare", head, rows, result, warm0)


def _finish(args, kind: str, head, rows, result, warm0) -> None:
    """The CSV where asked, and one MLflow run with the table, the figure and the paired differences."""
    from metanas.core.figures import close
    from metanas.core.tables import csv_text, markdown
    from metanas.track.runs import Tracker

    if args.csv:
        with open(args.csv, "w") as f:
            f.write(csv_text(head, rows))
    if args.no_track:
        return
    cfg = warm0.with_config({"run.output_dir": args.output_dir, "run.tracking_uri": None}).config
    tracker = Tracker(cfg, kind, run_name=f"{kind}-{'-'.join(m.partition('=')[0] for m in args.method)}",
                      tags={"metanas.methods": " ".join(args.method)})
    tracker.log_text(markdown(head, rows) + "\n", f"{kind}.md")
    tracker.log_text(csv_text(head, rows), f"{kind}.csv")
    if result is not None:
        from metanas.estimation.compare import paired

        for r in result.rows:
            metrics = {f"{r.family}/{result.first}-{m}": paired(r.accuracies[result.first], r.accuracies[m])[0]
                       for m in result.others}
            if r.fixed is not None:
                metrics[f"{r.family}/arch_gain"] = paired(r.accuracies[result.first], r.fixed)[0]
            tracker.log_metrics(metrics, step=0)
        fig = result.figure()
        tracker.log_figure(fig, "plots/paired_differences.png")
        close(fig)
    tracker.end()
    print(f"run id: {tracker.run_id}")
