"""``fonts``: printed characters, rendered from the TrueType fonts that ship inside matplotlib (offline).

A second kind of character image beside Omniglot's handwriting: the same letters in 16 typefaces (DejaVu Sans,
Sans Mono and Serif, STIX General; regular, bold, italic, bold italic). A class is one letter; its images are
the letter in each typeface in turn, each with its own small random rotation, scale and offset (seeded by class
and image, so the set is the same on every machine with the same fonts). Letters are the 347 without
diacritics that every one of the fonts has; the split follows scripts, as Lake's follows alphabets:
meta-train on Latin (193 letters, IPA included), validate on Greek (68), test on Cyrillic (86).

Strokes are high (255) on a 0 background, like Omniglot after its inversion. Rendering the 6,940 images takes a
few seconds; the result is kept per process.
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

import numpy as np
import torch

from metanas.data.images import ClassDataset
from metanas.core.errors import MetanasError

FONT_FILES = tuple(f"DejaVu{family}{style}.ttf" for family in ("Sans", "SansMono", "Serif")
                   for style in ("", "-Bold", "-Oblique" if family != "Serif" else "-Italic",
                                 "-BoldOblique" if family != "Serif" else "-BoldItalic")) + \
             ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf")
IMAGES_PER_CLASS = 20
SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")  # train, validation, test
RENDER = 64  # rendered at this size, then resized: anti-aliased strokes at any image_size


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _paths() -> list[Path]:
    paths = [font_dir() / name for name in FONT_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise MetanasError(f"fonts data set: {missing[0]} is not in {font_dir()} (matplotlib's fonts); reinstall "
                           "matplotlib (pip install --force-reinstall matplotlib)")
    return paths


def _script(ch: str) -> str:
    return unicodedata.name(ch, "").split(" ")[0]


@functools.lru_cache(maxsize=1)
def letters() -> tuple[str, ...]:
    """The letters without diacritics (NFD-stable) of the Latin, Greek and Cyrillic scripts that every font has,
    in code-point order."""
    from matplotlib import ft2font

    common = set.intersection(*(set(ft2font.FT2Font(str(p)).get_charmap()) for p in _paths()))
    chars = (chr(c) for c in sorted(common))
    return tuple(ch for ch in chars if unicodedata.category(ch) in ("Lu", "Ll", "Lo")
                 and unicodedata.normalize("NFD", ch) == ch and _script(ch) in SCRIPTS)


def split_classes() -> list[list[str]]:
    """Class names (``U+XXXX``) of the train (Latin), validation (Greek) and test (Cyrillic) splits."""
    return [[_name(ch) for ch in letters() if _script(ch) == s] for s in SCRIPTS]


def _name(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _glyph(font, ch: str, rng: np.random.Generator):
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (2 * RENDER, 2 * RENDER), 0)
    ImageDraw.Draw(canvas).text((RENDER // 2, RENDER // 2), ch, fill=255, font=font)
    return place(canvas, rng)


def place(canvas, rng: np.random.Generator):
    """The ink of ``canvas`` (a PIL "L" image, strokes high) on a ``RENDER``-pixel square, turned, scaled and
    moved a little (None: no ink). Shared with :mod:`metanas.data.glyphs`."""
    from PIL import Image

    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box).rotate(rng.uniform(-12, 12), resample=Image.BILINEAR, expand=True)
    # the longer side fills 60-85% of the image, offset by up to 8% of it
    scale = rng.uniform(0.6, 0.85) * RENDER / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.BILINEAR)
    out = Image.new("L", (RENDER, RENDER), 0)
    dx, dy = (round(rng.uniform(-0.08, 0.08) * RENDER) for _ in range(2))
    out.paste(glyph, ((RENDER - glyph.width) // 2 + dx, (RENDER - glyph.height) // 2 + dy))
    return out


@functools.lru_cache(maxsize=2)
def load_fonts(image_size: int = 28) -> ClassDataset:
    """Every letter in :data:`IMAGES_PER_CLASS` renderings, uint8 [M, 1, image_size, image_size], strokes high."""
    from PIL import Image, ImageFont

    fonts = [ImageFont.truetype(str(p), size=round(RENDER * 0.8)) for p in _paths()]
    images, labels, names = [], [], []
    for c, ch in enumerate(letters()):
        for i in range(IMAGES_PER_CLASS):
            rng = np.random.default_rng([ord(ch), i])
            glyph = _glyph(fonts[i % len(fonts)], ch, rng)
            if glyph is None:
                raise MetanasError(f"fonts data set: {FONT_FILES[i % len(fonts)]} renders {_name(ch)} as an empty "
                                   "image; reinstall matplotlib")
            images.append(np.asarray(glyph.resize((image_size, image_size), Image.LANCZOS)))
            labels.append(c)
        names.append(_name(ch))
    x = torch.from_numpy(np.stack(images))[:, None].contiguous()
    return ClassDataset(x, torch.tensor(labels), names)


def describe(name: str) -> str:
    """``U+0416`` -> ``Ж (CYRILLIC CAPITAL LETTER ZHE)``."""
    ch = chr(int(name[2:], 16))
    return f"{ch} ({unicodedata.name(ch, '?')})"

