"""Image sources besides Omniglot and the few-shot benchmarks, each read into a ClassDataset (uint8 [M, C, H, W]).

- ``digits``: scikit-learn's handwritten digits (1,797 images, 8x8, 10 classes), shipped inside the
  package, so a second real data set is available offline.
- ``imagefolder``: any folder of class sub-folders (torchvision's ImageFolder layout), the user's own data,
  grayscale or colour (the family's ``channels``), decoded once and cached like Omniglot.
- ``mnist`` / ``fashionmnist`` / ``kmnist``: torchvision's sets (the 10,000-image test part), downloaded
  into the user cache where the machine has internet.

digits and the torchvision sets are small enough to decode per process (digits in milliseconds).

:data:`READERS` names every image source a family's ``dataset:`` may name (these, Omniglot, the fonts, the glyphs
the few-shot benchmarks of :mod:`metanas.data.fewshot`, and Meta-Dataset's and BSCD-FSL's sources of
:mod:`metanas.data.crossdomain`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from metanas.data import crossdomain, fewshot, fonts, glyphs
from metanas.data.images import ClassDataset, decode_classes, image_files, resize, user_cache
from metanas.data.omniglot import load_omniglot
from metanas.core.errors import MetanasError
from metanas.core.registry import Registry

TORCHVISION = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST"}


def load_digits(image_size: int = 28) -> ClassDataset:
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    # values 0..16 with ink high, like Omniglot after our inversion: only rescale to 0..255
    images = torch.from_numpy(np.round(digits.images * (255 / 16)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return ClassDataset(resize(images, image_size), labels, [str(n) for n in digits.target_names])


def load_imagefolder(root: Path, image_size: int = 28, skip_corrupt: bool = False, channels: int = 1) -> ClassDataset:
    """Every image under root/CLASS/ (grayscale or RGB), resized to a square (class names = folder names)."""
    root = Path(root)
    if not root.is_dir():
        raise MetanasError(f"image folder {root} not found: set root: in the task YAML to a folder with one "
                           "sub-folder of images per class (absolute, or relative to the YAML file)")
    classes = sorted(p.name for p in os.scandir(root) if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise MetanasError(f"image folder {root} has no class sub-folders: put each class's images in root/CLASS/")
    listed = [(name, image_files(root / name)) for name in classes]
    empty = next((name for name, files in listed if not files), None)
    if empty is not None:
        raise MetanasError(f"class folder {root / empty} has no readable images: add images or remove the folder")
    data = decode_classes("imagefolder", root, listed, image_size, channels, skip_corrupt=skip_corrupt,
                          label=f"{root.name}/")
    missing = set(range(len(classes))) - set(data.labels.unique().tolist())
    if missing:
        raise MetanasError(f"class folder {root / classes[min(missing)]} has no readable images: add images or "
                           "remove the folder")
    return data


def from_torchvision(dataset, image_size: int = 28) -> ClassDataset:
    """A torchvision MNIST-style set (``.data`` uint8 [M, H, W], ``.targets``, ``.classes``) as a ClassDataset."""
    data, targets, classes = dataset.data, dataset.targets, list(dataset.classes)
    images = torch.as_tensor(np.asarray(data), dtype=torch.uint8)
    labels = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise MetanasError(f"{type(dataset).__name__}: expected grayscale images [M, H, W] and one target each, "
                           f"got {tuple(images.shape)} and {len(labels)} targets")
    present = torch.unique(labels)
    if len(present) < len(classes):  # keep labels 0..C-1 dense: ClassDataset has no empty classes
        remap = torch.full((len(classes),), -1, dtype=torch.int64)
        remap[present] = torch.arange(len(present))
        labels, classes = remap[labels], [classes[i] for i in present.tolist()]
    return ClassDataset(resize(images[:, None], image_size), labels, classes)


def load_torchvision(name: str, image_size: int, roots: list[Path]) -> ClassDataset:
    """torchvision's ``name`` set (test part) from the first root that has it, else downloaded into the user cache."""
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION[name])
    for root in roots:
        try:
            return from_torchvision(cls(str(root), train=False, download=False), image_size)
        except (RuntimeError, OSError):  # torchvision: "Dataset not found"
            pass
    cache = user_cache() / "data"
    try:
        return from_torchvision(cls(str(cache), train=False, download=True), image_size)
    except Exception as e:
        searched = ", ".join(str(r) for r in [*roots, cache])
        raise MetanasError(
            f"{TORCHVISION[name]} not found under {searched} and the download failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}): on a machine with internet run "
            f"python -c \"import torchvision; torchvision.datasets.{TORCHVISION[name]}('DIR', train=False, "
            "download=True)\", copy DIR here and set root: DIR in the task YAML (or METANAS_DATA=DIR)"
        ) from None


READERS = Registry("dataset")
"""The image sources by ``dataset:`` name: ``read(name, roots, image_size, channels, skip_corrupt)`` -> ClassDataset,
``roots`` being the family's root, then the data root (--data-root / METANAS_DATA; resolved for Omniglot), where set."""
READERS.register(lambda name, roots, size, channels, skip: load_omniglot(roots[-1], size, skip), name="omniglot")
READERS.register(lambda name, roots, size, channels, skip: load_digits(size), name="digits")
READERS.register(lambda name, roots, size, channels, skip: fonts.load_fonts(size), name="fonts")
READERS.register(lambda name, roots, size, channels, skip: glyphs.load_glyphs(size), name="glyphs")
READERS.register(lambda name, roots, size, channels, skip: load_imagefolder(roots[0], size, skip, channels),
                 name="imagefolder")  # root: is required
for _name in TORCHVISION:
    READERS.register(lambda name, roots, size, channels, skip: load_torchvision(name, size, roots), name=_name)
for _name in fewshot.READERS:
    READERS.register(lambda name, roots, size, channels, skip: fewshot.load(name, roots, size, skip), name=_name)
for _name in crossdomain.READERS:
    READERS.register(lambda name, roots, size, channels, skip: crossdomain.load(name, roots, size, channels, skip),
                     name=_name)
