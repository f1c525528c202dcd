"""Data layer: images and their cache, Omniglot, the few-shot benchmarks, other image sources, task families,
shifts, few-shot task sampler."""

from metanas.data.images import ClassDataset, ImageFormat
from metanas.data.omniglot import load_omniglot, resolve_data_root
from metanas.data.tasks import (
    ConsecutiveLabels,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
    Task,
    TaskDataset,
    TaskFamily,
    TaskSets,
    check_trainable,
    class_splits,
    get_tasksets,
    list_families,
    load_dataset,
    load_family,
)
from metanas.data.shifts import SHIFTS, Shift, TaskShift

__all__ = [
    "ClassDataset", "ImageFormat", "TaskFamily", "Task", "TaskDataset", "TaskSets",
    "NWays", "KShots", "LoadData", "RemapLabels", "ConsecutiveLabels",
    "load_family", "list_families", "get_tasksets", "resolve_data_root", "load_omniglot",
    "load_dataset", "class_splits", "check_trainable", "SHIFTS", "Shift", "TaskShift",
]
