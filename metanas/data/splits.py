"""Class splits and image loading of a task family: which classes are meta-train, validation and test (Lake's and
Vinyals' Omniglot splits, the benchmarks' published splits, the fonts' scripts, custom lists), the data set's
images at the family's size and channels (decoded once per process), and the network's input format."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import torch

from metanas.data import datasets, fewshot
from metanas.data.families import RENDERED_SPLITS, TaskFamily
from metanas.data.images import ClassDataset, ImageFormat, channel_stats, to_channels
from metanas.data.omniglot import resolve_data_root
from metanas.core.errors import MetanasError


def _lake_split(data: ClassDataset) -> list[list[int]]:
    """Meta-train/validate on images_background (validation = every 6th alphabet), test on images_evaluation."""
    half_alphabet = [name.split("/")[:2] for name in data.class_names]
    background = sorted({a for h, a in half_alphabet if h == "images_background"})
    validation = set(background[::6])
    split = [[], [], []]
    for c, (half, alphabet) in enumerate(half_alphabet):
        split[2 if half == "images_evaluation" else 1 if alphabet in validation else 0].append(c)
    return split


def _vinyals_split(data: ClassDataset) -> list[list[int]]:
    """All characters shuffled with seed 0: 1,100 train, 100 validation, the remaining 423 test."""
    perm = torch.randperm(data.num_classes, generator=torch.Generator().manual_seed(0)).tolist()
    return [sorted(perm[:1100]), sorted(perm[1100:1200]), sorted(perm[1200:])]


def class_splits(family: TaskFamily, data: ClassDataset) -> list[list[int]]:
    """Class ids of the train, validation and test splits (disjoint; a list may be empty)."""
    if family.split == "lake":
        return _lake_split(data)
    if family.split == "vinyals":
        return _vinyals_split(data)
    if family.split == "all":
        return [[], [], list(range(data.num_classes))]
    ids = {name: c for c, name in enumerate(data.class_names)}
    if family.split == "standard":  # a rendered set names its own split; the readers checked the benchmarks' classes
        rendered = RENDERED_SPLITS.get(family.dataset)
        per_split = rendered() if rendered else fewshot.split_classes(family.dataset)
        return [[ids[n] for n in names] for names in per_split]
    unknown = [n for names in family.classes for n in names if n not in ids]
    if unknown:
        raise MetanasError(f"task {family.name}: class {unknown[0]!r} of classes: is not in the {family.dataset} "
                           f"data; its classes are {', '.join(data.class_names[:20])}"
                           f"{' ...' if data.num_classes > 20 else ''}")
    return [[ids[n] for n in names] for names in family.classes]


@functools.lru_cache(maxsize=4)
def _load(dataset: str, root: str | None, image_size: int, channels: int, skip_corrupt: bool,
          data_root: str | None) -> ClassDataset:
    # One decode/cache read per process, shared by the train, validation and test task sets; ``data_root`` is
    # resolved by the caller, so a changed METANAS_DATA is a new key.
    roots = [Path(r).expanduser() for r in (root, data_root) if r]  # the family's, then the data root
    return datasets.READERS.get(dataset)(dataset, roots, image_size, channels, skip_corrupt)


def load_dataset(family: TaskFamily, data_root: str | None = None, skip_corrupt: bool = False) -> ClassDataset:
    """Every image of the family's data set (all splits) as uint8 [M, C, H, W] at the family's size and channels
    (grayscale stroke data: strokes high)."""
    if family.dataset == "omniglot":
        data_root = str(resolve_data_root(data_root))
    else:
        data_root = data_root or os.environ.get("METANAS_DATA")
    data = _load(family.dataset, family.root, family.image_size, family.channels, skip_corrupt, data_root)
    images = to_channels(data.images, family.channels)
    if family.invert:
        images = 255 - images
    return data if images is data.images else ClassDataset(images, data.labels, data.class_names)


def image_format(family: TaskFamily, data: ClassDataset, class_ids: list[int]) -> ImageFormat:
    """The family's network input: its channels and size; normalised with the meta-train split's per-channel
    statistics (all its images for a test-only family) when ``family.normalize``."""
    if not family.normalize:
        return family.image
    mean, std = channel_stats(data.images, torch.cat([data.indices_per_class[c] for c in class_ids]))
    return dataclasses.replace(family.image, mean=mean, std=std)

