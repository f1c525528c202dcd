"""Data layer: Omniglot reader and cache, task families, few-shot task sampler."""

from metanas.data.omniglot import ClassDataset, load_omniglot, resolve_data_root
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
    get_tasksets,
    list_families,
    load_family,
)

__all__ = [
    "ClassDataset", "TaskFamily", "Task", "TaskDataset", "TaskSets",
    "NWays", "KShots", "LoadData", "RemapLabels", "ConsecutiveLabels",
    "load_family", "list_families", "get_tasksets", "resolve_data_root", "load_omniglot",
]
