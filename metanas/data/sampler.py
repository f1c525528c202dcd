"""The few-shot task sampler (learn2learn's vocabulary): a task is built by a pipeline of small transforms over a
*task description*, a list of (class_id, sample) pairs: NWays picks classes, KShots picks images per class,
LoadData swaps image indices for images, RemapLabels and ConsecutiveLabels turn class ids into labels 0..N-1
in class-major order. Every random choice draws from the torch.Generator passed to `TaskDataset.sample`, so a
seed fixes a task exactly, independent of the global RNG.

With rotations (Vinyals et al. 2016), each underlying class c becomes four classes: the class id
e = q * C + c means class c rotated by q quarter turns (C = classes in the underlying set).

A mixture family's tasks come from :class:`MixtureTaskDataset`: the source is drawn first, from the same
generator, then the whole task from that source alone.

A family with ``episodes: meta-dataset`` gets :class:`metanas.data.episodes.EpisodeDataset` splits instead:
variable Meta-Dataset episodes, drawn from the same generator.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import torch

from metanas.data.families import ROTATIONS, TaskFamily
from metanas.data.images import ClassDataset, ImageFormat
from metanas.data.shifts import TaskShift
from metanas.data.splits import class_splits, image_format, load_dataset
from metanas.core.errors import MetanasError


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


class _Batches:
    """``sample_batch``: n tasks stacked, with a leading task dimension."""

    def sample_batch(self, n: int, generator: torch.Generator) -> Task:
        tasks = [self.sample(generator) for _ in range(n)]
        shapes = {tuple(tuple(f.shape) for f in t) for t in tasks}
        if len(shapes) > 1:
            raise MetanasError(f"{self.name} draws episodes of different sizes, which do not stack into one batch; "
                               "sample them one by one and batch them with metanas.data.episodes.bucket_tasks")
        return Task(*(torch.stack(field) for field in zip(*tasks)))


class TaskDataset(_Batches):
    """Samples tasks from `dataset` through `task_transforms` (which must include NWays and end class-major)."""

    def __init__(self, dataset: ClassDataset, task_transforms: list, shots: int, queries: int,
                 rotations: bool = False, *, shift: TaskShift | None = None, name: str = "task",
                 image_format: ImageFormat | None = None):
        self.dataset, self.task_transforms, self.name = dataset, task_transforms, name
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


class MixtureTaskDataset(_Batches):
    """Tasks from several task datasets of one format: each task comes whole from one source, drawn with
    probability proportional to its weight from the task generator (a seed fixes sources and tasks)."""

    def __init__(self, sources: Sequence[TaskDataset], weights: Sequence[float], names: Sequence[str]):
        if not sources or len(sources) != len(weights) or len(sources) != len(names):
            raise MetanasError("a task mixture needs one weight and one name per source")
        first = sources[0]
        for s in sources:
            if (s.ways, s.shots, s.queries, s.format) != (first.ways, first.shots, first.queries, first.format):
                raise MetanasError(f"{s.name} differs from {first.name} in ways/shots/queries or image format; the "
                                   "sources of a mixture must share them")
        self.sources, self.names = list(sources), list(names)
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.ways, self.shots, self.queries, self.format = first.ways, first.shots, first.queries, first.format
        self.name = "+".join(self.names)

    @property
    def num_classes(self) -> int:
        return sum(s.num_classes for s in self.sources)

    @property
    def probabilities(self) -> list[float]:
        return (self.weights / self.weights.sum()).tolist()

    def sample_source(self, generator: torch.Generator) -> tuple[int, Task]:
        """(index of the source, a task drawn from that source only)."""
        i = int(torch.multinomial(self.weights, 1, generator=generator)) if len(self.sources) > 1 else 0
        return i, self.sources[i].sample(generator)

    def sample(self, generator: torch.Generator) -> Task:
        return self.sample_source(generator)[1]


class TaskSets(NamedTuple):
    """Task samplers per split; a split without classes (split: all, or a custom split left empty) is None."""

    train: TaskDataset | MixtureTaskDataset | None
    validation: TaskDataset | MixtureTaskDataset | None
    test: TaskDataset | MixtureTaskDataset | None


def get_tasksets(family: TaskFamily, data_root: str | None = None,
                 ways: int | None = None, shots: int | None = None, queries: int | None = None,
                 skip_corrupt: bool = False, warm_format: ImageFormat | None = None, leave_out: Sequence[str] = ()
                 ) -> TaskSets:
    """Train/validation/test task samplers for `family`; ways/shots/queries, when given, override it.

    A mixture family gives mixtures of its sources' splits (see :func:`_mixture_sets`); ``leave_out`` names
    sources to drop (leave-one-domain-out).
    ``warm_format``: a warm start's :class:`ImageFormat` (its normalisation is used, so that tasks of another
    family look like its training data); else the family's own (:func:`image_format`).
    """
    overrides = {k: v for k, v in (("ways", ways), ("shots", shots), ("queries", queries)) if v is not None}
    if family.episodes != "fixed":  # Meta-Dataset episodes: an override fixes what the rules would draw
        overrides = {"episodes": dataclasses.replace(family.episodes, **overrides)} if overrides else {}
    family = dataclasses.replace(family, **overrides)  # re-runs TaskFamily's validation on the overrides
    if family.dataset == "mixture":
        return _mixture_sets(family, data_root, skip_corrupt, warm_format, leave_out)
    if leave_out:
        raise MetanasError(f"task.leave_out is for mixture families; {family.name} is a single family ({family.dataset})")
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
        name = f"task {family.name} ({split_name} split)"
        if family.episodes != "fixed":
            sets.append(_episode_set(family, ds, shift, name, fmt))
            continue
        k = family.shots + family.queries
        transforms = [NWays(ds, family.ways), KShots(ds, k), LoadData(ds), RemapLabels(ds), ConsecutiveLabels(ds)]
        sets.append(TaskDataset(ds, transforms, family.shots, family.queries, family.rotations, shift=shift,
                                name=name, image_format=fmt))
    return TaskSets(*sets)


def _episode_set(family: TaskFamily, ds: ClassDataset, shift, name: str, fmt: ImageFormat):
    """A split's Meta-Dataset episodes (metanas.data.episodes imports this module, hence the late import)."""
    from metanas.data.episodes import EpisodeDataset, MetaDatasetEpisodes, family_hierarchy

    try:
        episodes = MetaDatasetEpisodes(ds, family.episodes, hierarchy=family_hierarchy(family.episodes, family.dataset, ds),
                                       rotations=family.rotations)
    except MetanasError as e:
        raise MetanasError(f"{name}: {e}") from None
    return EpisodeDataset(ds, episodes, family.rotations, shift=shift, name=name, image_format=fmt)


def _mixture_sets(family: TaskFamily, data_root, skip_corrupt, warm_format, leave_out) -> TaskSets:
    """Train and test: the sources' splits, weighted as listed. Validation: with validation-only sources, every
    domain's validation split, equally weighted, the sources' (new classes) and the validation-only sources' (new
    domains): a choice made on it (``inner.select_*``) must pay on the domains trained on and transfer to new ones,
    not fit one domain. Without: the sources' validation splits, weighted as listed. Every source takes the first
    source's image format (its normalisation, or the warm start's)."""
    sources, validation_only = family.source_families(leave_out)
    first = get_tasksets(sources[0][0], data_root, skip_corrupt=skip_corrupt, warm_format=warm_format)
    fmt = (first.train or first.test).format
    sets = [first] + [get_tasksets(f, data_root, skip_corrupt=skip_corrupt, warm_format=fmt) for f, _ in sources[1:]]
    names, weights = [f.name for f, _ in sources], [w for _, w in sources]

    def mix(split: str, sets, names, weights):
        kept = [(getattr(s, split), w, n) for s, n, w in zip(sets, names, weights) if getattr(s, split) is not None]
        return MixtureTaskDataset(*zip(*kept)) if kept else None

    if validation_only:
        held = [get_tasksets(f, data_root, skip_corrupt=skip_corrupt, warm_format=fmt) for f in validation_only]
        domains = sets + held
        validation = mix("validation", domains, names + [f.name for f in validation_only], [1.0] * len(domains))
    else:
        validation = mix("validation", sets, names, weights)
    return TaskSets(mix("train", sets, names, weights), validation, mix("test", sets, names, weights))
