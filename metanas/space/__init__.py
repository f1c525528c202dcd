"""Search spaces behind a registry: ``create_space(cfg.search)`` returns the space ``search.space`` names.

A space registers itself with ``@register_space`` in its own module; the imports below are the
registry's lines (adding a space: its file, and one line here).
"""

from metanas.space.base import SPACES, SearchSpace, alphas_of, create_space, is_alpha, list_spaces, register_space
from metanas.space import darts  # noqa: F401  (registers "darts")
from metanas.space import chain  # noqa: F401  (registers "chain")

__all__ = ["SPACES", "SearchSpace", "alphas_of", "create_space", "is_alpha", "list_spaces", "register_space"]
