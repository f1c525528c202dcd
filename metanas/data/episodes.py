"""Meta-Dataset episodes (Triantafillou et al., ICLR 2020): variable ways, imbalanced shots, balanced queries.

The reference is google-research/meta-dataset, ``meta_dataset/data/sampling.py``: each function below carries
the name of the reference function it rewrites, in torch. Every draw comes from the ``torch.Generator`` passed
in (the reference's numpy ``RandomState``), never from a global RNG, so a seed fixes an episode exactly and a
resumed run draws the episodes it would have drawn. For an episode over C candidate classes with n_c images
each (the defaults are :class:`metanas.data.families.EpisodeRules`):

- ways N ~ U{min_ways .. min(max_ways, C)} (``sample_num_ways_uniformly``), then N classes drawn uniformly
  without replacement (``sample_class_ids_uniformly``). With a bi-level hierarchy (Omniglot's alphabets) a
  group first, uniformly among the groups (each must hold min_ways classes), then N ~ U{min_ways ..
  min(max_ways, its classes)} of its classes. With a DAG (ImageNet's nodes) a node uniformly among those that
  span min_ways .. 392 classes, and its classes (max_ways of them, drawn, when it spans more).
- queries per class q = min(max_queries, min_c floor(n_c / 2)), the same for every class (``compute_num_query``);
  with fixed shots k, min(max_queries, min_c n_c - k).
- the support size S = min(max_support, sum_c floor(beta * min(max_support_per_class, n_c - q)) + 1) with
  beta ~ U[0, 1) once per episode (``sample_support_set_size``): at least one shot per class.
- shots of class c = min(n_c - q, floor(p_c * (S - N)) + 1), p_c proportional to n_c * exp(u_c),
  u_c ~ U(min_log_weight, max_log_weight) (``sample_num_support_per_class``): about as imbalanced as the
  classes, at least one shot each, at most S in all.

Fixed ways, shots or queries (the fixed-way-and-shot setup) replace the corresponding draw; with all three fixed
and no hierarchy an episode is exactly the N-way K-shot task :class:`metanas.data.sampler.TaskDataset` draws
from the same seed.

Episodes of different sizes cannot be stacked into one tensor: :func:`bucket_tasks` groups a meta-batch into
buckets of equal shape, each stacked, for one ``vmap`` call per bucket. Not padding: the supernet's BatchNorm
keeps no running statistics (metanas/space/ops.py), so it normalises with the statistics of the batch it is
given, and zero images padded into a support or query set would change every real image's activations.
Buckets keep each episode's computation exactly what it is alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from metanas.core.errors import MetanasError
from metanas.data.families import ROTATIONS, EpisodeRules
from metanas.data.images import ClassDataset, ImageFormat
from metanas.data.sampler import LoadData, Task, _Batches
from metanas.data.shifts import TaskShift

# The reference's MAX_SPANNING_LEAVES_ELIGIBLE: a DAG node spanning more classes is never drawn (the least bound
# that still reaches every ImageNet leaf).
MAX_SPANNING_LEAVES_ELIGIBLE = 392
# data sets whose class names are Omniglot's half/alphabet/character (Lake's split and Meta-Dataset's)
ALPHABET_DATASETS = ("omniglot", "md-omniglot")


def sample_num_ways_uniformly(num_classes: int, min_ways: int, max_ways: int, generator: torch.Generator) -> int:
    """Ways uniform on [min_ways, min(max_ways, num_classes)] (reference: ``sample_num_ways_uniformly``)."""
    high = min(max_ways, num_classes)
    if high < min_ways:
        raise MetanasError(f"an episode needs at least {min_ways} ways but only {num_classes} classes are available; "
                           "lower episodes.min_ways")
    return int(torch.randint(min_ways, high + 1, (), generator=generator))


def sample_class_ids_uniformly(num_ways: int, classes: Sequence[int], generator: torch.Generator) -> list[int]:
    """``num_ways`` distinct classes drawn uniformly from ``classes``, in the order drawn (reference:
    ``sample_class_ids_uniformly``; the same draw as :class:`metanas.data.sampler.NWays`)."""
    if num_ways > len(classes):
        raise MetanasError(f"an episode asks for {num_ways} ways but only {len(classes)} classes are available; "
                           "lower the ways")
    return [classes[j] for j in torch.randperm(len(classes), generator=generator)[:num_ways].tolist()]


def compute_num_query(images_per_class: torch.Tensor, max_num_query: int,
                      num_support: int | tuple[int, int] | None) -> int:
    """Queries per class, the same for every class (reference: ``compute_num_query``): at most
    ``max_num_query``; with drawn shots at most half the smallest class (floor); with shots k (or a range up to
    k) at most the smallest class less k."""
    smallest = int(images_per_class.min())
    if num_support is None:
        if smallest < 2:
            raise MetanasError(f"an episode's class has {smallest} image(s); Meta-Dataset episodes need at least 2 "
                               "per class (one support, one query)")
        return min(max_num_query, smallest // 2)
    most = num_support if isinstance(num_support, int) else num_support[1]
    if smallest - most < 1:
        raise MetanasError(f"an episode's class has {smallest} image(s), too few for {most} shots and a query; "
                           "lower episodes.shots")
    return min(max_num_query, smallest - most)


def sample_support_set_size(num_remaining_per_class: torch.Tensor, max_support_size_contrib_per_class: int,
                            max_support_set_size: int, generator: torch.Generator) -> int:
    """The support set's size (reference: ``sample_support_set_size``): one beta ~ U[0, 1) per episode,
    ``min(max_support_set_size, sum_c floor(beta * min(max_support_size_contrib_per_class, remaining_c) + 1))``.
    The floor plus one is the ceiling of beta in (0, 1] times the contribution, so the size is at least the
    number of ways; the contribution cap bounds how much one large class adds to the size, not its shots."""
    if max_support_set_size < len(num_remaining_per_class):
        raise MetanasError(f"max_support {max_support_set_size} is below the episode's {len(num_remaining_per_class)} "
                           "ways: an episode needs one shot per class; raise episodes.max_support")
    beta = torch.rand((), generator=generator, dtype=torch.float64)
    contributions = num_remaining_per_class.clamp(max=max_support_size_contrib_per_class).double()
    return int(min(int(torch.floor(beta * contributions + 1).sum()), max_support_set_size))


def sample_num_support_per_class(images_per_class: torch.Tensor, num_remaining_per_class: torch.Tensor,
                                 support_set_size: int, min_log_weight: float, max_log_weight: float,
                                 generator: torch.Generator) -> torch.Tensor:
    """Shots per class (reference: ``sample_num_support_per_class``): one shot each, and the rest of the support
    size split in proportion to each class's images times exp(U(min_log_weight, max_log_weight)) (floored),
    each at most the class's images left after its queries. int64 [N]."""
    n = len(num_remaining_per_class)
    if support_set_size < n:
        raise MetanasError("a support set smaller than the number of ways was requested")
    if int(num_remaining_per_class.min()) < 1:
        raise MetanasError("a class of the episode has no image left for its support set after its queries")
    log_weight = min_log_weight + (max_log_weight - min_log_weight) * torch.rand(n, generator=generator,
                                                                                 dtype=torch.float64)
    unnormalized = images_per_class.double() * torch.exp(log_weight)
    proportions = unnormalized / unnormalized.sum()
    desired = torch.floor(proportions * (support_set_size - n)).long() + 1
    return torch.minimum(desired, num_remaining_per_class.long())


def omniglot_alphabets(dataset: ClassDataset) -> list[str]:
    """Each class's alphabet ("images_background/Latin"), from Omniglot's class names "half/alphabet/character"."""
    groups = [name.rsplit("/", 1)[0] for name in dataset.class_names]
    if any("/" not in name for name in dataset.class_names):
        raise MetanasError("hierarchy alphabet needs Omniglot's class names (half/alphabet/character); this data set "
                           "has others: set episodes.hierarchy: none")
    return groups


Hierarchy = Callable[[int], object] | Mapping[int, object] | Sequence


class MetaDatasetEpisodes:
    """A task transform, beside :class:`~metanas.data.sampler.NWays` and
    :class:`~metanas.data.sampler.KShots`: candidate class ids -> an episode description, a list of
    ``(class id, shots, queries)`` in the order the classes were drawn (reference:
    ``EpisodeDescriptionSampler.sample_episode_description``).

    ``hierarchy``: a bi-level ontology, class id -> group (a sequence or mapping indexed by class id, or a
    callable): an episode draws a group first (reference: ``use_bilevel_hierarchy``, Omniglot's alphabets).
    ``nodes``: a DAG's internal nodes, each the list of class ids it spans (reference: ``use_dag_hierarchy``,
    ImageNet). With ``rotations`` (class id e = quarter turns * C + base class), a rotated class is its base
    class's images and belongs to the group (base group, quarter turns).
    """

    def __init__(self, dataset: ClassDataset, rules: EpisodeRules | None = None, *, hierarchy: Hierarchy | None = None,
                 nodes: Sequence[Sequence[int]] | None = None, rotations: bool = False):
        self.rules = rules = rules or EpisodeRules()
        self._base = dataset.num_classes
        self.num_classes = self._base * (ROTATIONS if rotations else 1)
        self._sizes = torch.tensor([len(ix) for ix in dataset.indices_per_class], dtype=torch.long)
        if hierarchy is not None and nodes is not None:
            raise MetanasError("an episode sampler takes a bi-level hierarchy or DAG nodes, not both")
        if (hierarchy is not None or nodes is not None) and rules.ways is not None:
            raise MetanasError("a class hierarchy draws the ways, so it cannot go with fixed ways (the reference: "
                               "incompatible with num_ways); drop the ways or the hierarchy")
        self._groups: list[list[int]] | None = None
        self._nodes: list[list[int]] | None = None
        if hierarchy is not None:
            group_of = hierarchy if callable(hierarchy) else hierarchy.__getitem__
            by_group: dict = {}
            for e in range(self.num_classes):
                key = group_of(e % self._base)
                by_group.setdefault((key, e // self._base) if rotations else key, []).append(e)
            small = [(g, len(c)) for g, c in by_group.items() if len(c) < rules.min_ways]
            if small:
                raise MetanasError(f"group {small[0][0]} has {small[0][1]} classes, fewer than min_ways "
                                   f"{rules.min_ways}: every group of the hierarchy must hold min_ways classes")
            self._groups = list(by_group.values())
        elif nodes is not None:
            self._nodes = [list(n) for n in nodes if rules.min_ways <= len(n) <= MAX_SPANNING_LEAVES_ELIGIBLE]
            if not self._nodes:
                raise MetanasError(f"no node of the DAG spans {rules.min_ways} to {MAX_SPANNING_LEAVES_ELIGIBLE} classes; "
                                   "lower episodes.min_ways")
        self._check()

    def _check(self) -> None:
        r, n = self.rules, self.num_classes
        ways = r.ways or r.min_ways
        if ways > n:
            raise MetanasError(f"episodes need at least {ways} ways but only {n} classes are available; lower "
                               f"episodes.{'ways' if r.ways else 'min_ways'}")
        k = r.shots[1] if isinstance(r.shots, tuple) else r.shots
        need = (k or 1) + (r.queries or 1)
        smallest = int(self._sizes.min())
        if smallest < need:
            raise MetanasError(f"a class has only {smallest} image(s) but an episode needs {need} per class "
                               f"({k or 'at least 1'} shots + {r.queries or 'at least 1'} queries); lower "
                               "episodes.shots or episodes.queries")

    def images_per_class(self, class_ids: Sequence[int]) -> torch.Tensor:
        return self._sizes[torch.tensor([c % self._base for c in class_ids], dtype=torch.long)]

    def sample_class_ids(self, classes: Sequence[int], generator: torch.Generator) -> list[int]:
        """The episode's classes (reference: ``EpisodeDescriptionSampler.sample_class_ids``)."""
        r = self.rules
        if self._groups is not None or self._nodes is not None:
            # the reference draws whether to use the hierarchy on every episode, also when it always does
            use = float(torch.rand((), generator=generator, dtype=torch.float64)) >= r.ignore_hierarchy_probability
            if use and self._nodes is not None:
                node = self._nodes[int(torch.randint(len(self._nodes), (), generator=generator))]
                return sample_class_ids_uniformly(r.max_ways, node, generator) if len(node) > r.max_ways else node
            if use:
                group = self._groups[int(torch.randint(len(self._groups), (), generator=generator))]
                ways = sample_num_ways_uniformly(len(group), r.min_ways, r.max_ways, generator)
                return sample_class_ids_uniformly(ways, group, generator)
        ways = r.ways if r.ways is not None else sample_num_ways_uniformly(len(classes), r.min_ways, r.max_ways,
                                                                           generator)
        return sample_class_ids_uniformly(ways, classes, generator)

    def __call__(self, classes: Sequence[int], generator: torch.Generator) -> list[tuple[int, int, int]]:
        r = self.rules
        class_ids = self.sample_class_ids(list(classes), generator)
        sizes = self.images_per_class(class_ids)
        queries = r.queries if r.queries is not None else compute_num_query(sizes, r.max_queries, r.shots)
        if r.shots is None:
            remaining = sizes - queries
            total = sample_support_set_size(remaining, r.max_support_per_class, r.max_support, generator)
            shots = sample_num_support_per_class(sizes, remaining, total, r.min_log_weight, r.max_log_weight,
                                                 generator).tolist()
        else:
            k = r.shots if isinstance(r.shots, int) else int(torch.randint(r.shots[0], r.shots[1] + 1, (),
                                                                           generator=generator))
            if int(sizes.min()) < k + queries:
                raise MetanasError(f"a class of the episode has {int(sizes.min())} images, fewer than {k} shots + "
                                   f"{queries} queries; lower episodes.shots or episodes.queries")
            shots = [k] * len(class_ids)
        return [(c, s, queries) for c, s in zip(class_ids, shots)]


class EpisodeDataset(_Batches):
    """Samples Meta-Dataset episodes from ``dataset`` through ``episodes``; a sibling of
    :class:`~metanas.data.sampler.TaskDataset` with the same ``sample(generator) -> Task``: support and query
    class-major, labels 0..N-1 in the order the classes were drawn, class i with its own shots.

    ``ways`` is the most ways an episode can have (a classifier head that fits every episode); ``shots`` and
    ``queries`` are the fixed values, or None where the rules draw them. ``sample_batch`` stacks only
    episodes of one shape (fixed ways, shots and queries); otherwise sample one by one and batch them with
    :func:`bucket_tasks`.
    """

    def __init__(self, dataset: ClassDataset, episodes: MetaDatasetEpisodes, rotations: bool = False, *,
                 shift: TaskShift | None = None, name: str = "episodes", image_format: ImageFormat | None = None):
        self.dataset, self.episodes, self.rotations, self.shift, self.name = dataset, episodes, rotations, shift, name
        self.format = image_format or ImageFormat(dataset.channels, dataset.images.shape[-1])
        if episodes.num_classes != self.num_classes:
            raise MetanasError(f"{name}: the episode sampler was built for {episodes.num_classes} classes but the "
                               f"data set has {self.num_classes} (rotations: {rotations}); build both alike")
        rules = episodes.rules
        self.ways = rules.most_ways
        self.shots = rules.shots if isinstance(rules.shots, int) else None
        self.queries = rules.queries
        self._load = LoadData(dataset)
        self._indices = [ix.tolist() for ix in dataset.indices_per_class]

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes * (ROTATIONS if self.rotations else 1)

    def sample(self, generator: torch.Generator) -> Task:
        description = self.episodes(range(self.num_classes), generator)
        items, shots, queries = [], [], []
        for c, s, q in description:  # per class: its support images, then its queries (TaskDataset's order)
            ix = self._indices[c % self.dataset.num_classes]
            items += [(c, ix[j]) for j in torch.randperm(len(ix), generator=generator)[: s + q].tolist()]
            shots.append(s)
            queries.append(q)
        x = torch.stack([image for _, image in self._load(items, generator)]).float() / 255
        if self.shift is not None:  # one call for support and query: the whole episode shares the domain
            x = self.shift(x, generator)
        x = self.format.normalize(x)
        labels = torch.arange(len(description))
        is_query = torch.cat([torch.arange(s + q) >= s for s, q in zip(shots, queries)])
        return Task(x[~is_query], labels.repeat_interleave(torch.tensor(shots)),
                    x[is_query], labels.repeat_interleave(torch.tensor(queries)))


def task_shape(task: Task) -> tuple:
    """What must match for tasks to stack: ways, support and query sizes, the image shape."""
    ways = int(task.query_y.max() if len(task.query_y) else task.support_y.max()) + 1
    return ways, len(task.support_y), len(task.query_y), tuple(task.support_x.shape[1:])


def bucket_tasks(tasks: Sequence[Task]) -> list[tuple[list[int], Task]]:
    """Tasks grouped by :func:`task_shape`, each group stacked into one batched Task (a leading task dimension):
    ``[(indices into tasks, batched Task)]``, the groups in order of first appearance and the tasks of a group
    in their order. A group is one ``vmap`` call; its tasks share the ways and the support and query sizes,
    while their shots per class may differ (the labels are data under vmap). No padding: see the module doc."""
    groups: dict[tuple, list[int]] = {}
    for i, task in enumerate(tasks):
        groups.setdefault(task_shape(task), []).append(i)
    return [(ix, Task(*(torch.stack([tasks[i][f] for i in ix]) for f in range(len(Task._fields)))))
            for ix in groups.values()]


def varies(taskset) -> bool:
    """Whether ``taskset``'s tasks differ in shape (ways, shots or queries drawn per episode, in it or in a source of
    its mixture), so that a meta-batch of them batches in groups (:func:`sample_groups`), not in one stack."""
    return any(isinstance(s, EpisodeDataset) and None in (s.episodes.rules.ways, s.shots, s.queries)
               for s in getattr(taskset, "sources", [taskset]))


def sample_groups(taskset, n: int, generator: torch.Generator, rows: slice = slice(None)) -> list[tuple[int, Task]]:
    """Tasks ``rows`` of ``n`` drawn in order from ``taskset``, grouped by shape: ``[(ways, batched Task)]``."""
    tasks = [taskset.sample(generator) for _ in range(n)][rows]
    return [(task_shape(tasks[ix[0]])[0], batch) for ix, batch in bucket_tasks(tasks)]


def family_hierarchy(rules: EpisodeRules, dataset_name: str, dataset: ClassDataset) -> list[str] | None:
    """The class -> group list of a family's ``episodes.hierarchy`` (auto: Omniglot's alphabets when the ways
    are drawn, as Meta-Dataset does, for either Omniglot reader; none otherwise)."""
    wanted = rules.hierarchy
    if wanted == "auto":
        wanted = "alphabet" if dataset_name in ALPHABET_DATASETS and rules.ways is None else "none"
    if wanted == "none":
        return None
    if dataset_name not in ALPHABET_DATASETS:
        raise MetanasError(f"episodes.hierarchy alphabet is Omniglot's; {dataset_name} has no alphabets: set "
                           "episodes.hierarchy: none (or auto)")
    return omniglot_alphabets(dataset)
