"""Search space: candidate ops, DARTS cells, supernet / child net, genotypes."""

from metanas.space.network import (Genotype, Network, derive_genotype, genotype_from_json, genotype_str,
                                   genotype_to_json)
from metanas.space.ops import DEFAULT_OPS, OPS

__all__ = ["DEFAULT_OPS", "OPS", "Genotype", "Network", "derive_genotype", "genotype_from_json", "genotype_str",
           "genotype_to_json"]
