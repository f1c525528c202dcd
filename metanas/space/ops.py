"""Candidate operations: one table from op name to constructor (quark0/darts).

Every op maps ``C`` channels to ``C`` channels; ``stride=2`` halves the
resolution. Norms are BatchNorm *without* running statistics: inside
``torch.func`` transforms the in-place running-stat update is an error, and in
few-shot learning batch statistics of the task are what we want anyway.
``affine=False`` in the searched supernet (as DARTS does) keeps the op scale
in alpha instead of in a BN gain.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchNorm(nn.BatchNorm2d):
    """Batch statistics, computed in float32 also where the convolutions run in bfloat16 (``run.amp=bf16``): the
    statistics need the precision, and ``vmap`` has no backward for a bfloat16 input with float32 affine weights."""

    def forward(self, x):
        return super().forward(full(x))


def full(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is in a half precision, as it is under autocast; float32 and float64 stay."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def bn(C: int, affine: bool) -> nn.BatchNorm2d:
    return BatchNorm(C, affine=affine, track_running_stats=False)


class ReLUConvBN(nn.Sequential):
    def __init__(self, C_in, C_out, kernel, stride, padding, affine, dilation=1):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, bias=False),
            bn(C_out, affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable convs, as in DARTS."""

    def __init__(self, C_in, C_out, kernel, stride, padding, affine):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(C_in, C_in, kernel, stride, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False),
            bn(C_in, affine),
            nn.ReLU(),
            nn.Conv2d(C_in, C_in, kernel, 1, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            bn(C_out, affine),
        )


class DilConv(nn.Sequential):
    def __init__(self, C_in, C_out, kernel, stride, padding, dilation, affine):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(C_in, C_in, kernel, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            bn(C_out, affine),
        )


class FacConv(nn.Sequential):
    """Factorized k x 1 then 1 x k convolution."""

    def __init__(self, C, kernel, stride, affine):
        p = kernel // 2
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(C, C, (1, kernel), (1, stride), (0, p), bias=False),
            nn.Conv2d(C, C, (kernel, 1), (stride, 1), (p, 0), bias=False),
            bn(C, affine),
        )


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, :: self.stride, :: self.stride] * 0.0


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs (DARTS)."""

    def __init__(self, C_in, C_out, affine):
        super().__init__()
        assert C_out % 2 == 0, "FactorizedReduce needs an even channel count"
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = bn(C_out, affine)

    def forward(self, x):
        x = self.relu(x)
        # Odd sizes (7x7 after two reductions of 28x28) would misalign the offset path: pad first.
        if x.shape[-1] % 2:
            x = nn.functional.pad(x, (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


OPS = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride, 1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride, 1, count_include_pad=False),
    "skip_connect": lambda C, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine),
    "conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine),
    "conv_1x5_5x1": lambda C, stride, affine: FacConv(C, 5, stride, affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}

# The op set of the reference configuration (METANAS drops "none").
DEFAULT_OPS = [
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "conv_1x5_5x1",
    "conv_3x3",
    "sep_conv_3x3",
    "dil_conv_3x3",
]
