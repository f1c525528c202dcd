"""Omniglot reader: find the data, decode every PNG once, cache the result as one tensor file.

Decoding 32,460 PNGs takes seconds; meta-training samples thousands of tasks from them, so the
decoded, resized images are kept in memory (about 25 MB at 28 px) and on disk between runs.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from metanas.errors import MetanasError
from metanas.files import atomic_write

HALVES = ("images_background", "images_evaluation")
# Bump when the decoding or the file layout changes: old cache files then fail validation and are rebuilt.
CACHE_VERSION = 1


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "metanas"


def cache_dir() -> Path:
    """Where decoded datasets are cached: $METANAS_CACHE, else the user cache (~/.cache/metanas)."""
    return Path(os.environ.get("METANAS_CACHE") or _user_cache()).expanduser()


def resolve_data_root(data_root: str | None) -> Path:
    """The folder that contains omniglot-py/: the argument, else $METANAS_DATA, else the user cache."""
    default = _user_cache() / "data"
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


@dataclass(eq=False, repr=False)
class ClassDataset:
    """An in-memory labelled image set: uint8 images [M, H, W] (stroke 255, background 0), labels 0..C-1."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @cached_property
    def indices_per_class(self) -> list[torch.Tensor]:
        """For each class, the indices of its images (in file order)."""
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.num_classes)
        return list(torch.split(order, counts.tolist()))

    def subset(self, class_ids: list[int]) -> ClassDataset:
        """The images of `class_ids`, relabelled 0..len-1 in the given order."""
        index = torch.cat([self.indices_per_class[c] for c in class_ids])
        labels = torch.cat([torch.full((len(self.indices_per_class[c]),), new) for new, c in enumerate(class_ids)])
        return ClassDataset(self.images[index], labels, [self.class_names[c] for c in class_ids])

    def __repr__(self) -> str:
        return f"ClassDataset({len(self.images)} images {tuple(self.images.shape[1:])}, {self.num_classes} classes)"


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


def preprocess(im: Image.Image, size: int = 28) -> np.ndarray:
    """One drawing as the networks see it: uint8 [size, size], strokes high (divide by 255 for [0, 1]).

    The single definition shared by the training cache and by ``metanas predict``/``export``, so a
    shipped model sees user images exactly as it saw Omniglot during meta-training.
    """
    # 1-bit True = background; convert to L before resizing (PIL resizes mode "1" with nearest only)
    # and invert so strokes are high: zero padding and zero-init then mean "no ink".
    return np.asarray(ImageOps.invert(im.convert("L")).resize((size, size), Image.LANCZOS))


def read_image(path: str | os.PathLike, size: int = 28) -> np.ndarray:
    """:func:`preprocess` of an image file; an unreadable file is a MetanasError naming it."""
    try:
        with Image.open(path) as im:
            return preprocess(im, size)
    except Exception as e:
        raise MetanasError(f"cannot decode {path}: {e}; delete or replace the file, or set data.skip_corrupt=true "
                           "to skip unreadable images with a warning") from None


def _decode(job: tuple[Path, int, bool]) -> np.ndarray | None:
    path, size, skip_corrupt = job
    try:
        return read_image(path, size)
    except MetanasError:
        if skip_corrupt:
            return None
        raise


def _cache_file(root: Path, image_size: int) -> Path:
    # The root's hash keeps caches of different trees (e.g. a test's tiny fake one) from evicting each other.
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    return cache_dir() / f"omniglot-{image_size}px-v{CACHE_VERSION}-{digest}.pt"


def _read_cache(path: Path, root: Path, count: int, image_size: int) -> ClassDataset | None:
    """The cached dataset, or None when the file is missing, unreadable or stale."""
    try:
        blob = torch.load(path, weights_only=True)
        images, labels, names = blob["images"], blob["labels"], blob["class_names"]
        valid = (
            blob["version"] == CACHE_VERSION
            and blob["root"] == str(root)
            and blob["count"] == count
            and images.dtype == torch.uint8
            and tuple(images.shape) == (count, image_size, image_size)
            and tuple(labels.shape) == (count,)
            and int(labels.max()) == len(names) - 1
        )
    except Exception:  # truncated, garbage, or an older layout: all mean "rebuild"
        return None
    return ClassDataset(images, labels, names) if valid else None


def _write_cache(path: Path, blob: dict) -> None:
    try:
        atomic_write(path, lambda f: torch.save(blob, f))
    except OSError as e:
        raise MetanasError(f"cannot write the data cache in {path.parent}: {e}; set METANAS_CACHE to a writable folder")


def load_omniglot(root: Path, image_size: int = 28, skip_corrupt: bool = False) -> ClassDataset:
    """All 1,623 Omniglot characters (background classes first), decoded once and then read from the cache.

    ``skip_corrupt``: drop unreadable images with a warning instead of stopping. A dataset with skipped
    images is not cached, so the warning repeats until the files are fixed.
    """
    root = Path(root).resolve()
    classes = _list_classes(root)
    paths = [p for _, files in classes for p in files]
    if not paths:
        raise MetanasError(f"no PNG files under {root / 'omniglot-py'}; point --data-root or METANAS_DATA at a full copy")
    cache = _cache_file(root, image_size)
    dataset = _read_cache(cache, root, len(paths), image_size)
    if dataset is not None:
        return dataset

    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        decoded = pool.map(_decode, [(p, image_size, skip_corrupt) for p in paths], chunksize=256)
        try:
            decoded = list(tqdm(decoded, total=len(paths), desc=f"decoding Omniglot at {image_size}px", unit="img"))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a bad file or Ctrl-C: do not decode the rest first
            raise
    labels = torch.cat([torch.full((len(files),), c) for c, (_, files) in enumerate(classes)])
    ok = [im is not None for im in decoded]
    dataset = ClassDataset(torch.from_numpy(np.stack([im for im in decoded if im is not None])), labels[ok],
                           [name for name, _ in classes])
    if not all(ok):
        bad = [str(p) for p, good in zip(paths, ok) if not good]
        warnings.warn(f"skipped {len(bad)} unreadable image(s) (data.skip_corrupt=true), e.g. {bad[0]}", stacklevel=2)
        return dataset
    _write_cache(cache, {
        "version": CACHE_VERSION, "root": str(root), "count": len(paths),
        "images": dataset.images, "labels": dataset.labels, "class_names": dataset.class_names,
    })
    return dataset
