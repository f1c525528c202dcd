"""Several warm starts on the same tasks: methods (each from several seeds) across task families, paired.

Every warm start of every method adapts to the same seeded tasks of each family, so two methods' per-task
accuracies pair: the task-to-task spread both share cancels, and a difference their unpaired CIs hide shows.
Per family and method: the mean over seeds of each seed's accuracy and the range of the seed means. The first
method is paired with each other one: the per-task accuracy averaged over seeds, one method's minus the other's,
with a Student's t 95% CI over tasks (:func:`paired`); ``vs best`` is the pair with the other method that scores
higher on that family. For a supernet first method, architecture adaptation's paired gain (its own adaptation
against alpha step 0 on the same tasks) and each variant (another :class:`~metanas.meta.adaptation.Adaptation`,
against the plain one) get a column each.

This is the protocol the results page's cross-domain figures use (``metanas compare``); until 2026-12-07 it was
``benchmarks/transfer.py``, whose tables it reproduces to the digit on the same warm starts and tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from metanas.core.errors import MetanasError
from metanas.estimation.stats import mean_ci95, rank_agreement


def paired(a: list[torch.Tensor], b: list[torch.Tensor]) -> tuple[float, float]:
    """``a - b`` on the same tasks: each side's per-task accuracy averaged over its warm starts (one per seed, seed
    ``s`` of one against seed ``s`` of the other), then the mean and 95% CI half-width of the per-task difference."""
    return mean_ci95(torch.stack(a).mean(0) - torch.stack(b).mean(0))


def _points(pair: tuple[float, float]) -> str:
    return f"{100 * pair[0]:+.2f} ± {100 * pair[1]:.2f}"


@dataclass
class Row:
    """One family: every method's per-task accuracies (one tensor per seed), and the first method's extra arms."""

    family: str
    role: str
    accuracies: dict[str, list[torch.Tensor]]
    fixed: list[torch.Tensor] | None = None  # the first method with alpha step 0 (a supernet only)
    variants: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def means(self, method: str) -> list[float]:
        return [a.mean().item() for a in self.accuracies[method]]


@dataclass
class Comparison:
    methods: list[str]
    variants: list[str]
    rows: list[Row]
    skipped: dict[str, str]  # family -> why it could not be evaluated
    tasks: int
    seed: int

    @property
    def first(self) -> str:
        return self.methods[0]

    @property
    def others(self) -> list[str]:
        return self.methods[1:]

    def best_other(self, row: Row) -> str | None:
        return max(self.others, key=lambda m: sum(row.means(m))) if self.others else None

    def table(self) -> tuple[list[str], list[list[str]]]:
        """``(head, rows)`` of the table, every cell a string (the markdown and the CSV)."""
        first, others = self.first, self.others
        head = ["family", "role", *[f"{m} (mean, seed range)" for m in self.methods],
                *[f"{first} - {m} (paired)" for m in others], f"{first} - best other",
                "arch adaptation gain", *[f"{v} - plain" for v in self.variants]]
        out = []
        for r in self.rows:
            cells = []
            for m in self.methods:
                v = r.means(m)
                cells.append(f"{100 * sum(v) / len(v):.2f} ({100 * min(v):.1f}-{100 * max(v):.1f})")
            best = self.best_other(r)
            extra = ["-"] * (1 + len(self.variants))
            if r.fixed is not None:
                extra = [_points(paired(r.accuracies[first], r.fixed)),
                         *[_points(paired(r.variants[v], r.accuracies[first])) for v in self.variants]]
            out.append([r.family, r.role, *cells, *[_points(paired(r.accuracies[first], r.accuracies[m])) for m in others],
                        f"{_points(paired(r.accuracies[first], r.accuracies[best]))} ({best})" if best else "-", *extra])
        return head, out

    def figure(self):
        """The paired differences with their 95% CIs, one group of bars per family: the first method against each
        other one, and architecture adaptation's gain."""
        from metanas.core.figures import subplots

        arms = [(f"{self.first} - {m}", lambda r, m=m: paired(r.accuracies[self.first], r.accuracies[m]))
                for m in self.others]
        if any(r.fixed is not None for r in self.rows):
            arms.append(("arch adaptation gain", lambda r: paired(r.accuracies[self.first], r.fixed)
                         if r.fixed is not None else (float("nan"), float("nan"))))
        fig, ax = subplots(figsize=(max(5.0, 1.3 * len(self.rows) * max(1, len(arms)) ** 0.5 + 2), 3.6))
        width = 0.8 / max(1, len(arms))
        for i, (name, arm) in enumerate(arms):
            values = [arm(r) for r in self.rows]
            xs = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(self.rows))]
            ax.bar(xs, [100 * v[0] for v in values], width, yerr=[100 * v[1] for v in values], capsize=3, label=name)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(self.rows)), [r.family for r in self.rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("paired difference (points, 95% CI)")
        ax.set_title(f"{self.first}: {self.tasks} tasks per family, {len(self.rows[0].accuracies[self.first]) if self.rows else 0} seed(s)",
                     fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return fig


def _accuracies(warm, family: str, tasks: int, seed: int, adaptation=None, encoder=None, split: str = "test",
                ways: int | None = None, shots: int | None = None):
    from metanas.estimation.warm import evaluate

    return evaluate(warm, family, tasks, seed=seed, adaptation=adaptation, encoder=encoder, curve=False,
                    split=split, ways=ways, shots=shots)[1].accuracies


def compare(methods: dict[str, list], families: list[tuple[str, str]], *, tasks: int, seed: int,
            variants: dict[str, dict] | None = None, encoders: dict | None = None, report=None,
            ways: int | None = None, shots: int | None = None) -> Comparison:
    """``methods``: name -> warm starts (one per seed, the same number each; the first method is paired with the
    others); ``families``: ``(name, role)`` pairs. ``variants``: name -> :meth:`Adaptation.replace` changes applied
    to each warm start of the first method. ``encoders``: ``id(warm start)`` -> a set encoder that sets each of its
    tasks' starting alpha. ``report(line)`` is told each family's result as it comes. ``ways``/``shots``: every
    family's tasks at that many ways and shots (a prototype head takes any). A family that cannot be evaluated (no
    data, other ways) is skipped with its reason."""
    from metanas.data import load_family

    variants, encoders = variants or {}, encoders or {}
    _check(methods)
    names = list(methods)
    first = methods[names[0]]
    rows, skipped = [], {}
    for family, role in families:
        acc = lambda w, adaptation=None: _accuracies(w, family, tasks, seed, adaptation, encoders.get(id(w)),
                                                     ways=ways, shots=shots)
        try:
            load_family(family)
            row = Row(family, role, {m: [acc(w) for w in ws] for m, ws in methods.items()})
        except MetanasError as e:
            skipped[family] = str(e)
            if report:
                report(f"{family}: skipped ({e})")
            continue
        if first[0].is_supernet:
            row.fixed = [acc(w, w.adaptation.replace(lr_alpha=0.0)) for w in first]
            row.variants = {v: [acc(w, w.adaptation.replace(**changes)) for w in first] for v, changes in variants.items()}
        rows.append(row)
        if report:
            report(f"{family}: " + ", ".join(f"{m} {100 * sum(row.means(m)) / len(row.means(m)):.2f}" for m in names))
    return Comparison(names, list(variants), rows, skipped, tasks, seed)


def compare_as_trained(methods: dict[str, list], *, tasks: int | None = None) -> Comparison:
    """Each warm start re-tested as its meta-training tested it (:func:`metanas.api.retest`: its family's test set,
    ``task.queries`` queries per class, the tasks its ``run.seed`` draws; ``tasks`` of them, default its
    ``meta.test_tasks``), so each accuracy is the one meta-training printed; seed ``s`` of every method must share the
    family, the queries and the seed to pair."""
    from metanas.estimation.warm import retest

    _check(methods)
    names = list(methods)
    for s, group in enumerate(zip(*methods.values())):
        keys = {(w.config.task.family, w.config.task.queries, w.config.run.seed) for w in group}
        if len(keys) > 1:
            raise MetanasError(f"--as-trained pairs warm starts tested on the same tasks, but seed {s}'s warm starts "
                               f"differ in (family, queries, run.seed): {sorted(keys)}; compare them on the same "
                               "family with --families instead")
    w0 = methods[names[0]][0]
    row = Row(w0.config.task.family, "as trained", {m: [retest(w, tasks).accuracies for w in ws] for m, ws in methods.items()})
    return Comparison(names, [], [row], {}, int(row.accuracies[names[0]][0].numel()), w0.config.run.seed)


def rank(methods: dict[str, list], validation: list[str], targets: list[str], *, tasks: int, target_tasks: int,
         seed: int) -> tuple[list[str], list[list[str]]]:
    """Robustness as a selection criterion: does each validation family (scored on its validation classes) rank the
    warm starts as each target family (scored on its test classes) does? ``(head, rows)``: Kendall's tau over warm
    starts and over method means, the method the validation picks, and its target accuracy minus the best
    method's (:func:`metanas.estimation.stats.rank_agreement`)."""
    if len(methods) < 2:
        raise MetanasError("--rank compares how families rank methods: give at least two --method")
    _check(methods)
    score = {}
    for family, split, n in [(f, "validation", tasks) for f in validation] + [(f, "test", target_tasks) for f in targets]:
        for m, warms in methods.items():
            score[family, m] = [_accuracies(w, family, n, seed, split=split).mean().item() for w in warms]
    rows = []
    for v in validation:
        for t in targets:
            a = rank_agreement({m: score[v, m] for m in methods}, {m: score[t, m] for m in methods})
            rows.append([v, t, f"{a['tau']:+.3f} (p = {a['p']:.3f})", f"{a['tau_methods']:+.3f}", a["picked"],
                         f"{100 * a['regret']:+.2f}"])
    return ["validation", "target", "tau over warm starts", "tau over methods", "validation picks",
            "its target accuracy - the best method's"], rows


def _check(methods: dict[str, list]) -> None:
    if not methods or any(not ws for ws in methods.values()):
        raise MetanasError("give at least one method with at least one warm start: --method NAME=RUN[,RUN...]")
    if len({len(ws) for ws in methods.values()}) != 1:
        raise MetanasError("every method needs the same number of warm starts (one per seed, paired seed by seed): "
                           + ", ".join(f"{m} has {len(ws)}" for m, ws in methods.items()))
