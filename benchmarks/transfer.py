"""Warm starts of several methods (each from several seeds) across task distributions: one table per suite.

    python benchmarks/transfer.py --method default=RUN0,RUN1,RUN2 --method conv4_32=RUN0,RUN1,RUN2 \
        [--method conv4_64=...] [--suite domains | --families A,B] [--tasks 200] [--output-dir runs] \
        [--inner inner.KEY=VALUE,...] [--variant NAME:inner.KEY=VALUE,...] [--encoder N] [--csv FILE]

Every warm start is adapted to the same ``--tasks`` test tasks of each family (seed ``--seed``). Per family and
method: the mean over seeds of each seed's accuracy, and the spread (min-max) of the seed means. The first method
is compared with each other one, paired: the per-task difference, averaged over seeds (seed s of one method
against seed s of the other), with a Student's t 95% CI over tasks; ``vs best`` is the comparison with the
other method that scores higher on that family. For supernet methods, architecture adaptation's paired gain
(alpha and w adapted minus w only, same tasks) and each ``--variant`` (inner-loop settings changed at
adaptation time, e.g. ``steps10:inner.eval_steps=10``) against the plain adaptation, also paired. ``--inner``
sets the plain adaptation itself, for every warm start (e.g. ``inner.eval_steps=10,inner.eval_lr_alpha=3.0``:
every column, the architecture adaptation gain included, at those settings). Without it each warm start adapts as its
checkpoint says: with the setting ``metanas select-adaptation`` chose and kept there, where it did. ``--encoder N``:
each supernet warm start of the first method starts every task from the alpha a set encoder predicts from its support
images (:func:`metanas.api.fit_set_encoder`, trained on N tasks of the warm start's own training split), in every
column of that method, the architecture adaptation gain included.

A RUN is a run id under ``--output-dir`` (or ``DIR:RUN_ID``) or a checkpoint path. Families a warm start cannot
evaluate (data not present) are skipped with their reason.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys

import torch

from metanas import api
from metanas.data import load_family
from metanas.data.suites import suite_families
from metanas.core.errors import MetanasError
from metanas.estimation.stats import mean_ci95
from metanas.core.tables import csv_text, markdown


def _load(ref: str, output_dir: str):
    folder, _, run = ref.rpartition(":")
    return api.load(run, folder or output_dir)


def _settings(option: str, body: str) -> dict:
    """``inner.KEY=VALUE,...`` as ``{KEY: VALUE}``."""
    pairs = [kv.split("=", 1) for kv in body.split(",") if kv]
    if not pairs or any(len(p) != 2 or not p[0].startswith("inner.") for p in pairs):
        raise SystemExit(f"transfer.py: {option} {body!r}: give inner.KEY=VALUE[,inner.KEY=VALUE]")
    return {k.removeprefix("inner."): v for k, v in pairs}


def _variant(spec: str) -> tuple[str, dict]:
    name, _, body = spec.partition(":")
    if not name:
        raise SystemExit(f"transfer.py: --variant {spec!r}: give NAME:inner.KEY=VALUE[,inner.KEY=VALUE]")
    return name, _settings("--variant", body)


def _with_inner(warm, settings: dict):
    """A shallow copy of the warm start whose config's inner loop has ``settings`` (YAML-typed values)."""
    import yaml

    other = dataclasses.replace(warm, config=copy.deepcopy(warm.config))
    for key, value in settings.items():
        if not hasattr(other.config.inner, key):
            raise SystemExit(f"transfer.py: inner.{key} is not an inner-loop setting")
        setattr(other.config.inner, key, yaml.safe_load(value))
    return other


def load_methods(specs: list[str], output_dir: str, inner: str | None) -> dict[str, list]:
    """``--method NAME=RUN[,RUN...]`` values as ``{NAME: warm starts}``, each adapting as ``--inner`` sets
    (``inner.KEY=VALUE,...``; None: as its checkpoint says)."""
    settings = _settings("--inner", inner) if inner else {}
    methods = {}
    for spec in specs:
        name, _, refs = spec.partition("=")
        methods[name] = [_with_inner(_load(r, output_dir), settings) for r in refs.split(",") if r]
        if not methods[name]:
            raise SystemExit(f"{sys.argv[0]}: --method {spec!r}: give NAME=RUN[,RUN...]")
    return methods


def emit(head: list[str], rows: list[list[str]], csv: str | None) -> None:
    """The table in markdown on stdout, and as CSV in ``csv`` where given."""
    print(markdown(head, rows))
    if csv:
        with open(csv, "w") as f:
            f.write(csv_text(head, rows))


def _accuracies(warm, family: str, tasks: int, seed: int, adapt_arch: bool = True, encoder=None) -> torch.Tensor:
    return api.evaluate(warm, family, tasks, seed, adapt_arch=adapt_arch, curve=False, encoder=encoder)[1].accuracies


def fit_encoders(warms: list, tasks: int, who: str) -> list:
    """A set encoder per warm start (:func:`metanas.api.fit_set_encoder` on ``tasks`` of its training tasks), each
    fit's held-out R^2 printed; a refusal is one line naming ``who``."""
    fits = []
    for i, warm in enumerate(warms):
        try:
            fit = api.fit_set_encoder(warm, tasks)
        except MetanasError as e:
            raise SystemExit(f"{who}: {e}") from None
        print(f"set encoder {i}: {fit.tasks} training tasks, R^2 on {fit.held_out} held out: encoder {fit.r2:.3f}, "
              f"mean move {fit.mean_r2:.3f}, no move {fit.zero_r2:.3f}", flush=True)
        fits.append(fit)
    return fits


def _paired(a: list[torch.Tensor], b: list[torch.Tensor]) -> str:
    mean, ci = mean_ci95(torch.stack(a).mean(0) - torch.stack(b).mean(0))
    return f"{100 * mean:+.2f} ± {100 * ci:.2f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", action="append", required=True, metavar="NAME=RUN[,RUN...]",
                   help="a method and its warm starts, one per seed; the first method is compared with the others")
    p.add_argument("--suite", default="domains", help="suite of the first warm start (default domains)")
    p.add_argument("--families", help="comma-separated families instead of a suite")
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="seed of the test tasks")
    p.add_argument("--variant", action="append", default=[], help="NAME:inner.KEY=VALUE,...: adaptation settings "
                   "compared (paired) with the plain adaptation, for supernet methods")
    p.add_argument("--inner", help="inner.KEY=VALUE,...: the plain adaptation's settings, for every warm start")
    p.add_argument("--encoder", type=int, default=0, help="the first method's tasks start from a set encoder's alpha, "
                   "trained on this many of its training tasks (0: none)")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--csv", help="also write the table as CSV here")
    args = p.parse_args(argv)
    methods = load_methods(args.method, args.output_dir, args.inner)
    seeds = {len(w) for w in methods.values()}
    if len(seeds) != 1:
        raise SystemExit("transfer.py: every method needs the same number of warm starts (one per seed)")
    variants = [_variant(v) for v in args.variant]
    first, others = list(methods)[0], list(methods)[1:]
    warm0 = methods[first][0]
    fits = fit_encoders(methods[first], args.encoder, f"transfer.py: {first}") if args.encoder else []
    encoders = {id(w): f.encoder for w, f in zip(methods[first], fits)}  # id(warm start) -> its set encoder
    acc_of = lambda w, family, **kw: _accuracies(w, family, args.tasks, args.seed, encoder=encoders.get(id(w)), **kw)
    if args.families:
        families = [(n, "") for n in args.families.split(",")]
    else:
        families = suite_families(args.suite, warm0.family, warm0.config.task.leave_out)
    print(f"{first} vs {', '.join(others)}; {seeds.pop()} seed(s); {args.tasks} tasks per family; test seed "
          f"{args.seed}", flush=True)
    head = ["family", "role", *[f"{m} (mean, seed range)" for m in methods],
            *[f"{first} - {m} (paired)" for m in others], f"{first} - best other",
            "arch adaptation gain", *[f"{v} - plain" for v, _ in variants]]
    rows = []
    for family, role in families:
        try:
            load_family(family)
            acc = {m: [acc_of(w, family) for w in ws] for m, ws in methods.items()}
        except MetanasError as e:
            print(f"{family}: skipped ({e})", flush=True)
            continue
        means = {m: [a.mean().item() for a in accs] for m, accs in acc.items()}
        cells = [f"{100 * sum(v) / len(v):.2f} ({100 * min(v):.1f}-{100 * max(v):.1f})" for v in means.values()]
        diffs = [_paired(acc[first], acc[m]) for m in others]
        best = max(others, key=lambda m: sum(means[m])) if others else None
        extra = ["-"] * (1 + len(variants))
        if methods[first][0].is_supernet:
            fixed = [acc_of(w, family, adapt_arch=False) for w in methods[first]]
            extra = [_paired(acc[first], fixed)]
            for _, settings in variants:
                alt = [_accuracies(_with_inner(w, settings), family, args.tasks, args.seed, encoder=encoders.get(id(w)))
                       for w in methods[first]]
                extra.append(_paired(alt, acc[first]))
        row = [family, role, *cells, *diffs, f"{_paired(acc[first], acc[best])} ({best})" if best else "-", *extra]
        rows.append(row)
        print(" | ".join(row), flush=True)
    emit(head, rows, args.csv)


if __name__ == "__main__":
    sys.exit(main())
