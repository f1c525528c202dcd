"""Data layer: images and their cache, Omniglot, the few-shot benchmarks, other image sources (digits, fonts, image
folders), task families (families), class splits (splits), shifts, the few-shot task sampler (sampler), and the
evaluation suites (suites)."""

from metanas.data.families import TaskFamily, check_trainable, list_families, load_family
from metanas.data.images import ClassDataset, ImageFormat
from metanas.data.omniglot import load_omniglot, resolve_data_root
from metanas.data.sampler import (
    ConsecutiveLabels,
    KShots,
    LoadData,
    MixtureTaskDataset,
    NWays,
    RemapLabels,
    Task,
    TaskDataset,
    TaskSets,
    get_tasksets,
)
from metanas.data.shifts import SHIFTS, Shift, TaskShift
from metanas.data.splits import class_splits, load_dataset

__all__ = [
    "ClassDataset", "ImageFormat", "TaskFamily", "Task", "TaskDataset", "MixtureTaskDataset", "TaskSets",
    "NWays", "KShots", "LoadData", "RemapLabels", "ConsecutiveLabels",
    "load_family", "list_families", "get_tasksets", "resolve_data_root", "load_omniglot",
    "load_dataset", "class_splits", "check_trainable", "SHIFTS", "Shift", "TaskShift",
]
