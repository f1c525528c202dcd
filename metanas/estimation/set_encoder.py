"""A set encoder: a task's alpha from its support images in zero steps (amortised architecture adaptation).

Per-task adaptation moves alpha from the warm start's value by a few gradient steps on one support set; the
domain's alpha (:func:`metanas.api.adapt_domain`) averages the moves of many labelled tasks of a domain. The set
encoder learns, on tasks of the warm start's own *training* split, to predict the move a task's gradient
adaptation makes (its adapted alpha minus the warm start's) from the support images alone: a small conv
embedding of each image, its mean and spread over the set, an MLP. At test time the prediction is the task's
starting alpha; w (and alpha, where asked) adapt from there as usual. The warm start itself is not changed.
Labels are not read: the encoder can tell a domain apart, not a task's classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import vmap
from tqdm import tqdm

from metanas.meta.inner import InnerLoop, Params
from metanas.space.base import alphas_of


class SetEncoder(nn.Module):
    """Support images ``[N, C, H, W]`` (or sets ``[B, N, C, H, W]``) -> an offset for each alpha."""

    def __init__(self, channels: int, alphas: dict[str, torch.Size], width: int = 32, hidden: int = 64):
        super().__init__()
        self.names = list(alphas)
        self.shapes = [torch.Size(s) for s in alphas.values()]
        self.embed = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(2 * width, hidden), nn.ReLU(),
                                  nn.Linear(hidden, sum(s.numel() for s in self.shapes)))
        nn.init.zeros_(self.head[-1].weight)  # untrained, it predicts no move: the warm start's own alpha
        nn.init.zeros_(self.head[-1].bias)

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """Sets ``[B, N, C, H, W]`` -> their offsets flattened, ``[B, sum of alpha sizes]``."""
        b, n = x.shape[:2]
        e = self.embed(x.flatten(0, 1)).unflatten(0, (b, n))
        return self.head(torch.cat([e.mean(1), e.std(1, unbiased=False)], -1))

    def forward(self, x: torch.Tensor) -> Params:
        flat = self.flat(x[None])[0]
        return {k: v.view(s) for k, v, s in zip(self.names, flat.split([s.numel() for s in self.shapes]), self.shapes)}

    def constant(self, flat: torch.Tensor) -> "SetEncoder":
        """A copy that predicts the offsets ``flat`` (as :meth:`flat` returns them) for every support set: a control
        that moves every task's alpha the same way, whatever its images."""
        import copy

        other = copy.deepcopy(self)
        with torch.no_grad():
            other.head[-1].weight.zero_()
            other.head[-1].bias.copy_(flat)
        return other

    def start(self, params: Params, support_x: torch.Tensor) -> Params:
        """``params`` with each alpha moved by the offset ``support_x`` predicts: where the task's adaptation starts."""
        offsets = self(support_x)
        return {k: v + offsets[k] if k in offsets else v for k, v in params.items()}


@dataclass
class Fit:
    encoder: SetEncoder
    tasks: int  # training tasks (the last ``held_out`` of them only score the fit)
    held_out: int
    # R^2 on the held-out tasks' alpha moves (1 - squared error / their variance around their own mean) of
    r2: float  # the encoder's predictions,
    mean_r2: float  # the training tasks' mean move (a constant: the training domain's alpha, no encoder),
    zero_r2: float  # and no move (the warm start's own alpha)
    mean_move: torch.Tensor  # the training tasks' mean move, flat: ``encoder.constant(mean_move)`` is the control


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    return 1 - ((pred - target) ** 2).sum().item() / ((target - target.mean(0)) ** 2).sum().clamp_min(1e-12).item()


def fit(model, params: Params, taskset, *, inner: InnerLoop, channels: int, tasks: int = 1000, held_out: float = 0.2,
        epochs: int = 50, lr: float = 1e-3, batch: int = 64, seed: int = 0, chunk: int = 10, device="cpu",
        progress: bool = False) -> Fit:
    """Adapt ``tasks`` tasks of ``taskset`` with ``inner`` (w and alpha, the teacher) and train a :class:`SetEncoder`
    to predict each task's alpha move from its support images (mean squared error, Adam). The epoch with the lowest
    error on the last ``held_out`` share of the tasks is kept. Seeded by ``seed`` (tasks and initial weights)."""
    alphas = alphas_of(params)
    if not alphas:
        raise ValueError("a set encoder predicts alpha: the network has none (a fixed architecture)")
    generator = torch.Generator().manual_seed(seed)
    teacher = vmap(lambda p, sx, sy: alphas_of(inner.adapt(model, p, sx, sy)), in_dims=(None, 0, 0))
    xs, moves = [], []
    with torch.no_grad():  # grad() inside adapt is a transform: it ignores this
        for s in tqdm(range(0, tasks, chunk), desc="teacher tasks", leave=False, disable=not progress):
            sx, sy, _, _ = [t.to(device) for t in taskset.sample_batch(min(chunk, tasks - s), generator)]
            adapted = teacher(params, sx, sy)
            xs.append(sx)
            moves.append(torch.cat([(adapted[k] - alphas[k]).flatten(1) for k in alphas], 1))
    x, y = torch.cat(xs), torch.cat(moves)
    n_val = max(1, round(held_out * tasks))
    n_fit = tasks - n_val
    if n_fit < 1:
        raise ValueError(f"{tasks} tasks, {n_val} of them held out: none left to fit the encoder on")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = SetEncoder(channels, {k: v.shape for k, v in alphas.items()}).to(device)
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    score = lambda: ((encoder.flat(x[n_fit:]) - y[n_fit:]) ** 2).mean().item()
    snapshot = lambda: {k: v.clone() for k, v in encoder.state_dict().items()}
    with torch.no_grad():
        best, best_state = score(), snapshot()
    for _ in tqdm(range(epochs), desc="set encoder", leave=False, disable=not progress):
        for idx in torch.randperm(n_fit, generator=generator).split(batch):
            loss = ((encoder.flat(x[idx]) - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            if (err := score()) < best:
                best, best_state = err, snapshot()
    encoder.load_state_dict(best_state)
    encoder.eval()
    with torch.no_grad():
        val = y[n_fit:]
        r2s = [_r2(p, val) if n_val > 1 else float("nan")
               for p in (encoder.flat(x[n_fit:]), y[:n_fit].mean(0).expand_as(val), torch.zeros_like(val))]
    return Fit(encoder, tasks, n_val, *r2s, y[:n_fit].mean(0))
