"""Meta-train a DARTS warm start: ``python -m metanas.meta_train [--config F] [key=value ...]``.

Read top to bottom: config, data, model, meta-learner, loop (meta-step,
validation, checkpoint, logging), final test evaluation.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from metanas import distributed
from metanas.checkpoint import build_model, load_checkpoint, save_checkpoint
from metanas.config import Config, load_config, to_yaml
from metanas.data import check_trainable, get_tasksets, load_family
from metanas.errors import MetanasError, exit_on_error
from metanas.estimation import Evaluation, evaluate
from metanas.runtime import rng_state, seed_everything, set_rng_state
from metanas.space import Genotype, genotype_str, genotype_to_json
from metanas.strategy import MetaLearner, is_alpha
from metanas.tracking import NullTracker, Tracker

VAL_SEED, TEST_SEED = 1, 2  # offsets from run.seed: the same validation/test tasks at every evaluation
# Fault injection, for testing the non-finite guard end to end: inputs are NaN from this iteration on.
NAN_FROM = int(os.environ.get("METANAS_FAULT_NAN_FROM", -1))


@dataclass
class Result:
    run_id: str
    test: Evaluation
    genotype: Genotype | None  # None for a fixed architecture (conv4)
    checkpoint: Path
    seconds: float
    train_seconds: float = 0.0  # the meta-training loop alone (no data loading, no final test)
    steps: int = 0  # meta-steps this call ran (fewer than meta.iterations when resumed)
    rank: int = 0
    world: int = 1


def checkpoint_path(cfg: Config, run_id: str) -> Path:
    return Path(cfg.run.output_dir).resolve() / "checkpoints" / f"{run_id}.pt"




def alpha_snapshot(iteration: int, params) -> dict:
    """softmax(alpha) of both cells, recorded at each validation for the alpha-evolution plots."""
    return {"iteration": iteration,
            **{k: torch.softmax(v.detach().float().cpu(), -1) for k, v in params.items() if is_alpha(k)}}


def train(cfg: Config, resume: str | None = None) -> Result:
    """Meta-train. Under torchrun every rank calls this (see metanas/distributed.py); else one process."""
    dist = distributed.init(cfg)
    try:
        return _train(cfg, resume, dist)
    finally:
        dist.close()


def _train(cfg: Config, resume: str | None, dist: distributed.Dist) -> Result:
    t_start = time.perf_counter()
    device = dist.device
    configs = dist.all_gather(_experiment(cfg))
    if len(set(configs)) > 1:
        differ = [r for r, c in enumerate(configs) if c != configs[0]]
        raise MetanasError(f"ranks {differ} were started with another experiment config than rank 0: run the same "
                           "torchrun command, --config and overrides on every machine")
    if cfg.meta.meta_batch % dist.world:
        raise MetanasError(f"meta.meta_batch={cfg.meta.meta_batch} does not split evenly over {dist.world} ranks: "
                           f"use a multiple of {dist.world} (each rank adapts meta_batch / ranks tasks per step)")
    seed_everything(cfg.run.seed)  # the same on every rank: same initial parameters, same task sequence

    family = load_family(cfg.task.family)
    check_trainable(family)  # held-out and test-only families are never sampled here
    load = lambda: get_tasksets(family, cfg.data.root, cfg.task.ways, cfg.task.shots, cfg.task.queries,
                                cfg.data.skip_corrupt)
    # Rank 0 loads first: it decodes and caches Omniglot once for the machine (the others then read the cache,
    # instead of all decoding at once), and a missing data root fails every rank at once.
    dist.on_main(lambda: load() and None)
    sets = load()
    ways = sets.train.ways
    model = build_model(cfg, ways).to(device)
    learner = MetaLearner(model, cfg, ways, reduce=dist.all_reduce_mean)
    generator = torch.Generator().manual_seed(cfg.run.seed)
    start = 0
    alphas: list[dict] = []  # alpha_snapshot()s; in the checkpoint, so a resumed run plots its whole history

    # Rank 0 reads the checkpoint and sends it to the others: only its machine needs the output directory.
    state = dist.on_main(lambda: _resume_state(cfg, resume)) if resume else None
    if state is not None:
        model.load_state_dict(state["params"])
        alphas = state.get("alpha_history", [])
        learner.optimizer.load_state_dict(state["optimizer"])
        learner.skipped = state["skipped"]
        set_rng_state(state["rng"], generator)
        start = state["iteration"]
    dist.broadcast_parameters(model)

    tracker: Tracker | NullTracker | None = None

    def open_tracker() -> str:  # rank 0 only: one MLflow run per training, however many ranks
        nonlocal tracker
        if state is not None:
            tracker = Tracker(cfg, "meta_train", run_id=state["run_id"])
        else:
            tracker = Tracker(cfg, "meta_train", tags={"metanas.family": family.name})
            tracker.log_config(cfg)
        tracker.set_tags({"metanas.checkpoint": checkpoint_path(cfg, tracker.run_id), "metanas.ranks": dist.world})
        return tracker.run_id

    run_id = dist.on_main(open_tracker)
    tracker = tracker or NullTracker(run_id)
    ckpt = checkpoint_path(cfg, run_id)

    def checkpoint(iteration: int) -> None:
        params = model.state_dict()
        # Every rank applies the same averaged update, so all must hold the same bits: check it here, and
        # record it (a test reads the tag to see both ranks' parameters from outside).
        sums = dist.all_gather(distributed.checksum(params))
        tracker.set_tags({"metanas.rank_checksums": ",".join(sums)})
        if len(set(sums)) > 1:
            raise RuntimeError(f"ranks hold different parameters after iteration {iteration} (sha256 per rank: "
                               f"{', '.join(x[:12] for x in sums)}): a nondeterministic kernel or a bug")
        if dist.is_main:
            save_checkpoint(ckpt, {
                "config": to_yaml(cfg), "ways": ways, "family": family.name, "run_id": run_id,
                "iteration": iteration, "params": params, "optimizer": learner.optimizer.state_dict(),
                "skipped": learner.skipped, "rng": rng_state(generator),
                "genotype": genotype_to_json(model.derive(learner.params(), cfg.search.k)), "alpha_history": alphas,
            })

    def validate(iteration: int) -> Evaluation:
        ev = evaluate(model, learner.params(), sets.validation, cfg.meta.eval_tasks, learner.inner_kwargs(eval_steps(cfg)),
                      torch.Generator().manual_seed(cfg.run.seed + VAL_SEED), device=device, dist=dist)
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
               disable=not (cfg.run.progress and dist.is_main), dynamic_ncols=True)
    val_acc = float("nan")
    mine = dist.shard(cfg.meta.meta_batch)
    t_loop = time.perf_counter()
    try:
        for it in bar:
            # Every rank draws the same global meta-batch and adapts its slice (see metanas/distributed.py):
            # W ranks x B/W tasks then see exactly the tasks of one process x B.
            batch = sets.train.sample_batch(cfg.meta.meta_batch, generator)
            task = [t[mine.start:mine.stop].to(device) for t in batch]
            if 0 <= NAN_FROM <= it:
                task[0] = task[0] * float("nan")
            m = learner.step(task, it)
            tracker.log_metrics({f"train/{k}": v for k, v in m.items()}, step=it)
            done = it + 1
            if done % cfg.meta.eval_every == 0 or done == cfg.meta.iterations:
                val_acc = validate(done).mean
            # never during a streak of skipped (non-finite) steps: the last checkpoint stays the last good one
            if (done % cfg.meta.checkpoint_every == 0 or done == cfg.meta.iterations) and not learner.nonfinite:
                checkpoint(done)
            bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['accuracy']:.3f}", val=f"{val_acc:.3f}")
            over_budget = bool(cfg.meta.time_budget) and time.perf_counter() - t_start > cfg.meta.time_budget
            if dist.any_rank(over_budget) and done < cfg.meta.iterations:  # every rank stops at the same step
                validate(done)
                checkpoint(done)
                tracker.set_tags({"metanas.stopped_by_time_budget": done})
                break
            if dist.any_rank(bool(stop)):  # all ranks stop after the same step, or the others would wait in vain
                checkpoint(done)
                tracker.end("KILLED")
                if dist.is_main:
                    why = f"signal {stop[0]}" if stop else "a signal to another rank"
                    print(f"metanas: stopped by {why} after iteration {done}; resume with: "
                          f"python -m metanas.meta_train --resume {run_id} (same config)", file=sys.stderr)
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
    train_seconds = time.perf_counter() - t_loop
    if start == cfg.meta.iterations:  # resumed a finished run: nothing trained, still write its checkpoint
        checkpoint(start)

    params = learner.params()
    genotype = model.derive(params, cfg.search.k)
    test = evaluate(model, params, sets.test, cfg.meta.test_tasks, learner.inner_kwargs(eval_steps(cfg)),
                    torch.Generator().manual_seed(cfg.run.seed + TEST_SEED), curve=True,
                    progress=cfg.run.progress and dist.is_main, device=device, dist=dist)
    seconds = time.perf_counter() - t_start
    for step, acc in enumerate(test.curve.mean(0).tolist()):
        tracker.log_metrics({"test/accuracy_at_step": acc}, step=step)
    tracker.log_metrics({"test/accuracy": test.mean, "test/ci95": test.ci95, "wall_seconds": seconds,
                         "train_seconds": train_seconds}, step=cfg.meta.iterations)
    if genotype is not None:
        tracker.log_dict(genotype_to_json(genotype), "genotype.json")
    if dist.is_main:
        _log_plots(tracker, cfg, params, genotype, alphas, test, ways)
    tracker.log_artifact(ckpt, "checkpoint")
    tracker.end()
    return Result(run_id, test, genotype, ckpt, seconds, train_seconds, cfg.meta.iterations - start,
                  dist.rank, dist.world)


def eval_steps(cfg: Config) -> int:
    return cfg.inner.steps if cfg.inner.eval_steps is None else cfg.inner.eval_steps


def _experiment(cfg: Config) -> str:
    """The config keys all ranks must agree on (data paths, output dir, threads may differ per machine)."""
    return to_yaml(cfg.task) + to_yaml(cfg.search) + to_yaml(cfg.inner) + to_yaml(cfg.meta) + f"seed: {cfg.run.seed}"


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
        "learning_curves.png": plots.plot_learning_curves(histories, f"meta-training ({cfg.task.family})"),
        "adaptation_curve.png": plots.plot_adaptation_curve(
            test.curve, f"test tasks: query accuracy vs adaptation step ({cfg.task.family})", ways),
    }
    if genotype is not None:
        figures["genotype.png"] = plots.plot_genotype(genotype, f"meta-learned genotype ({cfg.task.family})", ops)
    if "alpha_normal" in params:  # a supernet (not conv4, not a fixed child)
        figures["alphas.png"] = plots.plot_alphas(params, ops)
        figures["alpha_evolution.png"] = plots.plot_alpha_evolution(alphas, ops)
        figures["alpha_entropy.png"] = plots.plot_alpha_entropy(alphas, ops)
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
    if result.rank != 0:  # under torchrun rank 0 speaks for all
        return result
    print(f"test accuracy: {result.test.summary()}  [{cfg.task.family}, {eval_steps(cfg)} adaptation steps]")
    print(f"run id: {result.run_id}")
    print(f"genotype: {genotype_str(result.genotype)}")
    print(f"checkpoint: {result.checkpoint}")
    print(f"meta-training: {result.steps} steps in {result.train_seconds:.1f} s on {result.world} rank(s)")
    print(f"wall time: {result.seconds:.0f} s")
    return result


if __name__ == "__main__":
    main()
