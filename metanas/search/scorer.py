"""Performance estimation for search: a child of the supernet scored with weight sharing on seeded tasks."""

from __future__ import annotations

import torch

from metanas.estimation.loop import Evaluation, evaluate
from metanas.meta.inner import InnerLoop


class ChildNetScorer:
    """A genotype's quality for a task family, with weight sharing (as in ENAS).

    ``build_child(genotype)`` is the child net holding the meta-learned supernet weights it inherits (alpha is
    dropped); it adapts its weights for ``inner.steps`` steps on each task's support set and is scored on
    the query set. Every candidate sees the same seeded sequence of ``tasks`` tasks from ``taskset`` (common random
    numbers: candidates differ by architecture, not by luck of the draw). ``spent`` counts evaluations: tasks
    adapted / ``tasks``, so one candidate scored on all tasks costs 1 whatever the strategy.
    """

    def __init__(self, build_child, taskset, *, tasks: int, inner: InnerLoop, seed: int, device="cpu"):
        self.build_child, self.taskset = build_child, taskset
        self.tasks, self.inner, self.seed, self.device = tasks, inner, seed, device
        self.spent = 0.0

    def evaluate(self, genotype, start: int = 0, stop: int | None = None) -> Evaluation:
        """``genotype``'s child adapted to tasks ``[start, stop)`` of the sequence."""
        stop = self.tasks if stop is None else stop
        child = self.build_child(genotype).to(self.device)
        ev = evaluate(child, {k: v.detach() for k, v in child.named_parameters()}, self.taskset, tasks=stop - start,
                      inner=self.inner, generator=torch.Generator().manual_seed(self.seed), device=self.device,
                      skip=start)
        self.spent += (stop - start) / self.tasks
        return ev

    def accuracies(self, genotype, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Query accuracy of ``genotype``'s child on tasks ``[start, stop)`` of the sequence."""
        return self.evaluate(genotype, start, stop).accuracies
