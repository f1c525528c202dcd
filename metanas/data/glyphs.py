"""``glyphs``: procedural pen-stroke glyphs, a third kind of character image that needs no file and no download.

A class is one random glyph: one to three cubic Bezier strokes with control points anywhere in the unit square.
Its images redraw that glyph as a different pen would: each control point moved a little, a pen width from thin to
bold (as the typefaces of :mod:`metanas.data.fonts` differ), then turned, scaled and moved as the fonts are. Every
class and image is seeded by its index, so the set is the same on every machine. Neither handwriting (Omniglot)
nor print (fonts): a further kind of image for mixtures, as a *validation source* (a domain the mixture neither
trains on nor is tested on, to choose settings for robustness to new sources) or as a source to train on
(``omniglot-glyphs-fonts-5way``). Split: classes 0-399 meta-train, 400-499 validation, 500-599 test.

Strokes are high (255) on a 0 background, like Omniglot after its inversion. Rendering the 12,000 images takes a
few seconds; the result is kept per process.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from metanas.data.fonts import RENDER, place
from metanas.data.images import ClassDataset

SPLIT = (400, 100, 100)  # classes: train, validation, test
IMAGES_PER_CLASS = 20
_SEED = 0x61797068  # a tag, so that glyph c's generator is no other module's [c]
_CURVE = np.linspace(0.0, 1.0, 16)[:, None]


def split_classes() -> list[list[str]]:
    """Class names (``g0000`` ...) of the train, validation and test splits."""
    names = [f"g{c:04d}" for c in range(sum(SPLIT))]
    ends = np.cumsum(SPLIT)
    return [names[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def _strokes(c: int) -> list[np.ndarray]:
    """Glyph ``c``: 1-3 strokes, each 4 control points [4, 2] in the unit square."""
    rng = np.random.default_rng([_SEED, c])
    return [rng.uniform(0.0, 1.0, (4, 2)) for _ in range(int(rng.integers(1, 4)))]


def _bezier(p: np.ndarray) -> np.ndarray:
    t = _CURVE
    return (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3]


def _draw(strokes: list[np.ndarray], rng: np.random.Generator):
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (2 * RENDER, 2 * RENDER), 0)
    draw, width = ImageDraw.Draw(canvas), int(rng.integers(3, 10))  # pen width, thin to bold
    for p in strokes:
        points = _bezier(p + rng.normal(0.0, 0.04, p.shape)) * RENDER + RENDER // 2
        draw.line([tuple(q) for q in points], fill=255, width=width)
    return place(canvas, rng)


def drawing(c: int, i: int, image_size: int = 28, strokes: list[np.ndarray] | None = None) -> np.ndarray:
    """Image ``i`` of glyph ``c`` (its ``strokes``, computed if not given): uint8 [image_size, image_size]."""
    from PIL import Image

    image = _draw(_strokes(c) if strokes is None else strokes, np.random.default_rng([_SEED, c, i]))
    return np.asarray(image.resize((image_size, image_size), Image.LANCZOS))


@functools.lru_cache(maxsize=2)
def load_glyphs(image_size: int = 28) -> ClassDataset:
    """Every glyph in :data:`IMAGES_PER_CLASS` drawings, uint8 [M, 1, image_size, image_size], strokes high."""
    n, images = sum(SPLIT), []
    for c in range(n):
        strokes = _strokes(c)  # once per glyph, not per drawing
        images += [drawing(c, i, image_size, strokes) for i in range(IMAGES_PER_CLASS)]
    x = torch.from_numpy(np.stack(images))[:, None].contiguous()
    labels = torch.arange(n).repeat_interleave(IMAGES_PER_CLASS)
    return ClassDataset(x, labels, [name for names in split_classes() for name in names])
