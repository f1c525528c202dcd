"""The ``metanas`` command: ``train``, ``adapt``, ``evaluate``, ``search``, ``export``, ``predict``, ``register``,
``runs``, ``tasks``, ``ui``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from metanas.errors import MetanasError, exit_on_error


def latest_checkpoint(output_dir: str) -> Path:
    found = sorted((Path(output_dir) / "checkpoints").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise MetanasError(f"no checkpoint under {Path(output_dir).resolve()}/checkpoints: run "
                           "python -m metanas.meta_train first, or pass --checkpoint PATH / --run-id ID")
    return found[-1]


def resolve_checkpoint(args) -> Path:
    if getattr(args, "model", None):
        from metanas.registry import fetch_warm_start

        return fetch_warm_start(args.model, args.output_dir)
    if args.checkpoint:
        return Path(args.checkpoint)
    if args.run_id:
        return Path(args.output_dir) / "checkpoints" / f"{args.run_id}.pt"
    return latest_checkpoint(args.output_dir)


def _warm_start(args):
    """The checkpoint named by the arguments, its model, its config with the command-line changes, and the
    process group: under torchrun the test tasks are split across ranks (every rank reads the checkpoint)."""
    from metanas import distributed
    from metanas.checkpoint import child_of, load_checkpoint, model_from_checkpoint, read_genotype
    from metanas.runtime import seed_everything

    path = resolve_checkpoint(args)
    state = load_checkpoint(path)
    model, cfg = model_from_checkpoint(state, path)
    cfg.run.output_dir = args.output_dir
    cfg.run.device = args.device
    if args.data_root:
        cfg.data.root = args.data_root
    if args.steps is not None:
        cfg.inner.eval_steps = args.steps
    if args.no_arch_adapt:  # baseline: meta-learned alpha, weights adapted, architecture not
        cfg.inner.lr_alpha = 0.0
    if getattr(args, "genotype", None):  # a fixed architecture (e.g. from metanas search): weights only
        model = child_of(cfg, dict(model.named_parameters()), read_genotype(args.genotype), state["ways"])
        cfg.inner.lr_alpha = 0.0
    dist = distributed.init(cfg)
    seed_everything(args.seed)
    return path, state, model.to(dist.device), cfg, dist


def family_for(state: dict, name: str, path):
    """Task family ``name``, checked against the ways the warm start at ``path`` was meta-trained for."""
    from metanas.data import load_family

    family = load_family(name)
    if family.ways != state["ways"]:
        raise MetanasError(f"the warm start {path} was meta-trained for {state['ways']}-way tasks but "
                           f"{family.name} is {family.ways}-way: pick a {state['ways']}-way family or meta-train "
                           f"with task.family={family.name}")
    return family


def _adapt_family(args, path, state, model, cfg, dist, name: str, progress: bool = True, curve: bool = True):
    """Adapt the warm start to ``args.tasks`` test tasks of family ``name``: (family, Evaluation, genotypes, steps).

    ``curve``: also score the query set before and after every step (steps + 1 query forwards per task, not 1)."""
    import torch

    from metanas.data import get_tasksets
    from metanas.estimation import evaluate
    from metanas.meta_train import eval_steps
    from metanas.strategy import MetaLearner

    family = family_for(state, name, path)
    sets = get_tasksets(family, cfg.data.root, skip_corrupt=cfg.data.skip_corrupt)
    learner = MetaLearner(model, cfg, family.ways)
    steps = eval_steps(cfg)
    ev = evaluate(model, learner.params(), sets.test, args.tasks, learner.inner_kwargs(steps=steps),
                  torch.Generator().manual_seed(args.seed), chunk=1 if args.command == "adapt" else 10, curve=curve,
                  progress=progress and dist.is_main, device=dist.device, dist=dist)
    genotypes = [model.derive({k: v[i] for k, v in ev.alphas.items()}, cfg.search.k) for i in range(args.tasks)]
    return family, ev, genotypes, steps


def cmd_adapt(args) -> None:
    """``adapt`` (a few tasks, one at a time, every task shown) and ``evaluate`` (many tasks, batched, summary)."""
    warm = _warm_start(args)
    try:
        if getattr(args, "suite", None):
            return _suite(args, *warm)
        _adapt_one(args, *warm)
    finally:
        warm[-1].close()


def _adapt_one(args, path, state, model, cfg, dist) -> None:
    from metanas.estimation import op_wins
    from metanas.space import genotype_str, genotype_to_json
    from metanas.tracking import PARENT, Tracker

    kind = args.command
    tracker = None if args.no_track or not dist.is_main else Tracker(
        cfg, kind, run_name=f"{kind}-{args.task}",
        tags={PARENT: state["run_id"], "metanas.warm_start": state["run_id"], "metanas.family": args.task})
    family, ev, genotypes, steps = _adapt_family(args, path, state, model, cfg, dist, args.task)
    if not dist.is_main:  # rank 0 prints and logs for all
        return
    wins = op_wins(ev.alphas)
    if kind == "adapt":
        for i, g in enumerate(genotypes):
            print(f"task {i:3d}: accuracy {100 * ev.accuracies[i]:5.1f}%  {steps} steps  "
                  f"{ev.seconds[i]:.3f} s  {genotype_str(g)}")
    else:
        for name, w in wins.items():
            print(f"op wins per edge ({name}, fraction of tasks): " + "  ".join(
                f"e{e}:{cfg.search.ops[int(row.argmax())]}={row.max():.2f}" for e, row in enumerate(w)))
    what = "w and alpha" if cfg.inner.lr_alpha else "w only (architecture fixed)"
    print(f"query accuracy: {ev.summary()}  [{family.name}, {steps} steps on {what}]")
    print(f"time per task: median {ev.seconds.median():.3f} s")
    print(f"accuracy after each step: {' '.join(f'{100 * a:.1f}' for a in ev.curve.mean(0).tolist())}")
    print(f"warm start: {path} (run {state['run_id']})")
    if args.plot:
        print(f"plots: {_plot_adaptation(tracker, args.output_dir, family, cfg, genotypes, ev)}")
    if tracker:
        tracker.log_config(cfg)
        for step, acc in enumerate(ev.curve.mean(0).tolist()):
            tracker.log_metrics({f"{kind}/accuracy_at_step": acc}, step=step)
        tracker.log_metrics({f"{kind}/accuracy": ev.mean, f"{kind}/ci95": ev.ci95,
                             f"{kind}/seconds_per_task": ev.seconds.median().item()}, step=steps)
        tracker.log_dict({"genotypes": [genotype_to_json(g) for g in genotypes], "accuracies": ev.accuracies.tolist(),
                          "op_wins": {k: v.tolist() for k, v in wins.items()}, "ops": cfg.search.ops},
                         "adapted_genotypes.json")
        tracker.end()
        print(f"run id: {tracker.run_id}")


def suite_families(suite: str, home: str) -> list[str]:
    """``shift``: the warm start's own family (reference), then every shifted, held-out or other-data-set family."""
    from metanas.data import list_families, load_family

    if suite != "shift":
        raise MetanasError(f"unknown suite {suite!r}: the only suite is 'shift'")
    others = [n for n in list_families()
              if n != home and ((f := load_family(n)).shifts or f.held_out or f.split == "all")]
    return [home, *others]


def _suite(args, path, state, model, cfg, dist) -> None:
    """One warm start over a suite of task families: a markdown + CSV table, logged to one MLflow run."""
    import csv
    import io

    from metanas.space import genotype_distance
    from metanas.tracking import PARENT, Tracker

    warm_genotype = model.derive({k: v.detach() for k, v in model.named_parameters()}, cfg.search.k)
    rows = []
    for name in suite_families(args.suite, state["family"]):
        try:
            family, ev, genotypes, steps = _adapt_family(args, path, state, model, cfg, dist, name, progress=False, curve=False)
        except MetanasError as e:  # e.g. a data set that cannot be downloaded here, or other ways
            rows.append((name, None, None, f"skipped: {e}"))
            if dist.is_main:  # every rank hits the same error; one line is enough
                print(f"{name}: skipped ({e})")
            continue
        distance = (sum(genotype_distance(g, warm_genotype) for g in genotypes) / len(genotypes)
                    if warm_genotype is not None else float("nan"))
        rows.append((name, ev, steps, f"{distance:.3f}"))
        if dist.is_main:
            print(f"{name}: {ev.summary()}, {steps} steps, genotype distance {distance:.3f}", flush=True)
    if not dist.is_main:
        return
    lines = [f"| family | accuracy ± 95% CI ({args.tasks} tasks) | steps | genotype distance from warm start |",
             "|---|---|---|---|"]
    lines += [f"| {n} | {100 * e.mean:.2f} ± {100 * e.ci95:.2f}% | {st} | {d} |" if e else f"| {n} | - | - | {d} |"
              for n, e, st, d in rows]
    table = "\n".join(lines)
    print(table)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["family", "accuracy", "ci95", "steps", "genotype_distance"])
    w.writerows([(n, e.mean if e else "", e.ci95 if e else "", st or "", d) for n, e, st, d in rows])
    if not args.no_track:
        tracker = Tracker(cfg, "evaluate", run_name=f"evaluate-suite-{args.suite}",
                          tags={PARENT: state["run_id"], "metanas.warm_start": state["run_id"]})
        tracker.log_text(table + "\n", f"suite_{args.suite}.md")
        tracker.log_text(buf.getvalue(), f"suite_{args.suite}.csv")
        for n, e, _, _ in rows:
            if e:
                tracker.log_metrics({f"suite/{n}/accuracy": e.mean, f"suite/{n}/ci95": e.ci95}, step=0)
        tracker.end()
        print(f"run id: {tracker.run_id}")


def _plot_adaptation(tracker, output_dir, family, cfg, genotypes, ev) -> Path:
    """Cell diagram of the first task, op wins per edge over all tasks, accuracy vs step: saved and logged."""
    import time

    from metanas import plots

    folder = Path(output_dir) / "plots" / (f"adapt-{tracker.run_id}" if tracker else time.strftime("adapt-%Y%m%d-%H%M%S"))
    figures = {
        "genotype_task0.png": plots.plot_genotype(
            genotypes[0], f"{family.name}, task 0: adapted genotype ({100 * ev.accuracies[0]:.0f}% query accuracy)",
            cfg.search.ops),
        "op_wins.png": plots.plot_op_wins({family.name: genotypes}, cfg.search.ops, cfg.search.nodes),
        "adaptation_curve.png": plots.plot_adaptation_curve(
            ev.curve, f"{family.name}: query accuracy vs adaptation step", family.ways),
    }
    for name, fig in figures.items():
        if tracker:
            tracker.log_figure(fig, f"plots/{name}")
        plots.save(fig, folder / name)
    return folder.resolve()


def cmd_export(args) -> None:
    import torch

    from metanas.checkpoint import load_checkpoint, read_genotype
    from metanas.export import export_task
    from metanas.plots import close, plot_genotype
    from metanas.space import genotype_str
    from metanas.tracking import PARENT, Tracker

    path = resolve_checkpoint(args)
    state = load_checkpoint(path)
    exported = export_task(state, args.task, args.out, steps=args.steps, finetune=args.finetune,
                           genotype=read_genotype(args.genotype) if args.genotype else None)
    with torch.no_grad():
        predicted = exported.child(exported.support_x).argmax(-1)
    print(f"exported: {exported.out.resolve()}  ({', '.join(p.name for p in sorted(exported.out.iterdir()))})")
    print(f"classes: {' '.join(exported.classes)}")
    print(f"genotype: {genotype_str(exported.genotype)}")
    print(f"support accuracy: {100 * (predicted == exported.support_y).float().mean():.1f}%")
    if not args.no_track:
        from metanas.registry import log_task_model

        cfg = exported.cfg
        cfg.run.output_dir, cfg.run.tracking_uri = args.output_dir, None
        tracker = Tracker(cfg, "export", run_name=f"export-{Path(args.task).name}",
                          tags={PARENT: state["run_id"], "metanas.warm_start": state["run_id"]})
        for f in sorted(exported.out.iterdir()):
            tracker.log_artifact(f, "export")
        fig = plot_genotype(exported.genotype, f"exported task {Path(args.task).name}: child genotype", cfg.search.ops)
        tracker.log_figure(fig, "plots/genotype.png")
        close(fig)
        info = log_task_model(exported, tracker.run_id, args.register)
        tracker.end()
        print(f"mlflow model: {info.model_uri}" + (f"  registered: models:/{args.register}/"
                                                    f"{info.registered_model_version}" if args.register else ""))
        print(f"run id: {tracker.run_id}")


def cmd_predict(args) -> None:
    from metanas.export import load_task_model

    model_dir = args.model
    if ":/" in args.model:  # an MLflow model URI: models:/NAME/VERSION, runs:/ID/model, models:/m-...
        from metanas.registry import download

        model_dir = download(args.model, args.output_dir)
    model = load_task_model(model_dir)
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise MetanasError(f"image {missing[0]} not found: pass image files to classify")
    for path, label, prob in model.predict(args.images):
        print(f"{path} -> {label} ({prob:.3f})")


def cmd_register(args) -> None:
    from metanas.registry import register_warm_start

    path = resolve_checkpoint(args)
    mv = register_warm_start(path, args.name, args.output_dir)
    print(f"registered: models:/{mv.name}/{mv.version}  (warm start of run {mv.tags.get('metanas.warm_start')}, "
          f"{mv.tags.get('metanas.family')})")


def cmd_runs(args) -> None:
    from metanas.tracking import recent_runs

    rows = recent_runs(args.output_dir, args.n)
    metrics = ("test/accuracy", "val/accuracy", "adapt/accuracy")
    print(f"{'run id':32s}  {'kind':10s} {'name / family':40s} {'status':8s} {'started':16s} "
          + " ".join(f"{m:>14s}" for m in metrics))
    for r in rows:
        print(f"{r['run_id']:32s}  {r['kind']:10s} {r['name'][:40]:40s} {r['status']:8s} {r['started']:16s} "
              + " ".join(f"{_pct(r['metrics'].get(m)):>14s}" for m in metrics))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def cmd_tasks(args) -> None:
    if args.tasks_command == "show":
        return cmd_tasks_show(args)
    from metanas.data import list_families, load_family

    rows = [load_family(n) for n in list_families()]
    width = min(30, max(len(f.shift_str) for f in rows))  # a long mix overflows its row, not the table
    print(f"{'name':28s} {'dataset':12s} {'split':8s} ways shots queries  {'shift':{width}s}  held-out  description")
    for f in rows:
        held = "yes" if f.held_out else "test-only" if f.untrainable_reason() else "no"
        print(f"{f.name:28s} {f.dataset:12s} {f.split:8s} {f.ways:4d} {f.shots:5d} {f.queries:7d}  "
              f"{f.shift_str:{width}s}  {held:8s}  {f.description}")


def cmd_tasks_show(args) -> None:
    import torch

    from metanas.data import get_tasksets, load_family
    from metanas.data.show import draw_task

    family = load_family(args.name)
    taskset = getattr(get_tasksets(family, args.data_root), args.split)
    if taskset is None:
        raise MetanasError(f"task family {family.name} (split: {family.split}) has no {args.split} classes; "
                           "use --split test")
    task = taskset.sample(torch.Generator().manual_seed(args.seed))
    out = Path(args.out or f"{family.name}-{args.split}-seed{args.seed}.png")
    draw_task(task, out, title=f"{family.name}, {args.split} split, seed {args.seed}\nshift: {family.shift_str}")
    print(out)


def ui_command(output_dir: str, host: str, port: int) -> list[str]:
    uri = f"sqlite:///{Path(output_dir).resolve()}/mlflow.db"
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def cmd_search(args) -> None:
    from metanas.search import cmd_search as run

    run(args)


def cmd_ui(args) -> None:
    cmd = ui_command(args.output_dir, args.host, args.port)
    print(" ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)  # become the MLflow server: Ctrl-C and SIGTERM reach it (and its workers) directly


def cmd_train(args) -> None:
    from metanas import meta_train

    meta_train.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metanas", description="Meta-learned neural architecture search.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train (same as python -m metanas.meta_train)", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(fn=cmd_train)

    for name, tasks, text in (("adapt", 20, "adapt a meta-trained warm start to new tasks, showing each"),
                              ("evaluate", 600, "adapt to many test tasks: accuracy ± 95% CI, per-step curve, op wins")):
        a = sub.add_parser(name, help=text)
        a.add_argument("--task", default="omniglot-5way", help="task family name (tasks/NAME.yaml) or YAML path")
        _add_warm_start_args(a)
        a.add_argument("--tasks", type=int, default=tasks, help=f"number of test tasks (default {tasks})")
        a.add_argument("--steps", type=int, help="adaptation steps (default: the checkpoint's inner.eval_steps)")
        a.add_argument("--no-arch-adapt", action="store_true", help="adapt the weights only, keep the warm alpha")
        a.add_argument("--genotype", metavar="FILE.json", help="adapt the weights of this fixed architecture only "
                       "(e.g. the best_genotype.json of metanas search), cut out of the supernet warm start")
        a.add_argument("--seed", type=int, default=0, help="seed of the test tasks")
        a.add_argument("--data-root", help="folder containing omniglot-py/ (else $METANAS_DATA)")
        a.add_argument("--device", default="auto")
        a.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
        a.add_argument("--plot", action="store_true", help="draw the first task's cells and the op wins per edge "
                       "over all tasks (run artifacts and OUTPUT_DIR/plots/)")
        if name == "evaluate":
            a.add_argument("--suite", choices=["shift"], help="all shifted / held-out families: one table")
        a.set_defaults(fn=cmd_adapt)

    e = sub.add_parser("export", help="adapt to a support folder and save the discrete child net (torch.export)")
    e.add_argument("--task", required=True, metavar="DIR",
                   help="the task's support set: a folder with one sub-folder of images per class")
    e.add_argument("--out", required=True, metavar="DIR", help="where to write model.pt2, genotype.json, classes.json")
    _add_warm_start_args(e)
    e.add_argument("--steps", type=int, help="adaptation steps (default: the checkpoint's inner.eval_steps)")
    e.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                   help="SGD steps on the child's weights on the support set after derivation (default 0)")
    e.add_argument("--genotype", metavar="FILE.json", help="export this fixed architecture (weights adapted) "
                   "instead of the genotype derived from the adapted alpha")
    e.add_argument("--register", metavar="NAME", help="also register the logged model under this name")
    e.add_argument("--no-track", action="store_true", help="do not log an MLflow run and model")
    e.set_defaults(fn=cmd_export)

    r = sub.add_parser("predict", help="classify images with an exported task model")
    r.add_argument("--model", required=True, metavar="DIR|URI",
                   help="the --out folder of metanas export, or an MLflow model URI (models:/NAME/VERSION)")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument("--output-dir", default="runs", help="runs folder whose MLflow store resolves a model URI")
    r.set_defaults(fn=cmd_predict)

    h = sub.add_parser("search", help="search a genotype for a task family with a discrete strategy, scored on the "
                       "meta-learned supernet (random, evolution, reinforce, bohb, darts)")
    h.add_argument("--task", default="omniglot-5way", help="task family name (tasks/NAME.yaml) or YAML path")
    h.add_argument("--strategy", default="evolution",
                   help="random | evolution | reinforce | bohb | darts (default evolution)")
    h.add_argument("--compare", action="store_true", help="run every strategy with the same budget and seed: "
                   "table (markdown + CSV) and best-so-far plot")
    h.add_argument("--budget", type=float, default=200, help="evaluations per strategy: one = one candidate adapted "
                   "and scored on all --val-tasks validation tasks (default 200)")
    h.add_argument("--val-tasks", type=int, default=20, help="validation tasks a candidate is scored on (default 20)")
    h.add_argument("--test-tasks", type=int, default=600, help="fresh test tasks for the winner (default 600)")
    _add_warm_start_args(h)
    h.add_argument("--steps", type=int, help="adaptation steps per task (default: the checkpoint's inner.eval_steps)")
    h.add_argument("--seed", type=int, default=0, help="seed of the strategies and of the tasks")
    h.add_argument("--data-root", help="folder containing omniglot-py/ (else $METANAS_DATA)")
    h.add_argument("--device", default="auto")
    h.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    h.set_defaults(fn=cmd_search, no_arch_adapt=False)

    g = sub.add_parser("register", help="register a warm start in the MLflow model registry")
    g.add_argument("--name", required=True, help="registered model name")
    _add_warm_start_args(g, registry=False)
    g.set_defaults(fn=cmd_register)

    n = sub.add_parser("runs", help="list recent MLflow runs with their key metrics")
    n.add_argument("--output-dir", default="runs")
    n.add_argument("-n", type=int, default=10, help="how many runs (default 10)")
    n.set_defaults(fn=cmd_runs)

    k = sub.add_parser("tasks", help="list the task families; `tasks show NAME` draws a sample task")
    k.set_defaults(fn=cmd_tasks)
    ks = k.add_subparsers(dest="tasks_command")
    show = ks.add_parser("show", help="draw one task of a family (support and query grid) to a PNG")
    show.add_argument("name", help="task family name (tasks/NAME.yaml) or YAML path")
    show.add_argument("--out", help="PNG path (default: NAME-SPLIT-seedS.png)")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--split", choices=("train", "validation", "test"), default="test")
    show.add_argument("--data-root", help="folder containing omniglot-py/ (else $METANAS_DATA)")

    u = sub.add_parser("ui", help="open the MLflow UI on the project's store")
    u.add_argument("--output-dir", default="runs")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)
    return p


def _add_warm_start_args(p, registry: bool = True) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="checkpoint file (default: the newest under OUTPUT_DIR/checkpoints)")
    src.add_argument("--run-id", help="MLflow run id of a meta-training run")
    if registry:
        src.add_argument("--model", metavar="models:/NAME/VERSION", help="a registered warm start")
    p.add_argument("--output-dir", default="runs", help="runs folder with checkpoints/ and mlflow.db")


@exit_on_error
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "tasks", 1) is not None and getattr(args, "tasks", 1) < 1:
        raise MetanasError("--tasks must be >= 1")
    if getattr(args, "n", 1) < 1:
        raise MetanasError("-n must be >= 1")
    args.fn(args)


if __name__ == "__main__":
    main()
