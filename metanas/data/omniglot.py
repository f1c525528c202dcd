"""Omniglot reader: find the data, decode every PNG once, cache the result as one tensor file.

Decoding 32,460 PNGs takes seconds; meta-training samples thousands of tasks from them, so the
decoded, resized images are kept in memory (about 25 MB at 28 px) and on disk between runs
(:func:`metanas.data.images.decode_classes`).
"""

from __future__ import annotations

import os
from pathlib import Path

from metanas.data.images import ClassDataset, decode_classes, user_cache
from metanas.core.errors import MetanasError

HALVES = ("images_background", "images_evaluation")


def resolve_data_root(data_root: str | None) -> Path:
    """The folder that contains omniglot-py/: the argument, else $METANAS_DATA, else the user cache."""
    default = user_cache() / "data"
    root = Path(data_root or os.environ.get("METANAS_DATA") or default).expanduser().resolve()
    missing = [root / "omniglot-py" / half for half in HALVES if not (root / "omniglot-py" / half).is_dir()]
    if missing and root == default.resolve():
        # Only the default location is ours to fill; never download into a folder the user named.
        try:
            import torchvision

            for background in (True, False):
                torchvision.datasets.Omniglot(str(root), background=background, download=True)
        except Exception:  # no network, or the mirror is gone: the error below says what to do
            pass
        missing = [p for p in missing if not p.is_dir()]
    if missing:
        raise MetanasError(
            f"Omniglot not found under {root} (expected {missing[0]}): point --data-root or METANAS_DATA "
            "at the folder that contains omniglot-py/"
        )
    return root


def _list_classes(root: Path) -> list[tuple[str, list[Path]]]:
    """(class name, sorted PNG paths) for every character: background then evaluation, sorted by name."""
    classes = []
    for half in HALVES:
        half_dir = root / "omniglot-py" / half
        for alphabet in sorted(p.name for p in os.scandir(half_dir) if p.is_dir()):
            for char in sorted(p.name for p in os.scandir(half_dir / alphabet) if p.is_dir()):
                char_dir = half_dir / alphabet / char
                files = sorted(char_dir / f for f in os.listdir(char_dir) if f.endswith(".png"))
                if files:
                    classes.append((f"{half}/{alphabet}/{char}", files))
    return classes


def load_omniglot(root: Path, image_size: int = 28, skip_corrupt: bool = False) -> ClassDataset:
    """All 1,623 Omniglot characters (background classes first) as uint8 [32460, 1, size, size], strokes high,
    decoded once and then read from the cache.

    ``skip_corrupt``: drop unreadable images with a warning instead of stopping. A dataset with skipped
    images is not cached, so the warning repeats until the files are fixed.
    """
    root = Path(root).resolve()
    classes = _list_classes(root)
    if not classes:
        raise MetanasError(f"no PNG files under {root / 'omniglot-py'}; point --data-root or METANAS_DATA at a full copy")
    # the PNGs have black strokes on white: inverted, so strokes are high
    return decode_classes("omniglot", root, classes, image_size, channels=1, invert=True, skip_corrupt=skip_corrupt,
                          label="Omniglot")
