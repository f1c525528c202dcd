"""Search strategy: DARTS on one task (inner loop) and the meta-update across tasks (outer loop)."""

from metanas.strategy.darts import adapt, is_alpha
from metanas.strategy.meta import MetaLearner, NonFiniteError

__all__ = ["MetaLearner", "NonFiniteError", "adapt", "is_alpha"]
