"""Per-task distribution shifts: a registry of image transforms that turn a task into a new domain.

Every shift is ``fn(x, severity, generator) -> x`` on a float batch ``x`` [N, C, H, W] in [0, 1]
(C = 1: grayscale, strokes high; C = 3: RGB). Geometric, blur, noise and morphological shifts act on
each channel alike, so they are defined on colour images too; the colour shifts (hue, grayscale) need 3
channels and refuse others with a clear message (a family listing one must say ``channels: 3``). Its random parameters (the rotation angle, the elastic field, ...) are drawn ONCE per
call from ``generator``, and a call transforms a whole task (support and query together): every image
of a task shares the shift, as images from one new domain would. Pixel noise is the only per-image
randomness (its level is the shared parameter).

``severity`` in [0, 1] scales each shift's documented range; 0 is the identity (up to float rounding).
Lengths are in pixels at 28 px and scale with the image size.

| shift | per-task parameter at severity s |
|---|---|
| clean | none (identity) |
| rotation | angle ~ U(-180 s, 180 s) degrees |
| scale_translate | zoom ~ (1 + 0.5 s)^U(-1, 1), shift ~ U(-0.25 s, 0.25 s) of the width per axis |
| elastic | one smooth random displacement field (sigma 4 px), rms displacement 2 s px |
| noise | Gaussian pixel noise, std 0.5 s (clamped to [0, 1]) |
| blur | Gaussian blur, sigma 1.25 s px |
| invert | with probability s the task is inverted (x -> 1 - x) |
| dilate | max filter of radius 1 s px (thicker strokes), at 4x resolution |
| erode | min filter of radius 0.75 s px (thinner strokes), at 4x resolution |
| color_jitter | brightness, contrast and saturation factors each ~ U(1 - 0.4 s, 1 + 0.4 s) (saturation: RGB only) |
| hue | hue rotation ~ U(-180 s, 180 s) degrees about the gray axis (RGB only) |
| grayscale | blend towards the luma image with weight s (RGB only) |
| jpeg | JPEG compression at quality 95 - 85 s (PIL, per image; none at s = 0) |
| downsample | down- then upsampling (bilinear) by a factor 1 + 3 s |

Inversion cannot be graded pixel-wise: on binary strokes every continuous path from x to 1 - x passes
through a constant image, so its severity is the probability that a task is inverted.
"""

from __future__ import annotations

import io
import math
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from metanas.data.images import LUMA
from metanas.core.errors import MetanasError
from metanas.core.registry import Registry

ShiftFn = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]
SHIFTS = Registry("shift")  # name -> ShiftFn
REFERENCE_SIZE = 28  # pixel lengths below are at 28 px
SUPERSAMPLE = 4  # dilate/erode work at 4x the resolution


def register(name: str):
    """Decorator: add ``fn(x, severity, generator) -> x`` to :data:`SHIFTS` as ``name``."""
    return SHIFTS.register(name=name)


def _px(x: torch.Tensor) -> float:
    return x.shape[-1] / REFERENCE_SIZE


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _affine(x: torch.Tensor, theta: list[list[float]]) -> torch.Tensor:
    # theta maps output to input coordinates in [-1, 1]; zero padding = background outside the image.
    theta = torch.tensor(theta, dtype=x.dtype, device=x.device).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter per channel; replicate padding keeps a non-zero background (after inversion)."""
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(-1, 1, 1, 2 * r + 1), groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(-1, 1, 2 * r + 1, 1), groups=x.shape[1])


def _extremum_filter(x: torch.Tensor, radius: float, sign: float) -> torch.Tensor:
    """Max (sign=1) or min (sign=-1) filter of `radius` pixels, computed at SUPERSAMPLE x the resolution.

    At 28 px Omniglot strokes are 1-2 px wide: a whole-pixel min filter erases them. Supersampled, the
    radius moves in quarter pixels, so strokes thin or thicken gradually; a fractional radius interpolates.
    """
    if radius < 1e-6:
        return x
    fine = F.interpolate(x, scale_factor=SUPERSAMPLE, mode="bilinear", align_corners=False)

    def pool(r: int) -> torch.Tensor:
        return fine if r == 0 else sign * F.max_pool2d(sign * fine, 2 * r + 1, stride=1, padding=r)

    radius *= SUPERSAMPLE
    low = math.floor(radius)
    frac = radius - low
    out = pool(low)
    if frac > 1e-6:
        out = out + frac * (pool(low + 1) - out)
    return F.avg_pool2d(out, SUPERSAMPLE)


@register("clean")
def clean(x, severity, generator):
    return x


@register("rotation")
def rotation(x, severity, generator):
    angle = math.radians(_uniform(generator, -180 * severity, 180 * severity))
    c, s = math.cos(angle), math.sin(angle)
    return _affine(x, [[c, -s, 0.0], [s, c, 0.0]])


@register("scale_translate")
def scale_translate(x, severity, generator):
    zoom = (1 + 0.5 * severity) ** _uniform(generator, -1, 1)
    tx, ty = (_uniform(generator, -0.25 * severity, 0.25 * severity) for _ in range(2))
    # input = output / zoom - 2 t: content grows by `zoom` and moves by 2 t * zoom (normalised units)
    return _affine(x, [[1 / zoom, 0.0, -2 * tx], [0.0, 1 / zoom, -2 * ty]])


@register("elastic")
def elastic(x, severity, generator):
    # Simard et al. 2003: a uniform random field smoothed by a Gaussian; normalised to a fixed rms so that
    # severity means displacement in pixels whatever the smoothing. One field for the whole task.
    n, _, h, w = x.shape
    field = torch.rand((1, 2, h, w), generator=generator).to(x) * 2 - 1
    field = _gaussian_smooth(field, 4 * _px(x))
    field = field / field.pow(2).mean().sqrt().clamp_min(1e-8) * (2 * severity * _px(x))
    # pixels -> normalised grid units (align_corners=False: the width spans 2 units)
    field = field * torch.tensor([2 / w, 2 / h], dtype=x.dtype, device=x.device).view(1, 2, 1, 1)
    identity = F.affine_grid(torch.eye(2, 3, dtype=x.dtype, device=x.device)[None], [1, 1, h, w], align_corners=False)
    grid = (identity + field.permute(0, 2, 3, 1)).expand(n, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@register("noise")
def noise(x, severity, generator):
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + 0.5 * severity * eps).clamp(0, 1)


@register("blur")
def blur(x, severity, generator):
    sigma = 1.25 * severity * _px(x)
    return x if sigma < 1e-3 else _gaussian_smooth(x, sigma)


@register("invert")
def invert(x, severity, generator):
    return 1 - x if torch.rand((), generator=generator).item() < severity else x


@register("dilate")
def dilate(x, severity, generator):
    return _extremum_filter(x, 1.0 * severity * _px(x), 1.0)


@register("erode")
def erode(x, severity, generator):
    return _extremum_filter(x, 0.75 * severity * _px(x), -1.0)


COLOUR_SHIFTS = ("hue", "grayscale")  # need RGB


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _require_rgb(x: torch.Tensor, name: str) -> None:
    if x.shape[1] != 3:
        raise MetanasError(f"shift {name} needs RGB images (3 channels), got {x.shape[1]}: use it in a family with "
                           "channels: 3")


@register("color_jitter")
def color_jitter(x, severity, generator):
    brightness, contrast, saturation = (_uniform(generator, 1 - 0.4 * severity, 1 + 0.4 * severity) for _ in range(3))
    x = x * brightness
    x = (x - x.mean((1, 2, 3), keepdim=True)) * contrast + x.mean((1, 2, 3), keepdim=True)
    if x.shape[1] == 3:
        x = (x - _gray(x)) * saturation + _gray(x)
    return x.clamp(0, 1)


@register("hue")
def hue(x, severity, generator):
    _require_rgb(x, "hue")
    # Rodrigues rotation about the gray axis (1, 1, 1)/sqrt(3): a linear hue rotation of RGB
    angle = math.radians(_uniform(generator, -180 * severity, 180 * severity))
    c, s, k = math.cos(angle), math.sin(angle), 1 / math.sqrt(3)
    t = (1 - c) / 3
    m = torch.tensor([[c + t, t - k * s, t + k * s], [t + k * s, c + t, t - k * s], [t - k * s, t + k * s, c + t]],
                     dtype=x.dtype, device=x.device)
    return torch.einsum("ij,njhw->nihw", m, x).clamp(0, 1)


@register("grayscale")
def grayscale(x, severity, generator):
    _require_rgb(x, "grayscale")
    return x + severity * (_gray(x) - x)


@register("jpeg")
def jpeg(x, severity, generator):
    if severity < 1e-6:
        return x
    quality = round(95 - 85 * severity)
    mode = "RGB" if x.shape[1] == 3 else "L"
    out = []
    for im in (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(im.transpose(1, 2, 0) if mode == "RGB" else im[0], mode).save(buf, "JPEG", quality=quality)
        a = np.asarray(Image.open(buf).convert(mode))
        out.append(a.transpose(2, 0, 1) if mode == "RGB" else a[None])
    return torch.from_numpy(np.stack(out)).to(x.device, x.dtype) / 255


@register("downsample")
def downsample(x, severity, generator):
    factor = 1 + 3 * severity
    h, w = x.shape[-2:]
    if factor < 1.01:
        return x
    small = F.interpolate(x, size=(max(1, round(h / factor)), max(1, round(w / factor))), mode="bilinear",
                          align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


class Shift(NamedTuple):
    """One entry of a family's ``shifts:`` list."""

    name: str
    severity: float = 1.0

    def __str__(self) -> str:
        return self.name if self.name == "clean" else f"{self.name}:{self.severity:g}"


def parse_shifts(spec, where: str) -> tuple[Shift, ...]:
    """Validate a YAML ``shifts:`` list: entries are NAME or {name: NAME, severity: S in [0, 1]}."""
    if spec is None:
        return ()
    if not isinstance(spec, (list, tuple)):
        raise MetanasError(f"{where}: shifts must be a list of shift names or {{name, severity}} mappings, got {spec!r}")
    out = []
    for entry in spec:
        if isinstance(entry, str):
            entry = {"name": entry}
        elif isinstance(entry, Shift):
            entry = entry._asdict()
        if not isinstance(entry, dict) or "name" not in entry or set(entry) - {"name", "severity"}:
            raise MetanasError(f"{where}: bad shift entry {entry!r}; write a name or {{name: NAME, severity: 0..1}}")
        name, severity = entry["name"], entry.get("severity", 1.0)
        if name not in SHIFTS:
            raise MetanasError(f"{where}: {SHIFTS.unknown(name)}")
        if isinstance(severity, bool) or not isinstance(severity, (int, float)) or not 0 <= severity <= 1:
            raise MetanasError(f"{where}: shift {name} needs a severity between 0 and 1, got {severity!r}")
        out.append(Shift(name, float(severity)))
    return tuple(out)


class TaskShift:
    """Applies a family's shifts to one task.

    ``compose=False``: each task draws ONE entry uniformly (list "clean" to keep a share of unshifted
    tasks; repeat an entry to weight it). ``compose=True``: every entry is applied, in list order.
    """

    def __init__(self, shifts: tuple[Shift, ...], compose: bool = False):
        if not shifts:
            raise ValueError("TaskShift needs at least one shift")
        self.shifts, self.compose = tuple(shifts), compose

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.compose:
            chosen = self.shifts
        else:
            chosen = [self.shifts[int(torch.randint(len(self.shifts), (), generator=generator))]]
        for shift in chosen:
            x = SHIFTS[shift.name](x, shift.severity, generator)
        return x

    def __repr__(self) -> str:
        return ("+" if self.compose else "|").join(map(str, self.shifts))
