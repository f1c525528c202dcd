"""The chain space: ``search.layers`` stride-2 layers, each choosing an op, a width and (optionally) a pooling
and an activation.

A layer is ``op -> BatchNorm (affine, batch statistics) -> ReLU -> pool 2`` (max or average), as in MAML's
conv4, so conv4 (4 x ``conv_3x3`` at the full width, max-pooled; MAML's 64 with ``search.channels=64``) is one
architecture of the space (``search.genotype: conv4``), and a search that can keep it can never be worse than that baseline by construction
of the space. Choices per layer (alphas ``alpha_op [layers, ops]``, ``alpha_width [layers,
widths]`` and, with more than one pooling or activation, ``alpha_pool [layers, pools]``, ``alpha_act [layers,
acts]``):

* ops (``OPS``): dense ``conv_3x3``, ``conv_5x5``, ``dil_conv_3x3`` (3x3, dilation 2) and
  ``sep_conv_3x3`` (depthwise 3x3 + pointwise);
* widths (``search.widths``): output channels;
* poolings (``search.pools``, ``POOLS``; default both): ``max`` (conv4's) and ``avg``. Unlike kernel taps of
  one superkernel, the two poolings of the same features differ a lot, so a per-task switch between them
  changes what the network computes (a choice with leverage for per-task adaptation);
* activations (``search.acts``, ``ACTS``; default ``relu`` only): ``relu`` (conv4's), ``abs`` (the modulus
  of scattering networks: blind to the sign of a feature, so to a contrast inversion after BatchNorm) and
  ``silu``.

A layer of an architecture is ``(op, width)``, followed by its pooling when the space has more than one
pooling and by its activation when it has more than one activation: ``(op, width, pool, act)`` with both.

**Weight entanglement** (``search.entangled: true``, Single-Path NAS / OFA): the dense ops of a
layer are slices of one 5x5 *superkernel* (``conv_3x3`` its centre, ``dil_conv_3x3`` its every
other tap), and a width its first channels, so every sampled path trains the same weights and a
child is a slice. With ``entangled: false`` each dense op owns its kernel (widths still share).

Execution: a dense weight per choice (mixture, or a per-task argmax) runs **one** 5x5 convolution
with the weighted sum of the op kernels (convolution is linear in the kernel) and multiplies the
channels by the weighted width staircase; a sampled :class:`~metanas.policy.execution.Choice` runs only the
chosen op at the chosen width (sliced kernels: a 3x3 @ 32 path costs what a 3x3 @ 32 net costs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from metanas.core.errors import MetanasError
from metanas.policy.execution import Choice, Executed, Mixture
from metanas.space.base import SearchSpace, register_space, require
from metanas.space.encoding import Encoding
from metanas.space.ops import bn, full

# op -> (kernel taps per side, dilation); sep_conv_3x3 is depthwise 3x3 + pointwise 1x1
OPS = {"conv_3x3": (3, 1), "conv_5x5": (5, 1), "dil_conv_3x3": (3, 2), "sep_conv_3x3": (3, 1)}
SEP = "sep_conv_3x3"
POOLS = {"max": F.max_pool2d, "avg": F.avg_pool2d}
ACTS = {"relu": F.relu, "abs": torch.abs, "silu": F.silu}


def _embed(op: str) -> torch.Tensor:
    """[k, 5]: places an op's k taps on the 5x5 superkernel's grid (centre, or every other tap)."""
    k, d = OPS[op]
    E = torch.zeros(k, 5)
    for i in range(k):
        E[i, (5 - (k - 1) * d) // 2 + i * d] = 1.0
    return E


def _to5(kernel: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """An op's own kernel ``[..., k, k]`` on the 5x5 grid, ``E`` its :func:`_embed` (vmap-safe: a product with
    constants, no writes)."""
    return torch.einsum("...ij,ia,jb->...ab", kernel, E, E) if kernel.shape[-1] != 5 else kernel


def _from5(kernel: torch.Tensor, op: str) -> torch.Tensor:
    """The slice of a 5x5 superkernel that an op reads (its centre, or every other tap)."""
    if kernel.shape[-1] != 5 or OPS[op][0] == 5:
        return kernel
    return kernel[..., 1:4, 1:4] if OPS[op][1] == 1 else kernel[..., ::2, ::2]


class ChainNet(Executed):
    """The supernet (``arch=None``: every choice, alphas) or a child (``arch``: one (op, width[, pool][, act]) per layer)."""

    def __init__(self, n_classes: int, ops: list[str], widths: list[int], layers: int, in_channels: int = 1,
                 entangled: bool = True, arch=None, policy=None, pools=("max",), acts=("relu",)):
        super().__init__(policy or Mixture())
        self.ops, self.widths, self.entangled = list(ops), list(widths), entangled
        self.pools, self.acts = list(pools), list(acts)
        self.arch = None if arch is None else [self._full(a) for a in arch]
        self.dense = [o for o in self.ops if o != SEP]
        W = max(widths)
        self.layers = nn.ModuleList()
        cin = in_channels
        for l in range(layers):
            w = W if arch is None else arch[l][1]
            ops_here = self.ops if arch is None else [arch[l][0]]
            layer = nn.Module()
            bound = 1 / math.sqrt(cin * 9)  # a 3x3 conv's default scale (BatchNorm follows, so it only starts)
            param = lambda *shape: nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))
            dense = [o for o in ops_here if o != SEP]
            if dense and entangled:
                size = 5 if arch is None and any(o != "conv_3x3" for o in dense) else OPS[dense[0]][0]
                layer.kernel = param(w, cin, size, size)
            elif dense:
                for o in dense:
                    layer.register_parameter(f"kernel_{o}", param(w, cin, OPS[o][0], OPS[o][0]))
            if SEP in ops_here:
                layer.sep_dw = param(cin, 1, 3, 3)
                layer.sep_pw = nn.Parameter(torch.empty(w, cin, 1, 1).uniform_(-1 / math.sqrt(cin), 1 / math.sqrt(cin)))
            layer.bias = nn.Parameter(torch.zeros(w))
            layer.bn = bn(w, affine=True)  # a module, so that export can freeze a child's statistics
            self.layers.append(layer)
            cin = w
        self.classifier = nn.Linear(cin, n_classes)
        # [channels, widths]: channel c is kept by every width above c (the dense width mixture's staircase);
        # a constant, so a non-persistent buffer: it follows .to(device) and stays out of the state dict
        self.register_buffer("staircase", (torch.arange(W)[:, None] < torch.tensor(widths)[None, :]).float(),
                             persistent=False)
        # each op's placement on the 5x5 grid: built once, moved with the network (a CPU tensor copied to the
        # device on every forward would be a blocking host-to-device copy per layer and op)
        for o in self.dense:
            self.register_buffer(f"embed_{o}", _embed(o), persistent=False)
        if arch is None:
            self.alpha_op = nn.Parameter(1e-3 * torch.randn(layers, len(self.ops)))
            self.alpha_width = nn.Parameter(1e-3 * torch.randn(layers, len(widths)))
            if len(self.pools) > 1:
                self.alpha_pool = nn.Parameter(1e-3 * torch.randn(layers, len(self.pools)))
            if len(self.acts) > 1:
                self.alpha_act = nn.Parameter(1e-3 * torch.randn(layers, len(self.acts)))

    def _full(self, layer) -> tuple:
        """A layer ``(op, width[, pool][, act])`` as ``(op, width, pool, act)`` (a space's only pooling/activation)."""
        if len(layer) == 4:
            return tuple(layer)
        rest = iter(layer[2:])
        pool = next(rest) if len(self.pools) > 1 else self.pools[0]
        return (layer[0], layer[1], pool, next(rest) if len(self.acts) > 1 else self.acts[0])

    def _kernel(self, layer, op: str) -> torch.Tensor:
        return layer.kernel if self.entangled else getattr(layer, f"kernel_{op}")

    def _path(self, layer, x, op: str, w: int) -> torch.Tensor:
        """Only ``op`` at width ``w``: sliced kernels, so the cost is that op's at that width."""
        cin = x.shape[1]
        if op == SEP:
            y = F.conv2d(x, layer.sep_dw[:cin], padding=1, groups=cin)
            return F.conv2d(y, layer.sep_pw[:w, :cin], layer.bias[:w])
        k, d = OPS[op]
        kernel = _from5(self._kernel(layer, op)[:w, :cin], op)
        return F.conv2d(x, kernel, layer.bias[:w], padding=d * (k - 1) // 2, dilation=d)

    def _mixed(self, layer, x, p: torch.Tensor) -> torch.Tensor:
        """Every op weighted by ``p [ops]``: one 5x5 convolution with the weighted kernel, plus the separable op."""
        kernel = 0
        for o, op in enumerate(self.ops):
            if op == SEP:
                continue
            own = self._kernel(layer, op)
            kernel = kernel + p[o] * _to5(_from5(own, op) if self.entangled else own, getattr(self, f"embed_{op}"))
        y = F.conv2d(x, kernel, layer.bias, padding=2) if self.dense else layer.bias[:, None, None]
        if SEP in self.ops:
            cin = x.shape[1]
            sep = F.conv2d(F.conv2d(x, layer.sep_dw, padding=1, groups=cin), layer.sep_pw)
            y = y + p[self.ops.index(SEP)] * sep
        return y

    def forward(self, x, embed: bool = False):
        """Logits, or (``embed``) the features the classifier reads."""
        p_pool = p_act = None
        if self.arch is not None:
            p_op, p_w, p_pool, p_act = (Choice.child([c.index(layer[i]) for layer in self.arch])
                                        for i, c in enumerate((self.ops, self.widths, self.pools, self.acts)))
        else:
            p_op, p_w = self.mix("alpha_op", self.alpha_op), self.mix("alpha_width", self.alpha_width)
            if len(self.pools) > 1:
                p_pool = self.mix("alpha_pool", self.alpha_pool)
            if len(self.acts) > 1:
                p_act = self.mix("alpha_act", self.alpha_act)
        for l, layer in enumerate(self.layers):
            if not p_op.is_dense:  # one op at one width: sliced kernels (a child, or a sampled path)
                pool = self.pools[p_pool.picked(l) if p_pool is not None else 0]
                act = ACTS[self.acts[p_act.picked(l) if p_act is not None else 0]]
                w = self.widths[p_w.picked(l)]
                y = self._path(layer, x, self.ops[p_op.picked(l)], w)
                if p_op.is_child:  # its own BatchNorm module
                    y = act(layer.bn(y))
                else:
                    y = act(F.batch_norm(full(y), None, None, layer.bn.weight[:w], layer.bn.bias[:w], training=True))
                    y = y * (p_op.gate[l] * p_w.gate[l] * (p_pool.gate[l] if p_pool is not None else 1)
                             * (p_act.gate[l] if p_act is not None else 1))
                x = POOLS[pool](y, 2)
            else:
                y = layer.bn(self._mixed(layer, x, p_op.weights[l]))
                if p_act is None:
                    y = ACTS[self.acts[0]](y)
                else:  # elementwise, cheap next to the convolution: compute each, weight them
                    y = sum(p_act.weights[l, i] * ACTS[act](y) for i, act in enumerate(self.acts))
                keep = (self.staircase.to(y) * p_w.weights[l]).sum(-1)  # channel c: the weight of every width above c
                y = y * keep[:, None, None]
                if p_pool is None:
                    x = POOLS[self.pools[0]](y, 2)
                else:  # pooling is cheap next to the convolution: compute each, weight them
                    x = sum(p_pool.weights[l, i] * POOLS[pool](y, 2) for i, pool in enumerate(self.pools))
        features = x.mean((-2, -1))
        if embed:
            return features
        weight = self.classifier.weight[:, :features.shape[1]]
        return F.linear(features, weight, self.classifier.bias)


def draw_chain(arch, ops: list[str], max_width: int, title: str | None = None):
    """A chain architecture as a row of layer boxes: op, width (and pooling), box height proportional to the width."""
    from matplotlib.patches import Rectangle

    from metanas.core.figures import op_colors, subplots, tex

    fig, ax = subplots(figsize=(1.8 + 1.7 * len(arch), 2.6))
    colors = op_colors(ops)
    for l, (op, w, *pool) in enumerate(arch):
        h = 0.4 + 1.2 * w / max_width
        ax.add_patch(Rectangle((l * 1.7, -h / 2), 1.3, h, fc=colors[op], ec="0.3"))
        ax.text(l * 1.7 + 0.65, 0, f"{tex(op)}\n@{w}" + "".join(f"\n{p}" for p in pool), ha="center",
                va="center", fontsize=8)
        if l:
            ax.annotate("", (l * 1.7, 0), (l * 1.7 - 0.4, 0), arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.set_xlim(-0.3, 1.7 * len(arch))
    ax.set_ylim(-1.0, 1.0)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


class ChainEncoding(Encoding):
    """Per layer: the op's index, the width's, the pooling's and the activation's (each when it is a choice)."""

    def __init__(self, ops: list[str], widths: list[int], layers: int, pools=("max",), acts=("relu",)):
        extra = [(name, list(c)) for name, c in (("pool", pools), ("act", acts)) if len(c) > 1]
        self.choices = [ops, widths] + [c for _, c in extra]
        self.names = ("op", "width", *(name for name, _ in extra))
        self.decisions = [(f"layer{l}.{name}", len(c)) for l in range(layers) for name, c in zip(self.names, self.choices)]

    def encode(self, arch):
        return [c.index(v) for layer in arch for c, v in zip(self.choices, layer)]

    def decode(self, x):
        n = len(self.choices)
        return tuple(tuple(c[i] for c, i in zip(self.choices, x[j:j + n])) for j in range(0, len(x), n))


def _flops(op: str, cin, w, size: int):
    """FLOPs (2 x multiply-adds) per image of one layer's op at input width ``cin``, output width ``w``."""
    if op == SEP:
        return 2 * size * size * (9 * cin + w * cin)
    return 2 * size * size * OPS[op][0] ** 2 * w * cin


@register_space
class ChainSpace(SearchSpace):
    name = "chain"
    description = ("stride-2 layers (op -> BN -> activation -> pool), each choosing an op, a width (and a pooling, an "
                   "activation); conv4 is a member")
    default_ops = list(OPS)
    default_channels = 32  # widths 16, 24, 32: at equal wall clock on 2 CPU cores a narrow net sees more tasks
    default_pools = ["max", "avg"]  # the pooling choice is where per-task adaptation has leverage (docs/results.md)
    default_acts = ["relu"]  # conv4's; [relu, abs] is robust on most shifts but loses on digits (docs/results.md)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.widths = list(cfg.widths) if cfg.widths else [self.channels // 2, 3 * self.channels // 4, self.channels]
        self.pools = list(cfg.pools) if cfg.pools else list(self.default_pools)
        self.acts = list(cfg.acts) if cfg.acts else list(self.default_acts)

    def settings(self):
        return {**super().settings(), "widths": list(self.widths), "pools": list(self.pools), "acts": list(self.acts)}

    def validate(self):
        s = self.cfg
        require(s.layers >= 1, "search.layers", s.layers, "must be >= 1")
        unknown = [o for o in self.ops if o not in OPS]
        require(not unknown, "search.ops", unknown, f"unknown chain op; choose from {list(OPS)}")
        require(len(set(self.ops)) == len(self.ops), "search.ops", self.ops, "no duplicates")
        widths = s.widths or [self.channels]
        require(all(w >= 1 for w in widths) and len(set(widths)) == len(widths) and list(widths) == sorted(widths),
                "search.widths", widths, "distinct increasing channel counts >= 1")
        pools = s.pools or self.default_pools
        require(all(p in POOLS for p in pools) and len(set(pools)) == len(pools), "search.pools", list(pools),
                f"distinct poolings from {list(POOLS)}")
        acts = s.acts or self.default_acts
        require(all(a in ACTS for a in acts) and len(set(acts)) == len(acts), "search.acts", list(acts),
                f"distinct activations from {list(ACTS)}")

    def supernet(self, n_classes, policy, in_channels=1):
        return ChainNet(n_classes, self.ops, self.widths, self.cfg.layers, in_channels, self.cfg.entangled,
                        policy=policy, pools=self.pools, acts=self.acts)

    def child(self, arch, n_classes, in_channels=1):
        enc = self.encoding()
        choices = enc.choices
        bad = [layer for layer in arch if len(layer) != len(choices) or any(v not in c for c, v in zip(choices, layer))]
        if len(arch) != self.cfg.layers or bad:
            extra = "".join(f" x {name}s {c}" for name, c in zip(enc.names[2:], choices[2:]))
            raise MetanasError(f"architecture {self.describe(arch)} is not in this chain space ({self.cfg.layers} layers "
                               f"of {self.ops} x widths {self.widths}{extra}): use one searched in the same space")
        return ChainNet(n_classes, self.ops, self.widths, self.cfg.layers, in_channels, self.cfg.entangled, arch=arch,
                        pools=self.pools, acts=self.acts)

    def inherit(self, child, params, arch):
        """A child's weights are slices of the supernet's (first channels; the op's taps of a superkernel)."""
        out = {}
        for name, p in child.state_dict().items():
            src = params[name].detach()
            if name.startswith("layers."):
                l = int(name.split(".")[1])
                src = src[tuple(slice(0, n) for n in p.shape[:2])]
                if name.endswith(".kernel"):
                    src = _from5(src, arch[l][0])
            elif name == "classifier.weight":
                src = src[:, :p.shape[1]]
            out[name] = src.clone()
        return out

    @property
    def layer_alphas(self) -> list[str]:
        """The alpha of each choice of a layer, in the order of a layer's tuple (op, width[, pool][, act])."""
        return [f"alpha_{name}" for name in self.encoding().names]

    def derive(self, alphas):
        idx = [alphas[a].detach().argmax(-1).tolist() for a in self.layer_alphas]
        return self.encoding().decode([i for layer in zip(*idx) for i in layer])

    def random(self, generator):
        enc = self.encoding()
        return enc.decode([int(torch.randint(n, (1,), generator=generator)) for _, n in enc.decisions])

    def named(self):
        """``conv4``: MAML's net, 4 x conv 3x3 at the space's full width (MAML's 64 with ``search.channels=64``)."""
        conv4 = (("conv_3x3", max(self.widths)) + (("max",) if len(self.pools) > 1 else ())
                 + (("relu",) if len(self.acts) > 1 else ()),) * 4
        member = self.cfg.layers == 4 and "conv_3x3" in self.ops and "max" in self.pools and "relu" in self.acts
        return {"conv4": conv4} if member else {}

    def encoding(self):
        return ChainEncoding(self.ops, self.widths, self.cfg.layers, self.pools, self.acts)

    def to_json(self, arch):
        return {"layers": [list(layer) for layer in arch]}

    def from_json(self, d):
        try:
            return tuple((str(layer[0]), int(layer[1]), *map(str, layer[2:])) for layer in d["layers"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise MetanasError(f"not a chain architecture ({e}): expected {{\"layers\": [[op, width(, pool)(, act)], ...]}}") from None

    def describe(self, arch):
        return " > ".join(f"{layer[0]}@{layer[1]}" + "".join(f"/{p}" for p in layer[2:]) for layer in arch)

    def draw(self, arch, title=None):
        return draw_chain(arch, self.ops, max(self.widths), title)

    def alpha_labels(self):
        rows = [f"layer {l}" for l in range(self.cfg.layers)]
        return {a: (rows, [str(v) for v in c]) for a, c in zip(self.layer_alphas, self.encoding().choices)}

    def choice_wins(self, archs):
        n = max(1, len(archs))
        choices = self.encoding().choices
        wins = {a: torch.zeros(self.cfg.layers, len(c)) for a, c in zip(self.layer_alphas, choices)}
        for arch in archs:
            for l, layer in enumerate(arch):
                for a, c, v in zip(self.layer_alphas, choices, layer):
                    wins[a][l, c.index(v)] += 1 / n
        return wins

    def _cost(self, p_op, p_w, n_classes, image_size, in_channels):
        """FLOPs per image for per-layer op probabilities ``p_op`` and width probabilities ``p_w`` (one-hot: a child)."""
        W = torch.tensor(self.widths).to(p_w)
        total, cin, size = 0.0, torch.tensor(float(in_channels)), image_size
        for l in range(self.cfg.layers):
            w = (p_w[l] * W).sum()  # E[width]: independent choices per layer, so E[w * cin] = E[w] E[cin]
            total = total + sum(p_op[l, o] * _flops(op, cin, w, size) for o, op in enumerate(self.ops))
            cin, size = w, size // 2
        return total + 2 * n_classes * cin

    def expected_cost(self, alphas, n_classes, image_size, in_channels=1):
        return self._cost(F.softmax(alphas["alpha_op"], -1), F.softmax(alphas["alpha_width"], -1), n_classes,
                          image_size, in_channels)

    def reference_cost(self, alphas, n_classes, image_size, in_channels=1):
        """The cost of MAML's conv4 where it is a member of the space (else uniform alpha's)."""
        conv4 = self.named().get("conv4")
        if conv4 is None:
            return super().reference_cost(alphas, n_classes, image_size, in_channels)
        return self.cost(conv4, n_classes, image_size, in_channels)

    def cost(self, arch, n_classes, image_size, in_channels=1):
        enc = self.encoding()
        x, n = enc.encode(arch), len(enc.choices)  # pooling and activation cost next to nothing: FLOPs count op and width
        p_op = F.one_hot(torch.tensor(x[0::n]), len(self.ops)).float()
        p_w = F.one_hot(torch.tensor(x[1::n]), len(self.widths)).float()
        return float(self._cost(p_op, p_w, n_classes, image_size, in_channels))
