"""Search spaces behind a registry: ``create_space(cfg.search)`` returns the space ``search.space`` names.

A space registers itself with ``@register_space`` in its own module; the imports below are the
registry's lines (adding a space: its file, and one line here). :func:`build_model` builds the network a
config describes (the supernet, or the child ``search.genotype`` names).
"""

from metanas.space.base import SPACES, SearchSpace, alphas_of, create_space, is_alpha, list_spaces, register_space
from metanas.space import darts  # noqa: F401  (registers "darts")
from metanas.space import chain  # noqa: F401  (registers "chain")
from metanas.space.build import build_model

__all__ = ["SPACES", "SearchSpace", "alphas_of", "build_model", "create_space", "is_alpha", "list_spaces",
           "register_space"]
