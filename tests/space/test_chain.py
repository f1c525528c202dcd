"""The chain space (conv4 is a member; entangled superkernels; children are slices) and the execution policies."""

import pytest
import torch
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from metanas.config import load_config
from metanas.core.errors import MetanasError
from metanas.policy.execution import Choice, create_policy, executing
from metanas.space import create_space, list_spaces

X = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def chain(*over):
    return create_space(load_config(None, ["search.space=chain", *over]).search)


def flops(fn) -> int:
    with FlopCounterMode(display=False) as c, torch.no_grad():
        fn()
    return c.get_total_flops()


def test_registry_lists_both_spaces_and_rejects_unknown_with_the_choices():
    assert {"darts", "chain"} <= set(list_spaces())
    with pytest.raises(MetanasError, match="search.space.*chain"):
        load_config(None, ["search.space=chian"])


def test_conv4_is_a_member_with_maml_conv4s_parameters():
    space = chain("search.channels=64")
    conv4 = space.named()["conv4"]
    assert conv4 == (("conv_3x3", 64, "max"),) * 4  # max-pooling, as MAML's
    net = space.child(conv4, 5)
    n = sum(p.numel() for p in net.parameters())
    # MAML's conv4: 4 x (3x3 conv with bias, BN gain and bias) at 64 channels, linear classifier
    expected = (9 * 64 + 64 + 128) + 3 * (9 * 64 * 64 + 64 + 128) + 64 * 5 + 5
    assert n == expected
    assert net(X).shape == (10, 5)
    assert space.cost(conv4, 5, 28) == pytest.approx(flops(lambda: net(X[:1])), rel=1e-6)


@pytest.mark.parametrize("entangled", [True, False])
def test_a_child_computes_what_the_supernet_computes_on_its_path(entangled):
    """Child (sliced weights) == supernet with a per-task one-hot (masked superkernel, one 5x5 conv) == supernet
    on a sampled Path (sliced at run time), for a random architecture of every op type."""
    space = chain(f"search.entangled={str(entangled).lower()}", "search.widths=[8,16,24]", "search.channels=24",
                  "search.pools=[max]")  # (op, width) layers; the pooling choice has its own test below
    torch.manual_seed(1)
    net = space.supernet(5, create_policy("mixture"))
    params = {k: v.detach() for k, v in net.named_parameters()}
    arch = (("sep_conv_3x3", 16), ("dil_conv_3x3", 8), ("conv_5x5", 24), ("conv_3x3", 16))
    child = space.child(arch, 5)
    child.load_state_dict(space.inherit(child, params, arch))
    want = child(X)
    x = space.encoding().encode(arch)
    hot = {"alpha_op": 1e4 * torch.nn.functional.one_hot(torch.tensor(x[0::2]), 4).float(),
           "alpha_width": 1e4 * torch.nn.functional.one_hot(torch.tensor(x[1::2]), 3).float()}
    dense = functional_call(net, {**params, **hot}, (X,))
    assert torch.allclose(dense, want, atol=1e-4)
    sampled = space.supernet(5, create_policy("gumbel"))
    sampled.load_state_dict(net.state_dict())
    sample = create_policy("gumbel").draw(hot, torch.Generator().manual_seed(0))
    assert sample.index["alpha_op"] == tuple(x[0::2])
    with executing(sampled, sample=sample):
        assert torch.allclose(sampled(X), want, atol=1e-4)
    # and another architecture's child gives another function: the check can fail
    other = space.child(space.random(torch.Generator().manual_seed(5)), 5)
    other.load_state_dict(space.inherit(other, params, other.arch))
    assert not torch.allclose(other(X), want, atol=1e-3)


@pytest.mark.parametrize("pools", [["search.pools=[max]"], []])  # max only; the default max or avg
def test_gumbel_computes_only_the_sampled_path(pools):
    space = chain(*pools)
    net = space.supernet(5, create_policy("gumbel"))
    alphas = {k: v.detach() for k, v in net.named_parameters() if k.startswith("alpha_")}
    assert sorted(alphas) == sorted(space.layer_alphas)
    for seed in range(3):
        sample = net.policy.draw(alphas, torch.Generator().manual_seed(seed))
        arch = space.encoding().decode([i for layer in zip(*(sample.index[a] for a in space.layer_alphas))
                                        for i in layer])
        with executing(net, sample=sample):
            used = flops(lambda: net(X[:1]))
        assert used == pytest.approx(space.cost(arch, 5, 28), rel=1e-6)  # only the sampled ops ran
    mixed = flops(lambda: space.supernet(5, create_policy("mixture"))(X[:1]))
    assert used < mixed


@pytest.mark.parametrize("acts", [None, ["relu", "abs"]])
def test_pool_and_act_choices_child_supernet_and_sampled_path_agree_and_each_choice_changes_the_function(acts):
    """With ``search.pools=[max,avg]`` a layer is (op, width, pool), and with ``search.acts=[relu,abs]`` too
    (op, width, pool, act): the child, the supernet at one-hot alpha and the sampled path compute the same
    function, and switching one layer's pooling (or activation) changes it."""
    extra = [f"search.acts=[{','.join(acts)}]"] if acts else []
    space = chain("search.widths=[8,16]", "search.channels=16", *extra)  # the default pools: max and avg
    torch.manual_seed(1)
    net = space.supernet(5, create_policy("mixture"))
    params = {k: v.detach() for k, v in net.named_parameters()}
    act = (lambda a: (a,)) if acts else (lambda a: ())
    arch = (("conv_5x5", 16, "avg", *act("abs")), ("sep_conv_3x3", 8, "max", *act("relu")),
            ("conv_3x3", 16, "avg", *act("abs")), ("dil_conv_3x3", 8, "max", *act("abs")))
    enc = space.encoding()
    n = len(arch[0])
    assert [name for name, _ in enc.decisions[:n]] == ["layer0.op", "layer0.width", "layer0.pool", "layer0.act"][:n]
    assert enc.decode(enc.encode(arch)) == arch == space.from_json(space.to_json(arch))
    child = space.child(arch, 5)
    child.load_state_dict(space.inherit(child, params, arch))
    want = child(X)
    x = enc.encode(arch)
    hot = {a: 1e4 * torch.nn.functional.one_hot(torch.tensor(x[i::n]), k).float()
           for i, (a, k) in enumerate(zip(space.layer_alphas, (4, 2, 2, 2)))}
    assert torch.allclose(functional_call(net, {**params, **hot}, (X,)), want, atol=1e-4)
    assert space.derive(hot) == arch
    sampled = space.supernet(5, create_policy("gumbel"))
    sampled.load_state_dict(net.state_dict())
    with executing(sampled, sample=create_policy("gumbel").draw(hot, torch.Generator().manual_seed(0))):
        assert torch.allclose(sampled(X), want, atol=1e-4)
    swaps = [arch[:2] + (("conv_3x3", 16, "max", *act("abs")),) + arch[3:]]  # layer 2's pooling
    if acts:
        swaps.append(arch[:2] + (("conv_3x3", 16, "avg", "relu"),) + arch[3:])  # layer 2's activation
    for swapped in swaps:
        other = space.child(swapped, 5)
        other.load_state_dict(space.inherit(other, params, swapped))
        assert not torch.allclose(other(X), want, atol=1e-3)
        assert space.cost(swapped, 5, 28) == space.cost(arch, 5, 28)  # pooling and activation are not counted in FLOPs
    assert space.named()["conv4"] == (("conv_3x3", 16, "max", *act("relu")),) * 4
    assert all(len(layer) == n and layer[2] in ("max", "avg") and layer[3:] in ((), ("relu",), ("abs",))
               for layer in space.random(torch.Generator()))
    with pytest.raises(MetanasError, match="pools"):
        space.child((("conv_3x3", 16),) * 4, 5)  # an (op, width) architecture of the max-only space


def test_gumbel_on_darts_runs_one_op_per_edge():
    cfg = load_config(None, ["search.space=darts", "search.policy=gumbel", "search.cells=2"])
    space = create_space(cfg.search)
    net = space.supernet(5, create_policy("gumbel"))
    calls = {}
    for name, m in net.named_modules():
        if ".edges." in name and name.count(".") == 4:  # cells.C.edges.E.O: one op
            m.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    alphas = {k: v.detach() for k, v in net.named_parameters() if k.startswith("alpha_")}
    sample = net.policy.draw(alphas, torch.Generator().manual_seed(0))
    with executing(net, sample=sample):
        net(X)
    per_edge = {}
    for name in calls:
        c, e, o = name.split(".")[1], name.split(".")[3], name.split(".")[4]
        per_edge.setdefault((c, e), []).append(int(o))
    cell = lambda c: "alpha_reduce" if net.cells[int(c)].reduction else "alpha_normal"
    assert all(ops == [sample.index[cell(c)][int(e)]] for (c, e), ops in per_edge.items())
    assert len(per_edge) == len(net.cells) * 5
    calls.clear()
    net(X)  # without a sample: every op of every edge (per-task argmax, straight-through)
    assert len(calls) == len(net.cells) * 5 * len(space.ops)


def test_gumbel_sample_is_drawn_from_the_seeded_generator():
    policy = create_policy("gumbel")
    alphas = {"alpha_op": torch.zeros(4, 4)}
    a = policy.draw(alphas, torch.Generator().manual_seed(3))
    b = policy.draw(alphas, torch.Generator().manual_seed(3))
    c = policy.draw(alphas, torch.Generator().manual_seed(4))
    assert a.index == b.index and torch.equal(a.noise["alpha_op"], b.noise["alpha_op"])
    assert a.index != c.index


def test_straight_through_gate_is_one_and_passes_gradient_to_alpha():
    policy = create_policy("gumbel")
    alpha = torch.zeros(3, 4, requires_grad=True)
    sample = policy.draw({"a": alpha}, torch.Generator().manual_seed(0))
    from metanas.policy.execution import State

    w = policy.weights("a", alpha, State(sample=sample))
    assert isinstance(w, Choice) and w.is_sampled and torch.allclose(w.gate, torch.ones(3))
    w.gate.sum().backward()
    assert alpha.grad.abs().sum() > 0


def test_a_choice_mixes_dense_picks_a_sampled_path_and_sums_what_a_child_built():
    ones = lambda v: (lambda: torch.full((2,), float(v)))
    candidates = {0: ones(1), 1: ones(10), 2: ones(100)}
    dense = Choice.dense(torch.tensor([[0.5, 0.25, 0.25]]))
    assert torch.equal(dense.mix(0, candidates, start=1), torch.full((2,), 1 + 0.5 + 2.5 + 25))
    gate = torch.tensor([1.0], requires_grad=True)
    sampled = Choice.sampled([1], gate)
    assert torch.equal(sampled.mix(0, candidates), torch.full((2,), 10.0)) and sampled.picked(0) == 1
    assert sampled.is_sampled and not sampled.is_dense and not sampled.is_child
    assert torch.equal(Choice.child().mix(0, {2: ones(100), 0: ones(1)}), torch.full((2,), 101.0))
    assert Choice.child([2]).picked(0) == 2 and Choice.child([2]).is_child


def test_expected_cost_is_the_child_cost_at_one_hot_alpha_and_differentiable():
    space = chain("search.pools=[max]")  # pooling costs no FLOPs
    conv4 = space.named()["conv4"]
    x = space.encoding().encode(conv4)
    hot = {"alpha_op": 1e4 * torch.nn.functional.one_hot(torch.tensor(x[0::2]), 4).float(),
           "alpha_width": 1e4 * torch.nn.functional.one_hot(torch.tensor(x[1::2]), 3).float()}
    assert float(space.expected_cost(hot, 5, 28)) == pytest.approx(space.cost(conv4, 5, 28), rel=1e-4)
    alphas = {"alpha_op": torch.zeros(4, 4, requires_grad=True), "alpha_width": torch.zeros(4, 3, requires_grad=True)}
    space.expected_cost(alphas, 5, 28).backward()
    # wider is dearer: the gradient pushes every layer's widest choice down the most
    assert (alphas["alpha_width"].grad.argmax(-1) == 2).all()


def test_chain_config_errors_name_the_key():
    with pytest.raises(MetanasError, match="search.ops"):
        load_config(None, ["search.space=chain", "search.ops=[conv_7x7]"])
    with pytest.raises(MetanasError, match="search.widths"):
        load_config(None, ["search.space=chain", "search.widths=[64,32]"])
    with pytest.raises(MetanasError, match="search.genotype"):
        load_config(None, ["search.space=chain", "search.layers=3", "search.genotype=conv4"])  # not a member
    with pytest.raises(MetanasError, match="search.pools"):
        load_config(None, ["search.space=chain", "search.pools=[max,min]"])
    with pytest.raises(MetanasError, match="search.acts.*relu"):
        load_config(None, ["search.space=chain", "search.acts=[relu,gelu]"])
    with pytest.raises(MetanasError, match="search.policy"):
        load_config(None, ["search.policy=gdas"])


def test_a_checkpoint_keeps_describing_its_network_after_a_default_changes(tmp_path, monkeypatch):
    """The space's resolved defaults (channels, widths, ops) are written into the checkpoint's config."""
    from metanas.meta.checkpoint import TrainingState
    from metanas.space import build_model
    from metanas.meta.warm_start import WarmStart
    from metanas.space.chain import ChainSpace

    cfg = load_config(None, ["search.space=chain", "search.layers=2"])  # channels, widths, ops: the defaults
    model = build_model(cfg, 5)[0]
    path, widths = tmp_path / "c.pt", create_space(cfg.search).widths
    image = {"channels": 1, "size": 28}
    TrainingState("run", "omniglot-5way", 5, 0, model.state_dict(), {}, 0, {}, None, image).save(path, cfg)
    monkeypatch.setattr(ChainSpace, "default_channels", 8)  # a later version's default
    warm = WarmStart.load(path)
    assert warm.space.widths == widths == [16, 24, 32]
    assert all(torch.equal(warm.params[k], v) for k, v in model.state_dict().items())


def test_a_checkpoint_from_before_the_pooling_choice_loads_as_max_only(tmp_path):
    """A checkpoint whose saved config has no ``search.pools`` was written when max-pooling was the only pooling:
    it loads as that network (no ``alpha_pool``), not as today's default (max or avg)."""
    from metanas.meta.checkpoint import TrainingState
    from metanas.space import build_model
    from metanas.meta.warm_start import WarmStart

    cfg = load_config(None, ["search.layers=2", "search.pools=[max]"])
    model = build_model(cfg, 5)[0]
    path = tmp_path / "old.pt"
    TrainingState("run", "omniglot-5way", 5, 0, model.state_dict(), {}, 0, {}, None,
                  {"channels": 1, "size": 28}).save(path, cfg)
    state = torch.load(path, weights_only=True)
    assert "  pools:\n  - max\n" in state["config"]
    state["config"] = state["config"].replace("  pools:\n  - max\n", "")
    torch.save(state, path)
    warm = WarmStart.load(path)
    assert warm.space.pools == ["max"] and "alpha_pool" not in warm.params
    assert all(len(layer) == 2 for layer in warm.derive())


def test_a_version_2_checkpoint_still_loads_as_grayscale(tmp_path):
    """Checkpoints written before colour images (format version 2) have no image format: they read as their
    family's (Omniglot: 1 channel, 28 px, inverted files, no normalisation)."""
    from metanas.meta.checkpoint import TrainingState
    from metanas.space import build_model
    from metanas.meta.warm_start import WarmStart

    cfg = load_config(None, ["search.layers=2"])
    model = build_model(cfg, 5)[0]
    path = tmp_path / "v2.pt"
    TrainingState("run", "omniglot-5way", 5, 0, model.state_dict(), {}, 0, {}, None, {}).save(path, cfg)
    state = torch.load(path, weights_only=True)
    del state["image"]
    state["version"] = 2
    torch.save(state, path)
    warm = WarmStart.load(path)
    assert (warm.image.channels, warm.image.size, warm.image.invert, warm.image.mean) == (1, 28, True, None)
    state["version"] = 1
    torch.save(state, path)
    with pytest.raises(MetanasError, match="reads 2 and 3"):
        WarmStart.load(path)
