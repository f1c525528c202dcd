"""Meta-train a DARTS warm start: ``python -m metanas.meta_train [--config F] [key=value ...]``.

Read top to bottom: config, data, model, meta-learner, loop (meta-step,
validation, checkpoint, logging), final test evaluation.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from metanas.checkpoint import build_model, load_checkpoint, save_checkpoint
from metanas.config import Config, load_config, to_yaml
from metanas.data import get_tasksets, load_family
from metanas.errors import MetanasError, exit_on_error
from metanas.estimation import Evaluation, evaluate
from metanas.runtime import resolve_device, rng_state, seed_everything, set_rng_state
from metanas.space import Genotype, derive_genotype, genotype_str, genotype_to_json
from metanas.strategy import MetaLearner, is_alpha
from metanas.tracking import Tracker

VAL_SEED, TEST_SEED = 1, 2  # offsets from run.seed: the same validation/test tasks at every evaluation


@dataclass
class Result:
    run_id: str
    test: Evaluation
    genotype: Genotype
    checkpoint: Path
    seconds: float


def checkpoint_path(cfg: Config, run_id: str) -> Path:
    return Path(cfg.run.output_dir).resolve() / "checkpoints" / f"{run_id}.pt"


def derive(cfg: Config, params) -> Genotype:
    return derive_genotype(params, cfg.search.ops, cfg.search.nodes, cfg.search.k)


def alpha_snapshot(iteration: int, params) -> dict:
    """softmax(alpha) of both cells, recorded at each validation for the alpha-evolution plots."""
    return {"iteration": iteration,
            **{k: torch.softmax(v.detach().float().cpu(), -1) for k, v in params.items() if is_alpha(k)}}


def train(cfg: Config, resume: str | None = None) -> Result:
    t_start = time.perf_counter()
    device = resolve_device(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    seed_everything(cfg.run.seed)

    family = load_family(cfg.task.family)
    sets = get_tasksets(family, cfg.data.root, cfg.task.ways, cfg.task.shots, cfg.task.queries)
    ways = sets.train.ways
    model = build_model(cfg, ways).to(device)
    learner = MetaLearner(model, cfg, ways)
    generator = torch.Generator().manual_seed(cfg.run.seed)
    start = 0
    alphas: list[dict] = []  # alpha_snapshot()s; in the checkpoint, so a resumed run plots its whole history

    state = _resume_state(cfg, resume) if resume else None
    if state is not None:
        model.load_state_dict(state["params"])
        alphas = state.get("alpha_history", [])
        learner.optimizer.load_state_dict(state["optimizer"])
        learner.skipped = state["skipped"]
        set_rng_state(state["rng"], generator)
        start = state["iteration"]
        tracker = Tracker(cfg, "meta_train", run_id=state["run_id"])
    else:
        tracker = Tracker(cfg, "meta_train", tags={"metanas.family": family.name})
        tracker.log_config(cfg)
    ckpt = checkpoint_path(cfg, tracker.run_id)
    tracker.set_tags({"metanas.checkpoint": ckpt})

    def checkpoint(iteration: int) -> None:
        save_checkpoint(ckpt, {
            "config": to_yaml(cfg), "ways": ways, "family": family.name, "run_id": tracker.run_id,
            "iteration": iteration, "params": model.state_dict(), "optimizer": learner.optimizer.state_dict(),
            "skipped": learner.skipped, "rng": rng_state(generator),
            "genotype": genotype_to_json(derive(cfg, learner.params())), "alpha_history": alphas,
        })

    def validate(iteration: int) -> Evaluation:
        ev = evaluate(model, learner.params(), sets.validation, cfg.meta.eval_tasks, learner.inner_kwargs(eval_steps(cfg)),
                      torch.Generator().manual_seed(cfg.run.seed + VAL_SEED), device=device)
        tracker.log_metrics({"val/accuracy": ev.mean, "val/ci95": ev.ci95}, step=iteration)
        alphas.append(alpha_snapshot(iteration, learner.params()))
        return ev

    if not alphas:
        alphas.append(alpha_snapshot(start, learner.params()))

    # SIGINT/SIGTERM finish the current meta-step, checkpoint and exit: a step cut in half (parameters
    # partly updated, sampler advanced) would make the resumed run differ from an uninterrupted one.
    stop: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: stop.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(range(start, cfg.meta.iterations), initial=start, total=cfg.meta.iterations, desc="meta-train",
               disable=not cfg.run.progress, dynamic_ncols=True)
    val_acc = float("nan")
    try:
        for it in bar:
            task = [t.to(device) for t in sets.train.sample_batch(cfg.meta.meta_batch, generator)]
            m = learner.step(task, it)
            tracker.log_metrics({f"train/{k}": v for k, v in m.items()}, step=it)
            done = it + 1
            if done % cfg.meta.eval_every == 0 or done == cfg.meta.iterations:
                val_acc = validate(done).mean
            if done % cfg.meta.checkpoint_every == 0 or done == cfg.meta.iterations:
                checkpoint(done)
            bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['accuracy']:.3f}", val=f"{val_acc:.3f}")
            if stop:
                checkpoint(done)
                tracker.end("KILLED")
                print(f"metanas: stopped by signal {stop[0]} after iteration {done}; resume with: "
                      f"python -m metanas.meta_train --resume {tracker.run_id} (same config)", file=sys.stderr)
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        bar.close()
    if start == cfg.meta.iterations:  # resumed a finished run: nothing trained, still write its checkpoint
        checkpoint(start)

    params = learner.params()
    genotype = derive(cfg, params)
    test = evaluate(model, params, sets.test, cfg.meta.test_tasks, learner.inner_kwargs(eval_steps(cfg)),
                    torch.Generator().manual_seed(cfg.run.seed + TEST_SEED), curve=True,
                    progress=cfg.run.progress, device=device)
    seconds = time.perf_counter() - t_start
    for step, acc in enumerate(test.curve.mean(0).tolist()):
        tracker.log_metrics({"test/accuracy_at_step": acc}, step=step)
    tracker.log_metrics({"test/accuracy": test.mean, "test/ci95": test.ci95, "wall_seconds": seconds},
                        step=cfg.meta.iterations)
    tracker.log_dict(genotype_to_json(genotype), "genotype.json")
    _log_plots(tracker, cfg, params, genotype, alphas, test, ways)
    tracker.log_artifact(ckpt, "checkpoint")
    tracker.end()
    return Result(tracker.run_id, test, genotype, ckpt, seconds)


def eval_steps(cfg: Config) -> int:
    return cfg.inner.steps if cfg.inner.eval_steps is None else cfg.inner.eval_steps


def _resume_state(cfg: Config, resume: str) -> dict:
    path = Path(resume)
    if not path.suffix == ".pt":
        path = checkpoint_path(cfg, resume)
    state = load_checkpoint(path)
    if state["config"] != to_yaml(cfg):
        raise MetanasError(f"--resume {resume}: the checkpoint was written with a different config; resume with "
                           "the same --config and overrides as the original run")
    return state


def _log_plots(tracker: Tracker, cfg: Config, params, genotype: Genotype, alphas: list[dict],
               test: Evaluation, ways: int) -> None:
    from metanas import plots

    ops = cfg.search.ops
    # Learning curves come from the MLflow store, not from memory: a resumed run then plots its whole history.
    histories = tracker.metric_histories(["train/accuracy", "train/loss", "val/accuracy", "val/ci95"])
    figures = {
        "alphas.png": plots.plot_alphas(params, ops),
        "genotype.png": plots.plot_genotype(genotype, f"meta-learned genotype ({cfg.task.family})", ops),
        "alpha_evolution.png": plots.plot_alpha_evolution(alphas, ops),
        "alpha_entropy.png": plots.plot_alpha_entropy(alphas, ops),
        "learning_curves.png": plots.plot_learning_curves(histories, f"meta-training ({cfg.task.family})"),
        "adaptation_curve.png": plots.plot_adaptation_curve(
            test.curve, f"test tasks: query accuracy vs adaptation step ({cfg.task.family})", ways),
    }
    for name, fig in figures.items():
        tracker.log_figure(fig, f"plots/{name}")
        plots.close(fig)


def parse_args(argv=None) -> tuple[argparse.Namespace, Config]:
    p = argparse.ArgumentParser(prog="python -m metanas.meta_train", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config (e.g. configs/smoke.yaml); defaults: configs/default.yaml values")
    p.add_argument("--data-root", help="folder containing omniglot-py/ (else $METANAS_DATA, else the user cache)")
    p.add_argument("--resume", metavar="RUN_ID|PATH", help="continue a run from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. meta.iterations=20")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])
    return args, load_config(args.config, overrides)


@exit_on_error
def main(argv=None) -> Result:
    args, cfg = parse_args(argv)
    result = train(cfg, resume=args.resume)
    print(f"test accuracy: {result.test.summary()}  [{cfg.task.family}, {eval_steps(cfg)} adaptation steps]")
    print(f"run id: {result.run_id}")
    print(f"genotype: {genotype_str(result.genotype)}")
    print(f"checkpoint: {result.checkpoint}")
    print(f"wall time: {result.seconds:.0f} s")
    return result


if __name__ == "__main__":
    main()
