"""Evaluation suites: which task families a warm start is evaluated on, and what each is to it.

- ``shift``: the warm start's own family, then the families of its domain (the same channels: grayscale strokes
  or colour photographs) that shift it, are held out, or come from another data set. An Omniglot warm start gets
  Omniglot's shift families, digits, fonts and the MNIST-style sets; a miniImageNet one gets miniImageNet's
  colour shifts, CUB, CIFAR-FS and tieredImageNet test tasks.
- ``domains``: leave-one-domain-out. A mixture's sources one by one (each a domain: trained, or left out with
  ``task.leave_out``), its validation-only sources, the families in distribution (same classes and ways/shots,
  no new shift: clean Omniglot for shifted Omniglot), then the ``shift`` families of its first source.

Every family gets a *role*: ``trained`` (a source meta-training sampled), ``in distribution`` (the classes
and shifts of a trained source, e.g. clean Omniglot for a family trained on clean|rotated|noisy Omniglot),
``validation`` (only validated on), ``left out`` (a source this run left out) or ``held out`` (never seen).

The cross-domain benchmarks (:mod:`metanas.data.crossdomain`) are suites of their own, one row per source and
setting, each role followed by the source's role in its paper:

- ``meta-dataset``: Meta-Dataset's ten sources. Protocol ``fixed`` (the fixed-way-and-shot setup): 5-way 1-shot
  and 5-way 5-shot, 15 queries per class; protocol ``variable``: Meta-Dataset's variable-way, variable-shot
  episodes (``episodes: meta-dataset``, :mod:`metanas.data.episodes`), which need a warm start whose head takes
  the episodes' most ways.
- ``bscd``: BSCD-FSL's four test-only sources at 5-way 5, 20 and 50 shots, 15 queries per class (600 tasks: the
  paper's episodes, and ``metanas evaluate``'s default).
"""

from __future__ import annotations

from metanas.data import crossdomain
from metanas.data.families import TaskFamily, list_families, load_family
from metanas.core.errors import MetanasError

SUITES = ("shift", "domains", *crossdomain.SUITES)
PROTOCOLS = {"meta-dataset": ("fixed", "variable"), "bscd": ("fixed",)}
SHOTS = {"meta-dataset": (1, 5), "bscd": (5, 20, 50)}  # the fixed protocols' shots, 5-way, 15 queries


def _same_tasks(f: TaskFamily):
    return (f.dataset, f.split, f.classes, f.shifts, f.compose, f.shots, f.image_size, f.rotations, f.invert)


def _shift_names(own: TaskFamily, families: dict[str, TaskFamily], exclude: set) -> list[str]:
    seen, names = {_same_tasks(own)} | exclude, []
    for n, f in families.items():
        if f.dataset in crossdomain.SOURCES and own.dataset not in crossdomain.SOURCES:
            continue  # the cross-domain benchmarks are suites of their own (``meta-dataset``, ``bscd``)
        if f.dataset != "mixture" and f.channels == own.channels and _same_tasks(f) not in seen \
                and (f.shifts or f.held_out or f.split == "all" or f.dataset != own.dataset):
            seen.add(_same_tasks(f))  # e.g. cub-5way-1shot and the cross-domain miniimagenet-cub-5way-1shot
            names.append(n)
    return names


def role(family: TaskFamily, home: TaskFamily, leave_out=()) -> str:
    """What ``family`` is to a warm start meta-trained on ``home`` with ``leave_out`` (see the module doc)."""
    if family.name in leave_out:
        return "left out"
    trained = [f for f, _ in home.source_families(leave_out)[0]] if home.dataset == "mixture" else [home]
    if family.name in [f.name for f in trained]:
        return "trained"
    if home.dataset == "mixture" and family.name in home.validation_sources:
        return "validation"
    for t in trained:
        if (family.dataset, family.split, family.classes, family.rotations, family.invert) == \
                (t.dataset, t.split, t.classes, t.rotations, t.invert) \
                and {s.name for s in family.shifts} - {"clean"} <= {s.name for s in t.shifts}:
            return "in distribution"
    return "held out"


def _in_distribution(f: TaskFamily, home: TaskFamily) -> bool:
    return f.dataset != "mixture" and (f.ways, f.shots) == (home.ways, home.shots) \
        and role(f, home) == "in distribution"


def benchmark_families(suite: str, protocol: str = "fixed") -> list[str]:
    """The task families of a cross-domain suite under ``protocol``, source by source in the paper's order."""
    if protocol not in PROTOCOLS[suite]:
        raise MetanasError(f"suite {suite} has no protocol {protocol!r}: use one of {', '.join(PROTOCOLS[suite])}")
    if protocol == "variable":
        return [f"{s.name}-variable" for s in crossdomain.sources(suite)]
    return [f"{s.name}-5way-{k}shot" for s in crossdomain.sources(suite) for k in SHOTS[suite]]


def suite_families(suite: str, home: str, leave_out=(), protocol: str = "fixed") -> list[tuple[str, str]]:
    """``(family name, role)`` of ``suite`` for a warm start meta-trained on family ``home`` (``protocol``: of the
    cross-domain suites)."""
    if suite not in SUITES:
        raise MetanasError(f"unknown suite {suite!r}: use one of {', '.join(SUITES)}")
    if suite in crossdomain.SUITES:
        own = load_family(home)
        names = benchmark_families(suite, protocol)
        return [(n, f"{'trained' if n == home else role(f, own, leave_out)}; "
                    f"{crossdomain.SUITES[suite]}: {crossdomain.SOURCES[f.dataset].role}")
                for n, f in ((n, load_family(n)) for n in names)]
    if protocol != "fixed":
        raise MetanasError(f"--protocol {protocol} is for the suites {', '.join(crossdomain.SUITES)}; suite {suite} "
                           "evaluates each family as its YAML says")
    own = load_family(home)
    families = {n: load_family(n) for n in list_families()}  # each YAML read once
    families.update({n: load_family(n) for n in own.source_names if n not in families})  # sources given by path
    if own.dataset != "mixture":
        names = [home] + _shift_names(own, families, set())
    elif suite == "shift":
        names = [home] + _shift_names(families[own.sources[0][0]], families, set())
    else:
        listed = own.source_names
        names = listed + [n for n, f in families.items() if n not in listed and _in_distribution(f, own)]
        names += _shift_names(families[own.sources[0][0]], families, {_same_tasks(families[n]) for n in names})
    return [(n, "trained" if n == home else role(families[n], own, leave_out)) for n in names]
