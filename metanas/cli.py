"""The ``metanas`` command: ``train``, ``adapt``, ``tasks``, ``ui``."""

from __future__ import annotations

import argparse
import subprocess
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
    if args.checkpoint:
        return Path(args.checkpoint)
    if args.run_id:
        return Path(args.output_dir) / "checkpoints" / f"{args.run_id}.pt"
    return latest_checkpoint(args.output_dir)


def cmd_adapt(args) -> None:
    from metanas import distributed
    from metanas.checkpoint import load_checkpoint, model_from_checkpoint

    path = resolve_checkpoint(args)
    state = load_checkpoint(path)
    model, cfg = model_from_checkpoint(state, path)
    cfg.run.output_dir = args.output_dir
    cfg.run.device = args.device
    if args.data_root:
        cfg.data.root = args.data_root
    if args.steps is not None:
        cfg.inner.eval_steps = args.steps
    # Under torchrun the test tasks are split across ranks (every rank reads the checkpoint itself).
    dist = distributed.init(cfg)
    try:
        _adapt(args, path, state, model, cfg, dist)
    finally:
        dist.close()


def _adapt(args, path, state, model, cfg, dist) -> None:
    import torch

    from metanas.data import get_tasksets, load_family
    from metanas.estimation import evaluate
    from metanas.meta_train import derive, eval_steps
    from metanas.runtime import seed_everything
    from metanas.space import genotype_str, genotype_to_json
    from metanas.strategy import MetaLearner
    from metanas.tracking import PARENT, Tracker

    device = dist.device
    seed_everything(args.seed)
    family = load_family(args.task)
    if family.ways != state["ways"]:
        raise MetanasError(f"the warm start {path} was meta-trained for {state['ways']}-way tasks but "
                           f"{family.name} is {family.ways}-way: pick a {state['ways']}-way family or meta-train "
                           f"with task.family={family.name}")
    sets = get_tasksets(family, cfg.data.root)
    model.to(device)
    learner = MetaLearner(model, cfg, family.ways)
    steps = eval_steps(cfg)
    tracker = None if args.no_track or not dist.is_main else Tracker(
        cfg, "adapt", run_name=f"adapt-{family.name}",
        tags={PARENT: state["run_id"], "metanas.warm_start": state["run_id"], "metanas.family": family.name})
    ev = evaluate(model, learner.params(), sets.test, args.tasks, learner.inner_kwargs(steps=steps),
                  torch.Generator().manual_seed(args.seed), chunk=1, curve=True, progress=dist.is_main, device=device,
                  dist=dist)
    if not dist.is_main:  # rank 0 prints and logs for all
        return
    genotypes = [derive(cfg, {k: v[i] for k, v in ev.alphas.items()}) for i in range(args.tasks)]
    for i, g in enumerate(genotypes):
        print(f"task {i:3d}: accuracy {100 * ev.accuracies[i]:5.1f}%  {steps} steps  "
              f"{ev.seconds[i]:.3f} s  {genotype_str(g)}")
    print(f"query accuracy: {ev.summary()}  [{family.name}, {steps} steps of DARTS on w and alpha]")
    print(f"time per task: median {ev.seconds.median():.3f} s")
    print(f"accuracy after each step: {' '.join(f'{100 * a:.1f}' for a in ev.curve.mean(0).tolist())}")
    print(f"warm start: {path} (run {state['run_id']})")
    if tracker:
        tracker.log_config(cfg)
        for step, acc in enumerate(ev.curve.mean(0).tolist()):
            tracker.log_metrics({"adapt/accuracy_at_step": acc}, step=step)
        tracker.log_metrics({"adapt/accuracy": ev.mean, "adapt/ci95": ev.ci95,
                             "adapt/seconds_per_task": ev.seconds.median().item()}, step=steps)
        tracker.log_dict({"genotypes": [genotype_to_json(g) for g in genotypes],
                          "accuracies": ev.accuracies.tolist()}, "adapted_genotypes.json")
        tracker.end()
        print(f"run id: {tracker.run_id}")


def cmd_tasks(args) -> None:
    from metanas.data import list_families, load_family

    rows = [load_family(n) for n in list_families()]
    print(f"{'name':28s} {'dataset':10s} {'split':8s} ways shots queries  description")
    for f in rows:
        print(f"{f.name:28s} {f.dataset:10s} {f.split:8s} {f.ways:4d} {f.shots:5d} {f.queries:7d}  {f.description}")


def ui_command(output_dir: str, host: str, port: int) -> list[str]:
    uri = f"sqlite:///{Path(output_dir).resolve()}/mlflow.db"
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def cmd_ui(args) -> None:
    cmd = ui_command(args.output_dir, args.host, args.port)
    print(" ".join(cmd), flush=True)
    sys.exit(subprocess.call(cmd))


def cmd_train(args) -> None:
    from metanas import meta_train

    meta_train.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metanas", description="Meta-learned neural architecture search.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train (same as python -m metanas.meta_train)", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(fn=cmd_train)

    a = sub.add_parser("adapt", help="adapt a meta-trained warm start to new tasks")
    a.add_argument("--task", default="omniglot-5way", help="task family name (tasks/NAME.yaml) or YAML path")
    src = a.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="checkpoint file (default: the newest under OUTPUT_DIR/checkpoints)")
    src.add_argument("--run-id", help="MLflow run id of a meta-training run")
    a.add_argument("--tasks", type=int, default=20, help="number of test tasks (default 20)")
    a.add_argument("--steps", type=int, help="adaptation steps (default: the checkpoint's inner.eval_steps)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--data-root", help="folder containing omniglot-py/ (else $METANAS_DATA)")
    a.add_argument("--output-dir", default="runs", help="runs folder with checkpoints/ and mlflow.db")
    a.add_argument("--device", default="auto")
    a.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    a.set_defaults(fn=cmd_adapt)

    k = sub.add_parser("tasks", help="list the task families")
    k.set_defaults(fn=cmd_tasks)

    u = sub.add_parser("ui", help="open the MLflow UI on the project's store")
    u.add_argument("--output-dir", default="runs")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)
    return p


@exit_on_error
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "tasks", 1) is not None and getattr(args, "tasks", 1) < 1:
        raise MetanasError("--tasks must be >= 1")
    args.fn(args)


if __name__ == "__main__":
    main()
