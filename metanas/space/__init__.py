"""Search space: candidate ops, DARTS cells, supernet / child net, genotypes."""

from metanas.space.conv4 import Conv4
from metanas.space.network import (Genotype, Network, derive_genotype, genotype_distance, genotype_from_json,
                                   genotype_str, genotype_to_json, random_genotype)
from metanas.space.ops import DEFAULT_OPS, OPS

__all__ = ["DEFAULT_OPS", "OPS", "Conv4", "Genotype", "random_genotype", "Network", "derive_genotype", "genotype_distance", "genotype_from_json", "genotype_str",
           "genotype_to_json"]
