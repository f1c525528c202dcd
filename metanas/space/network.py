"""The search space: DARTS cells stacked into a network.

One ``Network`` class is both the *supernet* (every op on every edge, mixed by
``softmax(alpha)``) and a *child net* (only the ops a genotype keeps). Both
name their parameters the same way (``cells.1.edges.4.5...`` = cell 1, edge 4,
op 5), so a child is warm-started from supernet weights by picking the keys it
has: there is no weight surgery anywhere.
"""

from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn.functional as F
from torch import nn

from metanas.errors import MetanasError
from metanas.space.ops import DEFAULT_OPS, OPS, FactorizedReduce, ReLUConvBN, bn

# normal / reduce: (op_name, input_state) pairs, `k` consecutive pairs per node;
# input state 0 and 1 are the two previous cells, 2+i is node i. (quark0/darts)
Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")


def n_edges(nodes: int) -> int:
    """Node i reads from the 2 cell inputs and the i nodes before it."""
    return nodes * (nodes + 3) // 2


def edge_index(node: int, state: int) -> int:
    return node * (node + 3) // 2 + state


def reduction_cells(cells: int) -> set[int]:
    """Reductions at 1/3 and 2/3 of the depth, as in DARTS."""
    return {cells // 3, 2 * cells // 3}


class Cell(nn.Module):
    def __init__(self, nodes, C_pp, C_p, C, reduction, reduction_prev, ops, affine, edges=None):
        """``edges``: ``{edge: [op_index, ...]}`` to keep; ``None`` keeps all (supernet)."""
        super().__init__()
        self.nodes, self.reduction = nodes, reduction
        self.pre0 = FactorizedReduce(C_pp, C, affine) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine)
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0, affine)
        if edges is None:
            edges = {e: range(len(ops)) for e in range(n_edges(nodes))}
        self.edges = nn.ModuleDict()
        for i in range(nodes):
            for j in range(i + 2):
                e = edge_index(i, j)
                if e in edges:
                    stride = 2 if reduction and j < 2 else 1
                    self.edges[str(e)] = nn.ModuleDict({str(o): OPS[ops[o]](C, stride, affine) for o in edges[e]})

    def forward(self, s0, s1, weights=None):
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(self.nodes):
            out = 0
            for j in range(i + 2):
                e = str(edge_index(i, j))
                if e not in self.edges:
                    continue
                for o, op in self.edges[e].items():
                    y = op(states[j])
                    out = out + (y if weights is None else weights[int(e), int(o)] * y)
            states.append(out)
        return torch.cat(states[2:], dim=1)


class Network(nn.Module):
    """Stem, ``cells`` DARTS cells, global pooling, linear classifier."""

    def __init__(self, n_classes, C=16, cells=4, nodes=3, ops=None, stem_multiplier=3, in_channels=1,
                 genotype: Genotype | None = None, affine=False):
        super().__init__()
        self.ops = list(ops or DEFAULT_OPS)
        unknown = [o for o in self.ops if o not in OPS]
        if unknown:
            raise MetanasError(f"unknown op(s) {unknown} in search.ops: choose from {sorted(OPS)}")
        self.nodes, self.genotype_ = nodes, genotype
        if genotype is not None:
            bad = sorted({op for op, _ in genotype.normal + genotype.reduce if op not in self.ops})
            if bad:
                raise MetanasError(f"genotype op(s) {bad} are not in the search space's ops {self.ops}: "
                                   "build the child with the ops the genotype was searched with")
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), bn(C_curr, affine))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_cells(cells)
        for i in range(cells):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            edges = None if genotype is None else self._edges(genotype.reduce if reduction else genotype.normal)
            self.cells.append(Cell(nodes, C_pp, C_p, C_curr, reduction, reduction_prev, self.ops, affine, edges))
            reduction_prev = reduction
            C_pp, C_p = C_p, nodes * C_curr
        self.classifier = nn.Linear(C_p, n_classes)
        if genotype is None:
            shape = (n_edges(nodes), len(self.ops))
            self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape))
            self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    @property
    def is_supernet(self) -> bool:
        return self.genotype_ is None

    def derive(self, params: dict, k: int = 2) -> Genotype:
        """The discrete architecture: DARTS derivation from ``params``' alphas, or a child's own genotype."""
        return derive_genotype(params, self.ops, self.nodes, k) if self.is_supernet else self.genotype_

    def _edges(self, cell_genotype):
        k = len(cell_genotype) // self.nodes
        edges: dict[int, list[int]] = {}
        for n, (op, state) in enumerate(cell_genotype):
            edges.setdefault(edge_index(n // k, state), []).append(self.ops.index(op))
        return edges

    def forward(self, x):
        if self.is_supernet:
            w_normal = F.softmax(self.alpha_normal, dim=-1)
            w_reduce = F.softmax(self.alpha_reduce, dim=-1)
        else:
            w_normal = w_reduce = None
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def derive_cell(alpha: torch.Tensor, ops: list[str], nodes: int, k: int = 2) -> list[tuple[str, int]]:
    """DARTS derivation: per node, the ``k`` strongest input edges and each edge's top op.

    An edge's strength is its largest softmax weight over ops other than ``none``.
    """
    w = F.softmax(alpha.detach().float(), dim=-1).cpu()
    allowed = torch.tensor([o != "none" for o in ops])
    w = w.masked_fill(~allowed, -1.0)
    gene = []
    for i in range(nodes):
        rows = [(w[edge_index(i, j)].max().item(), j) for j in range(i + 2)]
        for _, j in sorted(rows, reverse=True)[:k]:
            gene.append((ops[int(w[edge_index(i, j)].argmax())], j))
    return gene


def derive_genotype(params: dict, ops: list[str], nodes: int, k: int = 2) -> Genotype:
    concat = list(range(2, 2 + nodes))
    return Genotype(derive_cell(params["alpha_normal"], ops, nodes, k), concat,
                    derive_cell(params["alpha_reduce"], ops, nodes, k), concat)


def random_genotype(ops: list[str], nodes: int, k: int, generator: torch.Generator) -> Genotype:
    """A uniformly random architecture: per node, ``k`` distinct inputs, each with a random op (never ``none``)."""
    choices = [o for o in ops if o != "none"]

    def cell():
        gene = []
        for i in range(nodes):
            for j in torch.randperm(i + 2, generator=generator)[:k].tolist():
                gene.append((choices[int(torch.randint(len(choices), (1,), generator=generator))], j))
        return gene

    concat = list(range(2, 2 + nodes))
    return Genotype(cell(), concat, cell(), concat)


def genotype_distance(a: Genotype, b: Genotype) -> float:
    """Fraction of (op, input) choices, node by node, that differ between two genotypes (0: same, 1: disjoint)."""
    total = same = 0
    for ca, cb in ((a.normal, b.normal), (a.reduce, b.reduce)):
        k = max(1, len(ca) // max(1, len(a.normal_concat)))
        for i in range(0, len(ca), k):
            same += len(set(ca[i:i + k]) & set(cb[i:i + k]))
            total += k
    return 1 - same / total


def genotype_to_json(g: Genotype | None) -> dict | None:
    if g is None:
        return None
    return {"normal": [list(p) for p in g.normal], "normal_concat": list(g.normal_concat),
            "reduce": [list(p) for p in g.reduce], "reduce_concat": list(g.reduce_concat)}


def genotype_from_json(d: dict) -> Genotype:
    try:
        return Genotype([tuple(p) for p in d["normal"]], list(d["normal_concat"]),
                        [tuple(p) for p in d["reduce"]], list(d["reduce_concat"]))
    except (KeyError, TypeError) as e:
        raise MetanasError(f"not a genotype ({e}): expected keys normal, normal_concat, reduce, reduce_concat") from None


def genotype_str(g: Genotype | None) -> str:
    if g is None:
        return "none (fixed architecture)"
    fmt = lambda cell: " ".join(f"{op}<-{s}" for op, s in cell)
    return f"normal: {fmt(g.normal)} | reduce: {fmt(g.reduce)}"
