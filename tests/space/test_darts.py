"""The DARTS cell space (metanas/space/darts.py): supernet, genotype derivation, child nets, genotype JSON."""

import pytest
import torch
from torch.func import functional_call

from metanas.config import load_config
from metanas.core.errors import MetanasError
from metanas.space import create_space
from metanas.space.darts import Genotype, Network, edge_index, n_edges

OPS = ["max_pool_3x3", "skip_connect", "conv_3x3", "sep_conv_3x3"]


def darts(ops=OPS, k=2):
    return create_space(load_config(None, ["search.space=darts", f"search.ops=[{','.join(ops)}]", "search.nodes=2",
                                           "search.cells=3", "search.channels=4", f"search.k={k}"]).search)


def derive_genotype(p, ops, nodes, k=2):
    return darts(ops, k).derive(p)


def tiny(**kw):
    torch.manual_seed(0)
    return Network(5, C=4, cells=3, nodes=2, ops=OPS, **kw)


def test_supernet_forward_shape_and_alpha_shapes():
    net = tiny()
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 5)
    assert net.alpha_normal.shape == net.alpha_reduce.shape == (n_edges(2), len(OPS)) == (5, 4)


def test_alpha_changes_the_output():
    net, x = tiny(), torch.rand(4, 1, 28, 28)
    p = dict(net.named_parameters())
    before = functional_call(net, p, (x,))
    p["alpha_normal"] = p["alpha_normal"] + torch.randn_like(p["alpha_normal"])
    assert not torch.allclose(before, functional_call(net, p, (x,)))


def test_derivation_takes_top_op_and_top_k_edges():
    net = tiny()
    p = {k: v.detach().clone() for k, v in net.named_parameters()}
    a = torch.zeros(5, 4)
    # node 0 reads states 0, 1; node 1 reads states 0, 1, 2 and its strongest edges are from 2 and 0
    a[edge_index(0, 0), OPS.index("conv_3x3")] = 5
    a[edge_index(0, 1), OPS.index("skip_connect")] = 4
    a[edge_index(1, 2), OPS.index("sep_conv_3x3")] = 6
    a[edge_index(1, 0), OPS.index("max_pool_3x3")] = 3
    a[edge_index(1, 1), OPS.index("conv_3x3")] = 1
    p["alpha_normal"] = a
    g = derive_genotype(p, OPS, nodes=2, k=2)
    assert g.normal == [("conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 2), ("max_pool_3x3", 0)]
    assert g.normal_concat == [2, 3]
    assert len(derive_genotype(p, OPS, nodes=2, k=1).normal) == 2


def test_derivation_never_picks_none():
    p = {"alpha_normal": torch.tensor([[9.0, 0.0, 1.0]] * 2), "alpha_reduce": torch.tensor([[9.0, 2.0, 1.0]] * 2)}
    space = create_space(load_config(None, ["search.space=darts", "search.ops=[none,conv_3x3,skip_connect]", "search.nodes=1"]).search)
    g = space.derive(p)
    assert all(op != "none" for op, _ in g.normal + g.reduce)


def test_child_net_is_a_subset_of_the_supernet_and_runs_on_its_weights():
    net = tiny()
    params = dict(net.named_parameters())
    g = derive_genotype(params, OPS, nodes=2)
    child = Network(5, C=4, cells=3, nodes=2, ops=OPS, genotype=g)
    names = dict(child.named_parameters())
    assert set(names) < set(params) and not any(k.startswith("alpha") for k in names)
    # exactly the genotype's ops are kept: 4 (op, input) pairs per cell
    kept = {(n.split(".")[1], n.split(".")[3], n.split(".")[4]) for n in names if ".edges." in n}
    cell0_ops = {(e, o) for c, e, o in kept if c == "0"}
    expected = {(str(edge_index(i // 2, s)), str(OPS.index(op))) for i, (op, s) in enumerate(g.normal)
                if op in ("conv_3x3", "sep_conv_3x3")}  # parameter-free ops have no names
    assert cell0_ops == expected
    out = functional_call(child, {k: params[k] for k in names}, (torch.rand(2, 1, 28, 28),))
    assert out.shape == (2, 5)


def test_genotype_json_round_trip_and_errors(tmp_path):
    space = darts()
    g = space.derive(dict(tiny().named_parameters()))
    assert space.from_json(space.to_json(g)) == g
    f = tmp_path / "g.json"
    f.write_text(__import__("json").dumps(space.dump(g)))
    assert space.read(f) == g
    assert "normal:" in space.describe(g)
    with pytest.raises(MetanasError, match="not a DARTS genotype"):
        space.from_json({"normal": []})
    with pytest.raises(MetanasError, match="conv_7x7"):
        Network(5, C=4, cells=1, nodes=1, ops=OPS, genotype=Genotype([("conv_7x7", 0)], [2], [("conv_3x3", 1)], [2]))
