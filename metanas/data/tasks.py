"""Task families (./tasks/*.yaml, else the built-in metanas/tasks/*.yaml) and a learn2learn-style task sampler.

A task is built by a pipeline of small transforms over a *task description*, a list of
(class_id, sample) pairs: NWays picks classes, KShots picks images per class, LoadData swaps
image indices for images, RemapLabels and ConsecutiveLabels turn class ids into labels 0..N-1
in class-major order. Every random choice draws from the torch.Generator passed to
`TaskDataset.sample`, so a seed fixes a task exactly, independent of the global RNG.

With rotations (Vinyals et al. 2016), each underlying class c becomes four classes: the class id
e = q * C + c means class c rotated by q quarter turns (C = classes in the underlying set).

A family may shift its tasks (metanas.data.shifts): the shift is applied to a finished task, support
and query together, so every image of a task comes from the same new domain. A family marked
``held_out: true`` (or one without meta-train classes) is for evaluation only: `check_trainable`
refuses it, and meta-training calls it before sampling anything.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import torch
import yaml

from metanas.data import datasets, fewshot
from metanas.data.images import ClassDataset, ImageFormat, channel_stats, to_channels
from metanas.data.omniglot import load_omniglot, resolve_data_root
from metanas.data.shifts import COLOUR_SHIFTS, Shift, TaskShift, parse_shifts
from metanas.errors import MetanasError
from metanas.resources import builtin_tasks_dir

OMNIGLOT_SPLITS = ("lake", "vinyals")
# standard: a benchmark's published split (metanas/data/splits); all: every class is a test class (evaluation
# only); custom: the `classes:` mapping names each split's classes
SPLITS = (*OMNIGLOT_SPLITS, "standard", "all", "custom")
DATASETS = ("omniglot", "digits", "imagefolder", *datasets.TORCHVISION, *fewshot.BENCHMARKS)
SPLIT_NAMES = ("train", "validation", "test")
ROTATIONS = 4  # quarter turns: 0, 90, 180, 270 degrees


@dataclass(frozen=True)
class TaskFamily:
    """A distribution of N-way K-shot tasks, as written in one tasks/NAME.yaml file."""

    name: str
    dataset: str = "omniglot"
    split: Optional[str] = None  # None: lake for omniglot, all for the other data sets
    ways: int = 5
    shots: int = 1
    queries: int = 15
    image_size: Optional[int] = None  # None: the data set's (28 for stroke data, 84 or 32 for the benchmarks)
    channels: Optional[int] = None  # 1 or 3; None: the data set's (grayscale stroke data 1, photographs 3)
    normalize: Optional[bool] = None  # per-channel mean/std of the meta-train split; None: for 3 channels
    rotations: bool = False
    description: str = ""
    shifts: tuple[Shift, ...] = ()  # per task: one entry drawn uniformly, or all in order with compose
    compose: bool = False
    held_out: bool = False  # evaluation only: meta-training refuses the family
    root: Optional[str] = None  # imagefolder (required) and torchvision sets; relative to the YAML file
    invert: bool = False  # 255 - image after loading: for dark strokes on a light background
    classes: Optional[tuple[tuple[str, ...], ...]] = None  # split: custom; (train, validation, test) names

    def __post_init__(self):
        # Validated here so that YAML files and get_tasksets overrides (dataclasses.replace) share one check.
        bench = fewshot.BENCHMARKS.get(self.dataset)
        if self.image_size is None:
            object.__setattr__(self, "image_size", bench.image_size if bench else 28)
        if self.channels is None:
            object.__setattr__(self, "channels", 3 if bench else 1)
        if self.normalize is None:
            object.__setattr__(self, "normalize", self.channels == 3)
        if self.channels not in (1, 3) or type(self.channels) is not int:
            raise MetanasError(f"task {self.name}: channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        for key in ("ways", "shots", "queries", "image_size"):
            value = getattr(self, key)
            if type(value) is not int or value < 1:
                raise MetanasError(f"task {self.name}: {key} must be an integer >= 1, got {value!r}")
        if self.split is None:
            object.__setattr__(self, "split", "lake" if self.dataset == "omniglot" else "standard" if bench else "all")
        for key, allowed in (("split", SPLITS), ("dataset", DATASETS)):
            if getattr(self, key) not in allowed:
                raise MetanasError(f"task {self.name}: unknown {key} {getattr(self, key)!r}; use one of {', '.join(allowed)}")
        if self.split in OMNIGLOT_SPLITS and self.dataset != "omniglot":
            raise MetanasError(f"task {self.name}: split {self.split} is an Omniglot split; for {self.dataset} use "
                               "split: all (evaluation only) or split: custom with classes:")
        if self.split == "standard" and not bench:
            raise MetanasError(f"task {self.name}: split standard is the published split of "
                               f"{', '.join(fewshot.BENCHMARKS)}; for {self.dataset} use lake/vinyals (Omniglot), "
                               "all or custom")
        for key in ("rotations", "compose", "held_out", "invert", "normalize"):
            if type(getattr(self, key)) is not bool:
                raise MetanasError(f"task {self.name}: {key} must be true or false, got {getattr(self, key)!r}")
        if not isinstance(self.description, str):
            raise MetanasError(f"task {self.name}: description must be a string, got {self.description!r}")
        object.__setattr__(self, "shifts", parse_shifts(self.shifts, f"task {self.name}"))
        colour = [s.name for s in self.shifts if s.name in COLOUR_SHIFTS]
        if colour and self.channels != 3:
            raise MetanasError(f"task {self.name}: shift {colour[0]} needs colour images but the family has "
                               f"channels: {self.channels}; set channels: 3 or drop the shift")
        if self.root is not None and not isinstance(self.root, (str, Path)):
            raise MetanasError(f"task {self.name}: root must be a path, got {self.root!r}")
        if self.dataset == "imagefolder" and self.root is None:
            raise MetanasError(f"task {self.name}: dataset imagefolder needs root: PATH (a folder of class sub-folders)")
        object.__setattr__(self, "classes", self._parse_classes())

    def _parse_classes(self):
        if (self.split == "custom") != (self.classes is not None):
            raise MetanasError(f"task {self.name}: split: custom goes with classes: {{train: [...], validation: [...], "
                               "test: [...]}} (and classes: only with split: custom)")
        if self.classes is None:
            return None
        spec = self.classes
        if isinstance(spec, tuple) and len(spec) == len(SPLIT_NAMES):
            spec = dict(zip(SPLIT_NAMES, spec))
        if not isinstance(spec, dict) or set(spec) - set(SPLIT_NAMES):
            raise MetanasError(f"task {self.name}: classes must map train/validation/test to lists of class names, "
                               f"got {self.classes!r}")
        lists = []
        for split in SPLIT_NAMES:
            names = spec.get(split) or []
            if not isinstance(names, (list, tuple)):
                raise MetanasError(f"task {self.name}: classes.{split} must be a list of class names, got {names!r}")
            lists.append(tuple(str(n) for n in names))
        seen: dict[str, str] = {}
        for split, names in zip(SPLIT_NAMES, lists):
            for n in names:
                if n in seen:
                    raise MetanasError(f"task {self.name}: class {n!r} is in classes.{seen[n]} and classes.{split}; "
                                       "splits must be disjoint")
                seen[n] = split
        return tuple(lists)

    @property
    def image(self) -> ImageFormat:
        """How the family's images reach a network, before normalisation statistics: channels, size, and whether
        a file is inverted after decoding (Omniglot's black strokes on white become strokes high)."""
        return ImageFormat(self.channels, self.image_size, invert=(self.dataset == "omniglot") != self.invert)

    @property
    def split_sizes(self) -> str:
        """Classes per split, train/validation/test (before rotations), as listed by `metanas tasks`."""
        sizes = {"lake": (787, 177, 659), "vinyals": (1100, 100, 423)}.get(self.split)
        if self.split == "standard":
            sizes = fewshot.BENCHMARKS[self.dataset].counts
        elif self.split == "custom":
            sizes = tuple(len(names) for names in self.classes)
        return "/".join(map(str, sizes)) if sizes else "test: all"

    @property
    def shift_str(self) -> str:
        """The shifts as listed by `metanas tasks`: a|b = one per task, a+b = composed, - = none."""
        return ("+" if self.compose else "|").join(map(str, self.shifts)) or "-"

    def untrainable_reason(self) -> str | None:
        """Why meta-training must not sample this family (None: it may)."""
        if self.held_out:
            return (f"task family {self.name} is held out (held_out: true): it is for evaluation only and is never "
                    "sampled during meta-training; meta-train on a training family (e.g. omniglot-5way-shift-train) "
                    f"and evaluate with metanas adapt --task {self.name}")
        if self.split == "all" or (self.split == "custom" and not (self.classes[0] and self.classes[1])):
            return (f"task family {self.name} ({self.dataset}, split: {self.split}) has no meta-train and validation "
                    f"classes: evaluate a warm start on it with metanas adapt --task {self.name}, or give it "
                    "split: custom with classes: {train: [...], validation: [...], test: [...]}")
        return None


def check_trainable(family: TaskFamily) -> None:
    """Raise unless meta-training may sample `family` (held-out and test-only families are refused)."""
    reason = family.untrainable_reason()
    if reason:
        raise MetanasError(reason)


def _task_dirs() -> list[Path]:
    # ./tasks first so a project can add or shadow families without touching the package; then the built-ins
    # shipped as package data (metanas/tasks), found wherever the package is installed.
    return [Path.cwd() / "tasks", builtin_tasks_dir()]


def _family_names() -> list[str]:
    return sorted({p.stem for d in _task_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def list_families() -> list[str]:
    """Names of all task families in ./tasks and the built-in metanas/tasks; a MetanasError if there are none."""
    names = _family_names()
    if not names:
        raise MetanasError(f"no task families found: neither {_task_dirs()[0]} nor the built-in {builtin_tasks_dir()} "
                           "holds a NAME.yaml; the installed package lacks its data files (reinstall metanas), or "
                           "add a family to ./tasks")
    return names


def load_family(name_or_path: str) -> TaskFamily:
    """A task family by name (tasks/NAME.yaml) or by path to a .yaml file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = next((d / f"{name_or_path}.yaml" for d in _task_dirs() if (d / f"{name_or_path}.yaml").is_file()), None)
        if path is None:
            known = _family_names()
            close = difflib.get_close_matches(name_or_path, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise MetanasError(f"unknown task family {name_or_path!r}; {hint}known families: {', '.join(known) or 'none'}")
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as e:
        raise MetanasError(f"cannot read task file {path}: {e.strerror}; check the path") from None
    except yaml.YAMLError as e:
        raise MetanasError(f"malformed YAML in {path}: {str(e).splitlines()[0]}; fix the file") from None
    keys = [f.name for f in dataclasses.fields(TaskFamily) if f.name != "name"]
    if not isinstance(spec, dict):
        raise MetanasError(f"{path} must be a mapping of task keys ({', '.join(keys)})")
    unknown = sorted(set(spec) - set(keys), key=str)
    if unknown:
        raise MetanasError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(keys)}")
    if isinstance(spec.get("root"), str):  # relative to the YAML file, so a family and its data travel together
        spec["root"] = str((path.parent / Path(spec["root"]).expanduser()).resolve())
    try:
        return TaskFamily(name=path.stem, **spec)
    except MetanasError as e:
        raise MetanasError(f"{path}: {e}") from None


class Task(NamedTuple):
    """One N-way K-shot task; x float32 [N*K, C, H, W] (in [0, 1], or normalised: see ImageFormat), y int64 in
    0..N-1, class-major.

    A batch of tasks has the same fields with a leading task dimension.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


class NWays:
    """Pick n distinct classes from the candidate class ids; yield (class_id, image index) for all their images."""

    def __init__(self, dataset: ClassDataset, n: int):
        self.n = n
        self._base_classes = dataset.num_classes
        self._indices = [ix.tolist() for ix in dataset.indices_per_class]

    def __call__(self, classes, generator):
        if self.n > len(classes):
            raise MetanasError(f"NWays asks for {self.n} ways but only {len(classes)} classes are available; lower the ways")
        chosen = [classes[j] for j in torch.randperm(len(classes), generator=generator)[: self.n].tolist()]
        return [(c, i) for c in chosen for i in self._indices[c % self._base_classes]]


class KShots:
    """Keep k images per class, drawn without replacement; classes stay in order of first appearance."""

    def __init__(self, dataset: ClassDataset, k: int):
        self.k = k  # the images to choose from come with the description, so the dataset is not needed

    def __call__(self, description, generator):
        by_class: dict[int, list] = {}
        for item in description:
            by_class.setdefault(item[0], []).append(item)
        out = []
        for c, items in by_class.items():
            if len(items) < self.k:
                raise MetanasError(f"KShots asks for {self.k} images of class {c} but it has only {len(items)}; lower shots + queries")
            out += [items[j] for j in torch.randperm(len(items), generator=generator)[: self.k].tolist()]
        return out


class LoadData:
    """Replace image indices by uint8 images [C, H, W], rotated by the class id's quarter turns."""

    def __init__(self, dataset: ClassDataset):
        self.dataset = dataset

    def __call__(self, description, generator):
        images, base = self.dataset.images, self.dataset.num_classes
        return [(c, torch.rot90(images[i], c // base, (-2, -1))) for c, i in description]


class RemapLabels:
    """Relabel classes 0..N-1 in order of first appearance, so labels follow NWays' random class order."""

    def __init__(self, dataset: ClassDataset):
        pass  # takes the dataset only so every transform is built the same way (learn2learn's convention)

    def __call__(self, description, generator):
        labels: dict[int, int] = {}
        return [(labels.setdefault(c, len(labels)), x) for c, x in description]


class ConsecutiveLabels:
    """Order items class-major (stable sort by label), so a task splits into [class, shot] blocks."""

    def __init__(self, dataset: ClassDataset):
        pass  # see RemapLabels

    def __call__(self, description, generator):
        return sorted(description, key=lambda item: item[0])


class TaskDataset:
    """Samples tasks from `dataset` through `task_transforms` (which must include NWays and end class-major)."""

    def __init__(self, dataset: ClassDataset, task_transforms: list, shots: int, queries: int,
                 rotations: bool = False, *, shift: TaskShift | None = None, name: str = "task",
                 image_format: ImageFormat | None = None):
        self.dataset, self.task_transforms = dataset, task_transforms
        self.shots, self.queries, self.rotations, self.shift = shots, queries, rotations, shift
        # what the network takes: the images' channels and size, normalised or not (shifts act before normalising)
        self.format = image_format or ImageFormat(dataset.channels, dataset.images.shape[-1])
        nways = [t for t in task_transforms if isinstance(t, NWays)]
        if len(nways) != 1:
            raise MetanasError(f"{name}: task_transforms need exactly one NWays transform, got {len(nways)}")
        self.ways = nways[0].n
        if self.ways > self.num_classes:
            raise MetanasError(f"{name} asks for {self.ways} ways but has only {self.num_classes} classes; lower task.ways")
        per_class = min(len(ix) for ix in dataset.indices_per_class)
        if shots + queries > per_class:
            raise MetanasError(f"{name} asks for {shots} shots + {queries} queries = {shots + queries} images per class "
                               f"but has only {per_class}; lower task.shots or task.queries")

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes * (ROTATIONS if self.rotations else 1)

    def sample(self, generator: torch.Generator) -> Task:
        description = range(self.num_classes)  # the candidate class ids, rotations included
        for transform in self.task_transforms:
            description = transform(description, generator)
        labels, images = zip(*description)
        n, k = self.ways, self.shots + self.queries
        y = torch.tensor(labels)
        if len(y) != n * k or not torch.equal(y.view(n, k), torch.arange(n)[:, None].expand(n, k)):
            raise MetanasError("task_transforms must yield labels 0..N-1 in class-major order with shots + queries "
                               "images each; end the pipeline with KShots, LoadData, RemapLabels, ConsecutiveLabels")
        x = (torch.stack(images).float() / 255).view(n, k, *images[0].shape)
        if self.shift is not None:  # one call for support and query: the whole task shares the domain
            x = self.shift(x.flatten(0, 1), generator).view_as(x)
        x = self.format.normalize(x)
        s = self.shots
        return Task(x[:, :s].flatten(0, 1), y.view(n, k)[:, :s].flatten(),
                    x[:, s:].flatten(0, 1), y.view(n, k)[:, s:].flatten())

    def sample_batch(self, n: int, generator: torch.Generator) -> Task:
        return Task(*(torch.stack(field) for field in zip(*(self.sample(generator) for _ in range(n)))))


class TaskSets(NamedTuple):
    """Task samplers per split; a split without classes (split: all, or a custom split left empty) is None."""

    train: TaskDataset | None
    validation: TaskDataset | None
    test: TaskDataset | None


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
    if family.split == "standard":  # the readers checked that every listed class is present
        return [[ids[n] for n in names] for names in fewshot.split_classes(family.dataset)]
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
    if dataset == "omniglot":
        return load_omniglot(Path(data_root), image_size, skip_corrupt)
    if dataset == "digits":
        return datasets.load_digits(image_size)
    if dataset == "imagefolder":
        return datasets.load_imagefolder(Path(root), image_size, skip_corrupt, channels)
    # the family's root, else the data root (--data-root / METANAS_DATA), else the user cache
    roots = [Path(r).expanduser() for r in (root, data_root) if r]
    if dataset in fewshot.BENCHMARKS:
        return fewshot.load(dataset, roots, image_size, skip_corrupt)
    return datasets.load_torchvision(dataset, image_size, roots)


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


def get_tasksets(family: TaskFamily, data_root: str | None = None,
                 ways: int | None = None, shots: int | None = None, queries: int | None = None,
                 skip_corrupt: bool = False, warm_format: ImageFormat | None = None) -> TaskSets:
    """Train/validation/test task samplers for `family`; ways/shots/queries, when given, override it.

    ``warm_format``: a warm start's :class:`ImageFormat` (its normalisation is used, so that tasks of another
    family look like its training data); else the family's own (:func:`image_format`).
    """
    overrides = {k: v for k, v in (("ways", ways), ("shots", shots), ("queries", queries)) if v is not None}
    family = dataclasses.replace(family, **overrides)  # re-runs TaskFamily's validation on the overrides
    data = load_dataset(family, data_root, skip_corrupt)
    shift = TaskShift(family.shifts, family.compose) if family.shifts else None
    splits = class_splits(family, data)
    if warm_format is not None:  # WarmStart.check_family refused a family of other channels
        fmt = dataclasses.replace(warm_format, size=family.image_size)
    else:
        fmt = image_format(family, data, splits[0] or splits[2])
    sets = []
    for split_name, class_ids in zip(TaskSets._fields, splits):
        if not class_ids:
            sets.append(None)
            continue
        ds = data.subset(class_ids)
        k = family.shots + family.queries
        transforms = [NWays(ds, family.ways), KShots(ds, k), LoadData(ds), RemapLabels(ds), ConsecutiveLabels(ds)]
        sets.append(TaskDataset(ds, transforms, family.shots, family.queries, family.rotations, shift=shift,
                                name=f"task {family.name} ({split_name} split)", image_format=fmt))
    return TaskSets(*sets)
