"""How well the search estimator ranks children: weight-sharing scores against stand-alone meta-training.

Children of the warm start's space: ``children`` drawn uniformly at random (distinct, seeded), the child the search
picks (regularized evolution, ``search_budget`` evaluations) and the warm start's argmax child. Each gets

* its **weight-sharing score**: the child cut out of the supernet, adapted on ``val_tasks`` validation tasks (what
  ``metanas search`` ranks candidates by; the same tasks for every child);
* its **stand-alone accuracy**: the child meta-trained from scratch with the warm start's own config for
  ``iterations`` meta-iterations (a fixed count: reproducible at any machine speed), tested on ``test_tasks``
  held-out tasks (seeded by ``run.seed``: the same tasks for every child).

Kendall's tau and Spearman's rho between the two (scipy) say whether weight sharing ranks children as training them
alone does (the question of Yu et al. 2020, "Evaluating the search phase of NAS"); the searched child is paired with
the mean random child on the same test tasks.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from metanas.config import load_config, to_yaml
from metanas.core.errors import MetanasError
from metanas.core.tables import csv_text, markdown, pct
from metanas.estimation.loop import Evaluation
from metanas.estimation.stats import mean_ci95
from metanas.estimation.warm import tasksets
from metanas.search.driver import run_strategies, scorers


@dataclass
class Child:
    kind: str  # random, searched or argmax
    arch: object
    score: Evaluation  # weight sharing, validation tasks
    alone: Evaluation  # stand-alone meta-training, test tasks
    iterations: int


@dataclass
class Ranking:
    children: list[Child]
    describe: object  # the space's one-line description of an architecture
    dump: object  # the space's JSON of an architecture

    def correlations(self) -> dict[str, float]:
        from scipy.stats import kendalltau, spearmanr

        ws, alone = [c.score.mean for c in self.children], [c.alone.mean for c in self.children]
        tau, p_tau = kendalltau(ws, alone)
        rho, p_rho = spearmanr(ws, alone)
        return {"tau": float(tau), "p_tau": float(p_tau), "rho": float(rho), "p_rho": float(p_rho)}

    def rank(self, i: int) -> int:
        """Child ``i``'s rank by stand-alone accuracy (1: the best)."""
        return 1 + sum(c.alone.mean > self.children[i].alone.mean for c in self.children)

    def over_random(self, kind: str) -> tuple[float, float]:
        """The ``kind`` child minus the mean random child, paired over the test tasks: mean and 95% CI."""
        randoms = torch.stack([c.alone.accuracies for c in self.children if c.kind == "random"]).mean(0)
        return mean_ci95(next(c for c in self.children if c.kind == kind).alone.accuracies - randoms)

    def markdown(self, test_tasks: int) -> str:
        return markdown(["#", "child", "weight-sharing score", f"stand-alone accuracy ({test_tasks} tasks)",
                         "stand-alone rank", "architecture"],
                        [[i, c.kind, f"{100 * c.score.mean:.1f}%", pct(c.alone.mean, c.alone.ci95), self.rank(i),
                          self.describe(c.arch)] for i, c in enumerate(self.children)])

    def csv(self) -> str:
        return csv_text(["child", "weight_sharing", "stand_alone", "stand_alone_ci95", "iterations", "architecture"],
                        [[c.kind, c.score.mean, c.alone.mean, c.alone.ci95, c.iterations, json.dumps(self.dump(c.arch))]
                         for c in self.children])


def draw_children(warm, n: int, seed: int, search_budget: float, sets, val_tasks: int) -> list[tuple[str, object]]:
    """``(kind, architecture)``: ``n`` distinct random children, the searched one and the argmax one."""
    encoding, rng = warm.space.encoding(), random.Random(seed)
    drawn: dict[str, object] = {}
    while len(drawn) < min(n, encoding.size):
        arch = encoding.decode(encoding.sample(rng))
        drawn.setdefault(json.dumps(warm.space.dump(arch)), arch)
    found = run_strategies(["evolution"], warm, sets, search_budget, val_tasks, 2, None, seed)[0].best.genotype
    return [*(("random", a) for a in drawn.values()), ("searched", found), ("argmax", warm.derive())]


def rank_children(warm, *, children: int = 12, iterations: int = 300, val_tasks: int = 40, test_tasks: int = 100,
                  search_budget: float = 50, seed: int = 0, output_dir: str = "runs", overrides: list[str] = (),
                  report=None) -> Ranking:
    """Every child scored both ways (see the module's docstring); ``overrides`` (``key=value``) change the
    stand-alone meta-training; ``report(line)`` is told each child as it is done."""
    from metanas.training.loop import train

    if not warm.is_supernet:
        raise MetanasError("ranking children needs a supernet warm start (this checkpoint is a fixed architecture "
                           f"{warm.space.describe(warm.arch)})")
    if children < 2 or iterations < 1 or val_tasks < 1 or test_tasks < 2:
        raise MetanasError("--rank-children must be >= 2, --child-iterations >= 1, --val-tasks >= 1, --test-tasks >= 2")
    sets = tasksets(warm.config, warm.image)
    kids = draw_children(warm, children, seed, search_budget, sets, val_tasks)
    shared, _ = scorers(warm, sets, val_tasks, 2, None, seed)
    common = [f"meta.iterations={iterations}", f"meta.eval_every={iterations}", f"meta.test_tasks={test_tasks}",
              f"run.output_dir={output_dir}", "run.progress=false", *overrides]
    out = []
    with tempfile.TemporaryDirectory(prefix="ranking-") as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(to_yaml(warm.config))
        for i, (kind, arch) in enumerate(kids):
            genotype = Path(folder) / f"child{i}.json"
            genotype.write_text(json.dumps(warm.space.dump(arch)))
            result = train(load_config(config, [f"search.genotype={genotype}", *common]))
            child = Child(kind, arch, shared.evaluate(arch), result.test, result.steps)
            out.append(child)
            if report:
                report(f"{i:2d} {kind:8s} weight sharing {100 * child.score.mean:5.1f}%  stand-alone "
                       f"{child.alone.summary()} ({child.iterations} iterations)  {warm.space.describe(arch)}")
    return Ranking(out, warm.space.describe, warm.space.dump)
