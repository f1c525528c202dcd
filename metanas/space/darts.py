"""The DARTS cell space (Liu et al. 2019): cells of mixed edges stacked into a network.

One ``Network`` class is both the *supernet* (every op on every edge, weighted by the
execution policy from alpha) and a *child net* (only the ops a genotype keeps). Both
name their parameters the same way (``cells.1.edges.4.5...`` = cell 1, edge 4,
op 5), so a child is warm-started from supernet weights by picking the keys it
has: there is no weight surgery anywhere.
"""

from __future__ import annotations

from collections import namedtuple
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from metanas.core.errors import MetanasError
from metanas.policy.execution import Choice, Executed, Mixture
from metanas.space.base import SearchSpace, register_space, require
from metanas.space.encoding import Encoding
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

    def forward(self, s0, s1, choice: Choice):
        """``choice``: one row per edge (dense: every op weighted; sampled: only each edge's chosen op; a child:
        the ops it built, summed)."""
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(self.nodes):
            out = 0
            for j in range(i + 2):
                e = edge_index(i, j)
                if str(e) not in self.edges:
                    continue
                ops = {int(o): (lambda op=op, x=states[j]: op(x)) for o, op in self.edges[str(e)].items()}
                out = choice.mix(e, ops, out)
            states.append(out)
        return torch.cat(states[2:], dim=1)


class Network(Executed):
    """Stem, ``cells`` DARTS cells, global pooling, linear classifier."""

    def __init__(self, n_classes, C=16, cells=4, nodes=3, ops=None, stem_multiplier=3, in_channels=1,
                 genotype: Genotype | None = None, affine=False, policy=None):
        super().__init__(policy or Mixture())
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

    def _edges(self, cell_genotype):
        k = len(cell_genotype) // self.nodes
        edges: dict[int, list[int]] = {}
        for n, (op, state) in enumerate(cell_genotype):
            edges.setdefault(edge_index(n // k, state), []).append(self.ops.index(op))
        return edges

    def forward(self, x, embed: bool = False):
        """Logits, or (``embed``) the features the classifier reads."""
        if self.genotype_ is None:
            w_normal = self.mix("alpha_normal", self.alpha_normal)
            w_reduce = self.mix("alpha_reduce", self.alpha_reduce)
        else:
            w_normal = w_reduce = Choice.child()  # each edge holds only the ops of the genotype
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        features = s1.mean((2, 3))  # global average pooling (adaptive_avg_pool2d's CUDA backward is nondeterministic)
        return features if embed else self.classifier(features)


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


class GenotypeEncoding(Encoding):
    """Per cell type and node: which ``k`` distinct inputs (one of ``C(i + 2, k)`` sets) and each one's op (``none``
    excluded). Every in-range vector decodes to a valid genotype and every genotype encodes to one vector."""

    def __init__(self, ops: list[str], nodes: int, k: int = 2):
        self.ops = [o for o in ops if o != "none"]
        self.nodes, self.k = nodes, k
        self.input_sets = [list(combinations(range(i + 2), min(k, i + 2))) for i in range(nodes)]
        #: ``(name, number of choices)`` per decision, e.g. ``("normal.n1.inputs", 3)``, ``("normal.n1.op0", 7)``
        self.decisions: list[tuple[str, int]] = []
        for cell in ("normal", "reduce"):
            for i in range(nodes):
                self.decisions.append((f"{cell}.n{i}.inputs", len(self.input_sets[i])))
                self.decisions += [(f"{cell}.n{i}.op{j}", len(self.ops)) for j in range(len(self.input_sets[i][0]))]

    def decode(self, x: list[int]) -> Genotype:
        it = iter(x)
        cells = []
        for _ in ("normal", "reduce"):
            gene = []
            for i in range(self.nodes):
                inputs = self.input_sets[i][next(it)]
                gene += [(self.ops[next(it)], j) for j in inputs]
            cells.append(gene)
        concat = list(range(2, 2 + self.nodes))
        return Genotype(cells[0], concat, cells[1], concat)

    def encode(self, g: Genotype) -> list[int]:
        x = []
        for gene in (g.normal, g.reduce):
            per = len(gene) // self.nodes
            for i in range(self.nodes):
                pairs = sorted(gene[i * per:(i + 1) * per], key=lambda p: p[1])
                x.append(self.input_sets[i].index(tuple(j for _, j in pairs)))
                x += [self.ops.index(op) for op, _ in pairs]
        return x


CELLS = ("normal", "reduce")


@register_space
class DartsSpace(SearchSpace):
    name = "darts"
    description = "DARTS cells (normal + reduction) of mixed edges; per node the k strongest inputs"
    default_ops = list(DEFAULT_OPS)
    default_channels = 8
    _flops_key = None  # (n_classes, image_size, in_channels) of the cached per-edge FLOPs table

    def validate(self):
        s = self.cfg
        for key in ("cells", "nodes", "stem_multiplier", "k"):
            require(getattr(s, key) >= 1, f"search.{key}", getattr(s, key), "must be >= 1")
        require(self.channels >= 1 and self.channels % 2 == 0, "search.channels", self.channels,
                "must be even and >= 2 (factorized reduction halves it)")
        require(s.k <= 2, "search.k", s.k, "node 0 has only 2 inputs: use 1 or 2")
        unknown = [o for o in self.ops if o not in OPS]
        require(not unknown, "search.ops", unknown, f"unknown op; choose from {sorted(OPS)}")
        require(len(set(self.ops)) == len(self.ops), "search.ops", self.ops, "no duplicates")

    def _network(self, n_classes, in_channels, genotype=None, policy=None) -> Network:
        s = self.cfg
        return Network(n_classes, C=self.channels, cells=s.cells, nodes=s.nodes, ops=self.ops,
                       stem_multiplier=s.stem_multiplier, in_channels=in_channels, genotype=genotype, policy=policy)

    def supernet(self, n_classes, policy, in_channels=1):
        return self._network(n_classes, in_channels, policy=policy)

    def child(self, arch, n_classes, in_channels=1):
        if {len(arch.normal), len(arch.reduce)} != {self.cfg.nodes * self.cfg.k}:
            raise MetanasError(f"the genotype has {len(arch.normal)} (op, input) pairs per cell but this search space "
                               f"has {self.cfg.nodes} nodes x k={self.cfg.k} inputs: use a genotype searched in the "
                               "same space")
        return self._network(n_classes, in_channels, genotype=arch)

    def derive(self, alphas):
        concat = list(range(2, 2 + self.cfg.nodes))
        return Genotype(*(x for c in CELLS for x in (derive_cell(alphas[f"alpha_{c}"], self.ops, self.cfg.nodes,
                                                                 self.cfg.k), concat)))

    def random(self, generator):
        return random_genotype(self.ops, self.cfg.nodes, self.cfg.k, generator)

    def encoding(self):
        return GenotypeEncoding(self.ops, self.cfg.nodes, self.cfg.k)

    def to_json(self, g):
        return {"normal": [list(p) for p in g.normal], "normal_concat": list(g.normal_concat),
                "reduce": [list(p) for p in g.reduce], "reduce_concat": list(g.reduce_concat)}

    def from_json(self, d):
        try:
            return Genotype([tuple(p) for p in d["normal"]], list(d["normal_concat"]),
                            [tuple(p) for p in d["reduce"]], list(d["reduce_concat"]))
        except (KeyError, TypeError) as e:
            raise MetanasError(f"not a DARTS genotype ({e}): expected keys normal, normal_concat, reduce, "
                               "reduce_concat") from None

    def distance(self, a, b):
        """Fraction of (op, input) choices, node by node, that differ (0: same, 1: disjoint)."""
        total = same = 0
        for ca, cb in ((a.normal, b.normal), (a.reduce, b.reduce)):
            k = max(1, len(ca) // max(1, len(a.normal_concat)))
            for i in range(0, len(ca), k):
                same += len(set(ca[i:i + k]) & set(cb[i:i + k]))
                total += k
        return 1 - same / total

    def describe(self, g):
        fmt = lambda cell: " ".join(f"{op}<-{s}" for op, s in cell)
        return f"normal: {fmt(g.normal)} | reduce: {fmt(g.reduce)}"

    def draw(self, arch, title=None):
        from metanas.space.darts_diagram import draw_genotype

        return draw_genotype(arch, title, self.ops)

    def alpha_labels(self):
        """Rows: ``"node <- input"`` for every edge (inputs c_{k-2}, c_{k-1}: the two previous cells)."""
        rows = [""] * n_edges(self.cfg.nodes)
        for i in range(self.cfg.nodes):
            for j in range(i + 2):
                rows[edge_index(i, j)] = f"{i} \u2190 " + ("$c_{k-2}$", "$c_{k-1}$", *map(str, range(i)))[j]
        return {f"alpha_{c}": (rows, self.ops) for c in CELLS}

    def choice_wins(self, archs):
        """Per cell type, ``[edges, ops]``: the fraction of genotypes keeping ``op`` on ``edge``."""
        out = {}
        for c in CELLS:
            counts = torch.zeros(n_edges(self.cfg.nodes), len(self.ops))
            for g in archs:
                cell = getattr(g, c)
                k = len(cell) // self.cfg.nodes
                for n, (op, state) in enumerate(cell):
                    counts[edge_index(n // k, state), self.ops.index(op)] += 1
            out[f"alpha_{c}"] = counts / max(1, len(archs))
        return out

    def expected_cost(self, alphas, n_classes, image_size, in_channels=1):
        """Per edge, softmax(alpha)-weighted FLOPs of its ops, plus the fixed stem/preprocessing/classifier."""
        key = (n_classes, image_size, in_channels)
        if self._flops_key != key:
            self._fixed, self._edge_flops = _edge_flops(self._network(n_classes, in_channels), image_size, in_channels)
            self._flops_key = key
        total = torch.tensor(self._fixed)
        for c in CELLS:
            w = F.softmax(alphas[f"alpha_{c}"], -1)
            total = total + (w * self._edge_flops[c].to(w)).sum()
        return total


def _edge_flops(net: Network, image_size: int, in_channels: int) -> tuple[float, dict[str, torch.Tensor]]:
    """FLOPs per image of every op of every edge (summed over cells of a type), and of everything else."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs = {}
    hooks = [op.register_forward_pre_hook(lambda m, a, key=(ci, int(e), int(o)): inputs.__setitem__(key, a[0]))
             for ci, cell in enumerate(net.cells) for e, ops in cell.edges.items() for o, op in ops.items()]
    x = torch.zeros(2, in_channels, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    for h in hooks:
        h.remove()
    total = counter.get_total_flops() / 2
    per = {c: torch.zeros(n_edges(net.nodes), len(net.ops)) for c in CELLS}
    for (ci, e, o), h in inputs.items():
        cell = net.cells[ci]
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            cell.edges[str(e)][str(o)](h)
        per["reduce" if cell.reduction else "normal"][e, o] += counter.get_total_flops() / 2
    # The supernet's forward computed every op once: what is left is the part no alpha decides.
    return total - sum(float(v.sum()) for v in per.values()), per
