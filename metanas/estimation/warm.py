"""A warm start's performance on task families: the seeded evaluation of a family, its own test again, the choice
of its adaptation on its validation tasks, its architecture moved to a new domain, and a set encoder fitted on its
training tasks. :mod:`metanas.api` exposes these as the Python API; the CLI commands call them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from metanas.config import Config, replace as replace_config
from metanas.core.errors import MetanasError
from metanas.data import get_tasksets, load_family
from metanas.estimation.loop import Evaluation
from metanas.meta.adaptation import Adaptation
from metanas.meta.inner import InnerLoop
from metanas.meta.warm_start import WarmStart


def tasksets(cfg: Config, warm_format=None):
    """The train/validation/test task sets of a run's config (``task.*``, ``data.*``): what meta-training samples,
    validates and tests on (``baselines.py --warm`` re-tests a warm start on the same)."""
    return get_tasksets(load_family(cfg.task.family), cfg.data.root, cfg.task.ways, cfg.task.shots, cfg.task.queries,
                        cfg.data.skip_corrupt, warm_format=warm_format, leave_out=cfg.task.leave_out)


def _tasksets(warm: WarmStart, family: str, data_root: str | None, ways: int | None = None,
              shots: int | None = None):
    """``(TaskFamily, its train/validation/test task sets)`` in the warm start's input format, with ``ways`` and
    ``shots`` where given instead of the family's."""
    fam = load_family(family)
    overrides = {k: v for k, v in (("ways", ways), ("shots", shots)) if v is not None}
    warm.check_family(dataclasses.replace(fam, **overrides) if overrides else fam)
    # a mixture leaves out what the warm start's run left out (the rest of its leave_out names other families)
    leave_out = [n for n in warm.config.task.leave_out if n in fam.source_names]
    return fam, get_tasksets(fam, data_root or warm.config.data.root, ways=ways, shots=shots,
                             skip_corrupt=warm.config.data.skip_corrupt, warm_format=warm.image, leave_out=leave_out)


def evaluate(warm: WarmStart, family: str, tasks: int = 600, *, seed: int = 0, adaptation: Adaptation | None = None,
             split: str = "test", encoder=None, data_root: str | None = None, chunk: int = 10, curve: bool = True,
             progress: bool = False, dist=None, ways: int | None = None, shots: int | None = None
             ) -> tuple[Any, Evaluation]:
    """Adapt to ``tasks`` tasks of ``family``'s ``split`` (``test``, or ``validation`` to choose among warm starts
    without touching test classes), seeded by ``seed``, as ``adaptation`` says (default: the warm start's own):
    ``(TaskFamily, Evaluation)``; ``encoder``: a :class:`metanas.estimation.set_encoder.SetEncoder`
    (:func:`fit_set_encoder`) that sets each task's starting alpha from its support images. ``ways``/``shots``:
    tasks of that many classes and shots instead of the family's (other ways need a prototype head)."""
    from metanas.estimation.loop import evaluate as run

    if split not in ("test", "validation"):
        raise MetanasError(f"split {split!r}: use test or validation")
    fam, sets = _tasksets(warm, family, data_root, ways, shots)
    if getattr(sets, split) is None:
        raise MetanasError(f"{family} has no {split} split (its classes are all test classes): use a family with "
                           "train/validation/test classes")
    inner = warm.inner_loop(adaptation, ways=getattr(sets, split).ways)
    device = warm.device
    ev = run(warm.model, warm.params, getattr(sets, split), tasks=tasks, inner=inner,
             generator=torch.Generator().manual_seed(seed), chunk=chunk, curve=curve, progress=progress, device=device,
             dist=dist, start=None if encoder is None else encoder.start, memory_budget=warm.config.meta.memory_budget)
    return fam, ev


def _own_tasksets(warm: WarmStart, data_root: str | None):
    """The train/validation/test task sets of ``warm``'s own meta-training (its config's family and leave_out), in
    its input format; ``data_root`` overrides where the data are."""
    cfg = warm.config if not data_root else replace_config(warm.config, {"data.root": data_root})
    return tasksets(cfg, warm_format=warm.image)


def retest(warm: WarmStart, tasks: int | None = None) -> Evaluation:
    """Test ``warm`` again as its meta-training tested it: its family's test set with ``task.queries`` queries per
    class, the tasks its ``run.seed`` draws, its evaluation inner loop (``tasks``: default ``meta.test_tasks``). The
    accuracy is the one meta-training printed, to the digit, so two runs with the same family, queries and seed
    pair task by task (``metanas compare --as-trained``)."""
    from metanas.estimation.loop import evaluate as run
    from metanas.estimation.seeds import TEST_SEED

    cfg = warm.config
    return run(warm.model, warm.params, _own_tasksets(warm, None).test,
               tasks=cfg.meta.test_tasks if tasks is None else tasks, inner=warm.inner_loop(),
               generator=torch.Generator().manual_seed(cfg.run.seed + TEST_SEED), device=warm.device,
               memory_budget=cfg.meta.memory_budget)


def select_adaptation(warm: WarmStart, steps: list[int] = (), lr_alpha: list[float] = (), *, tasks: int = 200,
                      seed: int | None = None, data_root: str | None = None, progress: bool = False,
                      rule: str | None = None) -> tuple[dict, list[dict]]:
    """Choose how ``warm`` adapts, on ``tasks`` tasks of its own validation split (a mixture's held-out
    sources): every combination of ``steps`` and ``lr_alpha`` adapts the same tasks. ``(best, table)``; adapt with
    the best by ``warm.with_adaptation(Adaptation.from_dict(best))``, keep it in the checkpoint with
    :func:`metanas.meta.checkpoint.write_adaptation`. ``seed``: of the tasks (default ``run.seed`` + 3, neither
    the validation tasks logged during meta-training nor the test tasks). ``rule``: ``latency`` (the fewest steps
    tied with the most accurate) or ``accuracy`` (default: the warm start's ``inner.select_rule``)."""
    from metanas.config import SELECT_RULES
    from metanas.estimation.seeds import SELECT_SEED
    from metanas.estimation.selection import select_adaptation as choose

    for name, values in (("steps", steps), ("lr_alpha", lr_alpha)):
        if any(v < 0 for v in values):
            raise MetanasError(f"{name} (--{name.replace('_', '-')}) {list(values)}: every value must be >= 0")
    if tasks < 1:
        raise MetanasError(f"tasks (--tasks) {tasks}: must be >= 1")
    rule = rule or warm.config.inner.select_rule
    if rule not in SELECT_RULES:
        raise MetanasError(f"rule (--rule) {rule!r}: use one of {', '.join(SELECT_RULES)}")
    inner = warm.inner_loop()
    cfg = warm.config
    validation = _own_tasksets(warm, data_root).validation
    if validation is None:
        raise MetanasError(f"{cfg.task.family} has no validation split to choose the adaptation on: meta-train "
                           "on a family with validation classes or sources")
    device = warm.device
    return choose(warm.model, warm.params, validation, tasks=tasks, inner=inner, steps=list(steps),
                  lr_alphas=list(lr_alpha), seed=cfg.run.seed + SELECT_SEED if seed is None else seed, device=device,
                  progress=progress, rule=rule)


def _alpha_loop(warm: WarmStart, adaptation: Adaptation | None, what: str) -> InnerLoop:
    """The inner loop of tasks whose adapted alphas a method learns from (:func:`adapt_domain`,
    :func:`fit_set_encoder`): refused, in one line, for a fixed architecture or an alpha step of 0."""
    if not warm.is_supernet:
        raise MetanasError(f"the warm start is a fixed architecture ({warm.space.describe(warm.arch)}): only a "
                           f"supernet's architecture {what}")
    inner = warm.inner_loop(adaptation)
    if not inner.adapts_arch:
        raise MetanasError("the tasks would adapt with alpha step 0 and leave alpha where it is: give an alpha step "
                           "> 0 (--lr-alpha)")
    return inner


def adapt_domain(warm: WarmStart, family: str, tasks: int = 50, *, rounds: int = 1, seed: int | None = None,
                 adaptation: Adaptation | None = None, data_root: str | None = None,
                 progress: bool = False) -> tuple[WarmStart, dict]:
    """``warm``'s architecture moved to a new domain: ``tasks`` labelled tasks of ``family`` (its validation split
    where it has one, else other tasks of its test classes) are adapted as usual, w and alpha, and the mean of their
    adapted alphas becomes the alpha of a copy of ``warm`` (``rounds`` times, each round from the last; round ``r``'s
    tasks have seed ``seed + r``, default ``run.seed + DOMAIN_SEED``; ``adaptation``: theirs, default the warm start's). The weights stay the warm start's: every task still adapts them (and alpha, per task) from
    there, with the same adaptation (the copy's :attr:`WarmStart.adaptation`). Returns the copy and what calibrated
    it."""
    import copy

    from metanas.estimation.loop import evaluate as run

    from metanas.estimation.seeds import DOMAIN_SEED

    if tasks < 1 or rounds < 1:
        raise MetanasError(f"tasks (--tasks) {tasks}, rounds (--rounds) {rounds}: both must be >= 1")
    inner = _alpha_loop(warm, adaptation, "adapts to a domain")
    seed = warm.config.run.seed + DOMAIN_SEED if seed is None else seed
    _, sets = _tasksets(warm, family, data_root)
    # a family of test classes only (e.g. digits): other tasks of the same classes
    split = "validation" if sets.validation is not None else "test"
    info = {"family": family, "split": split, "tasks": tasks, "rounds": rounds, "seed": seed}
    # the domain's tasks adapt the same way as the calibration's
    domain = dataclasses.replace(warm, model=copy.deepcopy(warm.model), domain=info,
                                 adaptation=Adaptation(steps=inner.steps, lr_alpha=inner.lr_alpha))
    device = domain.device
    for r in range(rounds):
        ev = run(domain.model, domain.params, getattr(sets, split), tasks=tasks, inner=inner,
                 generator=torch.Generator().manual_seed(seed + r), progress=progress, device=device,
                 memory_budget=warm.config.meta.memory_budget)
        with torch.no_grad():
            for name, p in domain.model.named_parameters():
                if name in ev.alphas:
                    p.copy_(ev.alphas[name].mean(0))
    return domain, info


def fit_set_encoder(warm: WarmStart, tasks: int = 1000, *, seed: int | None = None,
                    adaptation: Adaptation | None = None, epochs: int = 50, data_root: str | None = None,
                    progress: bool = False):
    """A set encoder that predicts, from a task's support images, the alpha its adaptation would reach (zero steps on
    alpha): trained on ``tasks`` tasks of ``warm``'s training split, each adapted with ``warm``'s adaptation (or
    ``adaptation``) as the teacher. Returns a :class:`metanas.estimation.set_encoder.Fit`
    (``.encoder`` for :func:`evaluate`, ``.r2``: how much of the held-out tasks' alpha moves it explains).
    ``seed``: of the tasks and the encoder's initial weights (default ``run.seed`` + ``ENCODER_SEED``)."""
    from metanas.estimation.seeds import ENCODER_SEED
    from metanas.estimation.set_encoder import fit

    if tasks < 2:
        raise MetanasError(f"tasks (--tasks) {tasks}: a set encoder needs at least 2 (some to fit, some to score)")
    inner = _alpha_loop(warm, adaptation, "has an alpha to predict")
    train = _own_tasksets(warm, data_root).train
    return fit(warm.model, warm.params, train, inner=inner, channels=warm.image.channels, tasks=tasks, epochs=epochs,
               seed=warm.config.run.seed + ENCODER_SEED if seed is None else seed, device=warm.device, progress=progress)


def architectures(warm: WarmStart, ev: Evaluation) -> list:
    """Each evaluated task's adapted architecture."""
    return [warm.derive({k: v[i] for k, v in ev.alphas.items()}) for i in range(ev.accuracies.numel())]
