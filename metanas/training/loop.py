"""Meta-training: the loop behind ``python -m metanas.meta_train`` and ``metanas.train(cfg)``.

Read top to bottom: config, data, model, meta-learner, loop (meta-step, validation, checkpoint, logging),
final test evaluation. :func:`train` is the Python API; :mod:`metanas.meta_train` is its command line.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from metanas.training import distributed
from metanas.meta.checkpoint import TrainingState, checkpoint_path
from metanas.config import Config, flatten
from metanas.data import check_trainable, load_family
from metanas.data.episodes import sample_groups, varies
from metanas.estimation.loop import Evaluation, evaluate
from metanas.estimation.warm import tasksets
from metanas.estimation.seeds import SELECT_SEED, TEST_SEED, VAL_SEED
from metanas.estimation.selection import select_adaptation
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import LEARNED_LR, InnerLoop, is_learned_lr
from metanas.meta.outer import Episodes, MetaLearner
from metanas.core.errors import MetanasError
from metanas.core.runtime import rng_state, seed_everything, set_rng_state
from metanas.space import alphas_of, build_model
from metanas.track.model_registry import WARM_START_FILE
from metanas.track.runs import NullTracker, Tracker


@dataclass
class Result:
    run_id: str
    test: Evaluation
    arch: Any  # the derived (supernet) or fixed (child) architecture
    describe: str  # the architecture in one line
    checkpoint: Path
    seconds: float
    train_seconds: float = 0.0  # the meta-training loop alone (no data loading, no final test)
    steps: int = 0  # meta-steps this call ran (fewer than meta.iterations when resumed or stopped by the budget)
    eval_steps: int = 0  # adaptation steps of the test
    rank: int = 0
    world: int = 1


def train(cfg: Config, resume: str | None = None) -> Result:
    """Meta-train. Under torchrun every rank calls this (see metanas/distributed.py); else one process."""
    dist = distributed.init(cfg)
    try:
        return _train(cfg, resume, dist)
    finally:
        dist.close()


def _train(cfg: Config, resume: str | None, dist: distributed.Dist) -> Result:
    t_start = time.perf_counter()
    distributed.check_same_experiment(cfg, dist)
    seed_everything(cfg.run.seed)  # the same on every rank: same initial parameters, same task sequence
    family, sets = _load_tasks(cfg, dist)
    ways = sets.train.ways
    image = sets.train.format
    model, space, arch = build_model(cfg, ways, in_channels=image.channels)
    model.to(dist.device)
    cost = _cost_objective(space, model, ways, image) if arch is None and cfg.meta.cost_weight else None
    learner = MetaLearner(model, cfg, ways, reduce=dist.all_reduce_mean, cost=cost)
    # Every rank draws the same global meta-batch and adapts its slice (see metanas/distributed.py).
    mine = dist.shard(cfg.meta.meta_batch)
    sampler = TaskStream(sets.train, cfg.meta.meta_batch, torch.Generator().manual_seed(cfg.run.seed), dist.device,
                         slice(mine.start, mine.stop))
    run = _Run(cfg, dist, family, sets, model, space, arch, learner, sampler)
    start = run.restore(resume)
    stop = _Stop()
    bar = tqdm(range(start, cfg.meta.iterations), initial=start, total=cfg.meta.iterations, desc="meta-train",
               disable=not (cfg.run.progress and dist.is_main), dynamic_ncols=True)
    nan_from = int(os.environ.get("METANAS_FAULT_NAN_FROM", -1))  # fault injection for tests (docs/operations.md, Errors)
    val_acc, done = float("nan"), start
    pending: list[tuple[int, dict]] = []  # each step's metrics, tensors on the device until they are logged

    def log_pending() -> None:
        """Read the pending steps' loss and accuracy back in one device read (one host sync per run.log_every steps,
        not two per step) and log them, one point per step."""
        if not pending:
            return
        values = torch.stack([torch.stack([m["loss"], m["accuracy"]]).float() for _, m in pending]).tolist()
        run.tracker.log_metric_steps([(it, {"train/loss": loss, "train/accuracy": acc,
                                            "train/skipped_steps": m["skipped_steps"]})
                                      for (it, m), (loss, acc) in zip(pending, values)])
        bar.set_postfix(loss=f"{values[-1][0]:.3f}", acc=f"{values[-1][1]:.3f}", val=f"{val_acc:.3f}")
        pending.clear()

    t_loop = time.perf_counter()
    try:
        for it in bar:
            task = sampler.next()
            if 0 <= nan_from <= it and not isinstance(task, Episodes):
                task[0] = task[0] * float("nan")
            pending.append((it, learner.step(task, it)))
            done = it + 1
            if done % cfg.run.log_every == 0 or done % cfg.meta.eval_every == 0 or done == cfg.meta.iterations:
                log_pending()
            if done % cfg.meta.eval_every == 0 or done == cfg.meta.iterations:
                val_acc = run.validate(done).mean
            # never during a streak of skipped (non-finite) steps: the last checkpoint stays the last good one
            if (done % cfg.meta.checkpoint_every == 0 or done == cfg.meta.iterations) and not learner.nonfinite:
                run.checkpoint(done)
            over_budget = bool(cfg.meta.time_budget) and time.perf_counter() - t_start > cfg.meta.time_budget
            if dist.any_rank(over_budget) and done < cfg.meta.iterations:  # every rank stops at the same step
                log_pending()
                run.stop_for_budget(done)
                break
            if dist.any_rank(bool(stop)):  # all ranks stop after the same step, or the others would wait in vain
                log_pending()
                run.stop_for_signal(done, stop)
    except KeyboardInterrupt:
        raise
    except BaseException:
        log_pending()  # the steps before the failure (e.g. a streak of non-finite ones) are in the run
        run.tracker.end("FAILED")
        raise
    finally:
        stop.restore()
        bar.close()
        sampler.close()
    train_seconds = time.perf_counter() - t_loop
    if start == cfg.meta.iterations:  # resumed a finished run: nothing trained, still write its checkpoint
        run.checkpoint(start)
    if run.select_adaptation():  # inner.select_*: the checkpoint then holds the setting the test adapts with
        run.checkpoint(done)
    test = run.final_test()
    seconds = time.perf_counter() - t_start
    run.report(test, seconds, train_seconds)
    final = run.architecture()
    return Result(run.run_id, test, final, space.describe(final), run.ckpt, seconds, train_seconds, done - start,
                  run.adaptation.steps, dist.rank, dist.world)


class TaskStream:
    """The meta-batches of a run, in order: this rank's ``rows`` of each batch of ``n`` tasks, on ``device``.

    On a GPU the next batch is drawn on a thread while the device works on this one, pinned, and copied without
    blocking. The stream stands in for its generator in checkpoints (``get_state``/``set_state``): its state is the
    generator's before any batch drawn ahead, so a resumed run draws the same batches with or without prefetch.
    """

    def __init__(self, taskset, n: int, generator: torch.Generator, device: torch.device, rows: slice,
                 prefetch: bool | None = None):
        self.taskset, self.n, self.generator, self.device, self.rows = taskset, n, generator, device, rows
        self.prefetch = device.type == "cuda" if prefetch is None else prefetch
        self.varies = varies(taskset)
        self._pool = self._ahead = self._state = None

    def _draw(self):
        pin = (lambda t: t.pin_memory()) if self.device.type == "cuda" else (lambda t: t)
        if self.varies:  # Meta-Dataset episodes: groups of one shape
            groups = sample_groups(self.taskset, self.n, self.generator, self.rows)
            return Episodes((ways, [pin(t) for t in task]) for ways, task in groups)
        return [pin(t[self.rows]) for t in self.taskset.sample_batch(self.n, self.generator)]

    def _to_device(self, batch):
        if isinstance(batch, Episodes):
            return Episodes((ways, self._to_device(task)) for ways, task in batch)
        return [t.to(self.device, non_blocking=True) for t in batch]

    def _draw_ahead(self) -> None:
        self._state = self.generator.get_state()
        self._ahead = self._pool.submit(self._draw)

    def next(self):
        """The next meta-batch: its tensors, or :class:`Episodes` where the tasks differ in shape."""
        if not self.prefetch:
            batch = self._draw()
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="metanas-tasks")
                self._draw_ahead()
            batch = self._ahead.result()
            self._draw_ahead()
        return self._to_device(batch)

    def get_state(self) -> torch.Tensor:
        return self._state if self._ahead is not None else self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        if self._ahead is not None:
            raise RuntimeError("TaskStream.set_state after batches were drawn ahead")
        self.generator.set_state(state)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _load_tasks(cfg: Config, dist):
    family = load_family(cfg.task.family)
    check_trainable(family)  # held-out and test-only families are never sampled here
    load = lambda: tasksets(cfg)
    # Rank 0 loads first: it decodes and caches the images once for the machine (the others then read the cache,
    # instead of all decoding at once), and a missing data root fails every rank at once.
    dist.on_main(lambda: load() and None)
    sets = load()
    if varies(sets.train) and cfg.inner.variant == "alternating":
        raise MetanasError(f"task family {family.name} draws its shots per class, which inner.variant=alternating "
                           "cannot split in halves: use inner.variant=joint")
    return family, sets


def _cost_objective(space, model, ways: int, image):
    """alphas -> expected FLOPs per image relative to the space's :meth:`reference_cost`."""
    size, c = image.size, image.channels
    ref = space.reference_cost(alphas_of(dict(model.named_parameters())), ways, size, c)
    return lambda alphas: space.expected_cost(alphas, ways, size, c) / ref


class _Stop(list):
    """Signals received (SIGINT/SIGTERM): the loop finishes the current meta-step, checkpoints and exits, since a
    step cut in half (parameters partly updated, sampler advanced) would make a resumed run differ."""

    def __init__(self):
        super().__init__()
        self.previous = {s: signal.signal(s, lambda signum, frame: self.append(signum))
                         for s in (signal.SIGINT, signal.SIGTERM)}

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class _Run:
    """The state of one meta-training around the loop: resume, tracking, validation, checkpoints, final report."""

    def __init__(self, cfg, dist, family, sets, model, space, arch, learner, sampler):
        self.cfg, self.dist, self.family, self.sets = cfg, dist, family, sets
        self.model, self.space, self.arch, self.learner, self.sampler = model, space, arch, learner, sampler
        self.history: list[dict] = []  # alpha snapshots; in the checkpoint, so a resumed run plots its whole history
        self.adaptation = Adaptation.from_config(cfg)  # replaced by the one chosen on validation tasks (inner.select_*)
        self.chosen: dict | None = None  # that choice's row of the table, kept in the checkpoint

    def restore(self, resume: str | None) -> int:
        """Resume state (rank 0 reads it and sends it to the others), tracker, parameters on every rank: the
        iteration to start from."""
        cfg, dist = self.cfg, self.dist
        state = dist.on_main(lambda: TrainingState.load(self._resume_path(resume), cfg)) if resume else None
        start = 0
        if state is not None:
            self.model.load_state_dict(state.params)
            self.history = state.alpha_history
            self.learner.optimizer.load_state_dict(state.optimizer)
            self.learner.skipped = state.skipped
            set_rng_state(state.rng, sampler=self.sampler, policy=self.learner.generator)
            start = state.iteration
        dist.broadcast_parameters(self.model)
        self.run_id = dist.on_main(lambda: self._open_tracker(state))
        if not dist.is_main:
            self.tracker = NullTracker(self.run_id)
        self.ckpt = checkpoint_path(cfg.run.output_dir, self.run_id)
        if not self.history:
            self._snapshot(start)
        return start

    def _resume_path(self, resume: str) -> Path:
        return Path(resume) if resume.endswith(".pt") else checkpoint_path(self.cfg.run.output_dir, resume)

    def _open_tracker(self, state: TrainingState | None) -> str:  # rank 0 only: one MLflow run per training
        if state is not None:
            self.tracker = Tracker(self.cfg, "meta_train", run_id=state.run_id)
        else:
            self.tracker = Tracker(self.cfg, "meta_train", tags={"metanas.family": self.family.name,
                                                                 "metanas.space": self.space.name})
            self.tracker.log_config(self.cfg)
            self.tracker.log_datasets(_task_datasets(self.cfg, self.family, self.sets))
        self.tracker.set_tags({"metanas.checkpoint": checkpoint_path(self.cfg.run.output_dir, self.tracker.run_id),
                               "metanas.ranks": self.dist.world})
        return self.tracker.run_id

    def architecture(self, params=None):
        params = self.learner.params() if params is None else params
        return self.arch if self.arch is not None else self.space.derive(alphas_of(params))

    def _snapshot(self, iteration: int) -> None:
        """softmax(alpha) at each validation, for the alpha-evolution plots."""
        alphas = alphas_of(self.learner.params())
        if alphas:
            self.history.append({"iteration": iteration,
                                 **{k: torch.softmax(v.float().cpu(), -1) for k, v in alphas.items()}})

    def checkpoint(self, iteration: int) -> None:
        params = self.model.state_dict()
        # Every rank applies the same averaged update, so all must hold the same bits: check it here, and
        # record it (a test reads the tag to see both ranks' parameters from outside).
        sums = self.dist.all_gather(distributed.checksum(params))
        self.tracker.set_tags({"metanas.rank_checksums": ",".join(sums)})
        if len(set(sums)) > 1:
            raise RuntimeError(f"ranks hold different parameters after iteration {iteration} (sha256 per rank: "
                               f"{', '.join(x[:12] for x in sums)}): a nondeterministic kernel or a bug")
        if self.dist.is_main:
            TrainingState(self.run_id, self.family.name, self.learner.ways, iteration, params,
                          self.learner.optimizer.state_dict(), self.learner.skipped,
                          rng_state(sampler=self.sampler, policy=self.learner.generator),
                          self.space.dump(self.architecture()), self.sets.train.format.to_dict(),
                          self.history, self.chosen).save(self.ckpt, self.cfg)

    def _evaluate(self, taskset, tasks: int, seed: int, **kw) -> Evaluation:
        inner = InnerLoop.for_adaptation(self.cfg, self.learner.ways, self.adaptation)
        return evaluate(self.model, self.learner.params(), taskset, tasks=tasks, inner=inner,
                        generator=torch.Generator().manual_seed(self.cfg.run.seed + seed), device=self.dist.device,
                        dist=self.dist, memory_budget=self.cfg.meta.memory_budget, **kw)

    def validate(self, iteration: int) -> Evaluation:
        ev = self._evaluate(self.sets.validation, self.cfg.meta.eval_tasks, VAL_SEED)
        learned = {f"lr_alpha/{k[len(LEARNED_LR):]}": v.exp().mean().item()  # inner.learn_lr_alpha: mean per alpha
                   for k, v in self.learner.params().items() if is_learned_lr(k)}
        self.tracker.log_metrics({"val/accuracy": ev.mean, "val/ci95": ev.ci95, **learned}, step=iteration)
        self._snapshot(iteration)
        return ev

    def stop_for_budget(self, done: int) -> None:
        self.validate(done)
        self.checkpoint(done)
        self.tracker.set_tags({"metanas.stopped_by_time_budget": done})

    def stop_for_signal(self, done: int, stop: list) -> None:
        self.checkpoint(done)
        self.tracker.end("KILLED")
        if self.dist.is_main:
            why = f"signal {stop[0]}" if stop else "a signal to another rank"
            print(f"metanas: stopped by {why} after iteration {done}; resume with: "
                  f"python -m metanas.meta_train --resume {self.run_id} (same config)", file=sys.stderr)
        raise KeyboardInterrupt

    def select_adaptation(self) -> bool:
        """With ``inner.select_steps``/``select_lr_alpha``: choose the evaluation-phase adaptation on validation
        tasks, use it from here on (the final test, the checkpoint) and log the table. Whether it chose."""
        i = self.cfg.inner
        if not (i.select_steps or i.select_lr_alpha) or self.learner.nonfinite:
            return False
        best, table = select_adaptation(
            self.model, self.learner.params(), self.sets.validation, tasks=i.select_tasks,
            inner=InnerLoop.for_adaptation(self.cfg, self.learner.ways, self.adaptation), steps=i.select_steps,
            lr_alphas=i.select_lr_alpha, seed=self.cfg.run.seed + SELECT_SEED, device=self.dist.device,
            dist=self.dist, progress=self.cfg.run.progress and self.dist.is_main, rule=i.select_rule)
        self.adaptation, self.chosen = Adaptation.from_dict(best), best
        self.tracker.log_dict({"chosen": best, "candidates": table}, "adaptation_selection.json")
        self.tracker.set_tags({"metanas.adaptation": f"steps={best['steps']} lr_alpha={best['lr_alpha']}"})
        return True

    def final_test(self) -> Evaluation:
        return self._evaluate(self.sets.test, self.cfg.meta.test_tasks, TEST_SEED, curve=True,
                              progress=self.cfg.run.progress and self.dist.is_main)

    def report(self, test: Evaluation, seconds: float, train_seconds: float) -> None:
        """Final metrics, architecture, plots and the checkpoint artifact, then close the MLflow run. The warm start
        is also the run's logged model (its checkpoint file, the test metrics): the checkpoint stays the original."""
        tracker = self.tracker
        for step, acc in enumerate(test.curve.mean(0).tolist()):
            tracker.log_metrics({"test/accuracy_at_step": acc}, step=step)
        step = self.cfg.meta.iterations
        model_id = tracker.log_model("warm_start", {WARM_START_FILE: self.ckpt}, step=step, model_type="warm start",
                                     params=flatten(self.cfg), tags={"metanas.kind": "warm_start",
                                                                     "metanas.family": self.family.name,
                                                                     "metanas.space": self.space.name})
        tracker.log_metrics({"test/accuracy": test.mean, "test/ci95": test.ci95}, step=step, model_id=model_id,
                            context="test")
        tracker.log_metrics({"wall_seconds": seconds, "train_seconds": train_seconds}, step=step)
        arch = self.architecture()
        tracker.log_dict(self.space.dump(arch), "genotype.json")
        if self.dist.is_main:
            _log_plots(tracker, self.cfg, self.space, self.learner.params(), arch, self.history, test,
                       self.learner.ways)
        tracker.log_artifact(self.ckpt, "checkpoint")
        tracker.end()


def _log_plots(tracker: Tracker, cfg: Config, space, params, arch, history: list[dict], test: Evaluation,
               ways: int) -> None:
    from metanas.track import plots

    # Learning curves come from the MLflow store, not from memory: a resumed run then plots its whole history.
    histories = tracker.metric_histories(["train/accuracy", "train/loss", "val/accuracy", "val/ci95"])
    figures = {
        "learning_curves.png": plots.plot_learning_curves(histories, f"meta-training ({cfg.task.family})"),
        "adaptation_curve.png": plots.plot_adaptation_curve(
            test.curve, f"test tasks: query accuracy vs adaptation step ({cfg.task.family})", ways),
        "genotype.png": space.draw(arch, f"meta-learned architecture ({cfg.task.family})"),
    }
    if alphas_of(params):  # a supernet (not a fixed child)
        labels = space.alpha_labels()
        figures["alphas.png"] = plots.plot_alphas(params, labels)
        figures["alpha_evolution.png"] = plots.plot_alpha_evolution(history, labels)
        figures["alpha_entropy.png"] = plots.plot_alpha_entropy(history, labels)
    for name, fig in figures.items():
        tracker.log_figure(fig, f"plots/{name}")
        plots.close(fig)


def _task_datasets(cfg: Config, family, sets) -> list[dict]:
    """The task family's splits as MLflow dataset inputs (the run page's Datasets): a description of what was
    sampled (data set, split, ways, shots, classes, tasks), not the images."""
    from metanas.data.images import user_cache

    source = family.root or str(Path(cfg.data.root or os.environ.get("METANAS_DATA") or user_cache() / "data")
                                .expanduser().resolve())
    tasks = {"train": cfg.meta.iterations * cfg.meta.meta_batch, "validation": cfg.meta.eval_tasks,
             "test": cfg.meta.test_tasks}
    contexts = {"train": "training", "validation": "validation", "test": "test"}
    return [{"name": f"{family.name}/{split}", "source": source, "context": contexts[split], "family": family.name,
             "dataset": family.dataset, "split": f"{family.split}/{split}", "ways": ts.ways, "shots": ts.shots,
             "queries": ts.queries, "classes": ts.num_classes, "tasks": tasks[split],
             "image": f"{ts.format.channels}x{ts.format.size}x{ts.format.size}",
             **({"sources": ts.name} if family.dataset == "mixture" else {})}
            for split, ts in sets._asdict().items() if ts is not None]
