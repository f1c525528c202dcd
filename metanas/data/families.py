"""Task families: the tasks/NAME.yaml files (./tasks first, else the built-in metanas/tasks) as :class:`TaskFamily`.

A family is one distribution of N-way K-shot tasks: a data set and its class split, ways/shots/queries, image
format, and optional shifts (metanas.data.shifts: applied to a finished task, support and query together, so
every image of a task comes from the same new domain). A family marked ``held_out: true`` (or one without
meta-train classes) is for evaluation only: `check_trainable` refuses it, and meta-training calls it before
sampling anything.

A *mixture* family (``dataset: mixture``) meta-trains over several families at once, Meta-Dataset style:
``sources`` lists families with weights, every task is drawn from one source (chosen with probability
proportional to its weight), never mixed; ``validation_sources`` lists families the mixture never trains on
whose validation split joins the validation tasks, so that validation measures transfer to a new domain and
not only to new classes. The mixture's ways/shots/queries (and episodes) apply to every source.

``episodes:`` says how a family's tasks are drawn: ``fixed`` (the default) is N-way K-shot with ``ways``,
``shots`` and ``queries``; ``meta-dataset`` (or a mapping of :class:`EpisodeRules` overrides) draws variable
episodes by Meta-Dataset's rules (metanas.data.episodes).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from metanas.data import datasets, fewshot, fonts, glyphs
from metanas.data.images import ImageFormat
from metanas.data.shifts import COLOUR_SHIFTS, Shift, parse_shifts
from metanas.core.errors import MetanasError
from metanas.core.resources import builtin_tasks_dir

OMNIGLOT_SPLITS = ("lake", "vinyals")
# standard: a benchmark's published split (metanas/data/splits); all: every class is a test class (evaluation
# only); custom: the `classes:` mapping names each split's classes
SPLITS = (*OMNIGLOT_SPLITS, "standard", "all", "custom", "sources")
DATASETS = (*datasets.READERS, "mixture")  # the image sources, and mixtures of families
# data sets rendered here, each with its own fixed split (split: standard): their class names per split
RENDERED_SPLITS = {"fonts": fonts.split_classes, "glyphs": glyphs.split_classes}
STANDARD_SPLITS = (*fewshot.BENCHMARKS, *RENDERED_SPLITS)  # data sets with a published/fixed split (split: standard)
SPLIT_NAMES = ("train", "validation", "test")
ROTATIONS = 4  # quarter turns: 0, 90, 180, 270 degrees
EPISODE_SAMPLERS = ("fixed", "meta-dataset")
HIERARCHIES = ("auto", "none", "alphabet")  # auto: Omniglot's alphabets when the ways are drawn, as Meta-Dataset


@dataclass(frozen=True)
class EpisodeRules:
    """Meta-Dataset's episode rules (Triantafillou et al., ICLR 2020): the fields of the reference's
    ``EpisodeDescriptionConfig`` (google-research/meta-dataset, ``meta_dataset/data/config.py``) with the defaults
    of ``learn/gin/setups/data_config_common.gin``. ``ways``, ``shots`` and ``queries`` are the reference's
    ``num_ways``, ``num_support`` and ``num_query``: None draws them by the rules; set, they fix them (the
    fixed-way-and-shot setup); ``shots`` may also be a range ``(lo, hi)`` drawn per episode, the same for every
    class. ``hierarchy``: ``alphabet`` draws an Omniglot alphabet first (the reference's bi-level ontology),
    ``none`` draws classes uniformly, ``auto`` is ``alphabet`` for Omniglot with drawn ways and ``none`` else."""

    ways: Optional[int] = None
    shots: Optional[int | tuple[int, int]] = None
    queries: Optional[int] = None
    min_ways: int = 5
    max_ways: int = 50  # max_ways_upper_bound
    max_queries: int = 10  # max_num_query
    max_support: int = 500  # max_support_set_size
    max_support_per_class: int = 100  # max_support_size_contrib_per_class
    min_log_weight: float = math.log(0.5)
    max_log_weight: float = math.log(2)
    hierarchy: str = "auto"
    ignore_hierarchy_probability: float = 0.0

    def __post_init__(self):
        where = "episodes"
        if self.hierarchy is None:
            object.__setattr__(self, "hierarchy", "none")
        if isinstance(self.shots, list):
            object.__setattr__(self, "shots", tuple(self.shots))
        for key in ("ways", "queries", "min_ways", "max_ways", "max_queries", "max_support", "max_support_per_class"):
            value = getattr(self, key)
            if not (value is None and key in ("ways", "queries")) and (type(value) is not int or value < 1):
                raise MetanasError(f"{where}.{key} must be an integer >= 1{' or null (drawn)' if key in ('ways', 'queries') else ''}, "
                                   f"got {value!r}")
        shots = self.shots
        if not (shots is None or (type(shots) is int and shots >= 1) or (isinstance(shots, tuple) and len(shots) == 2
                and all(type(v) is int for v in shots) and 1 <= shots[0] <= shots[1])):
            raise MetanasError(f"{where}.shots must be null (drawn), an integer >= 1 or a range [lo, hi] with "
                               f"1 <= lo <= hi, got {shots!r}")
        if self.min_ways > self.max_ways:
            raise MetanasError(f"{where}: min_ways {self.min_ways} is above max_ways {self.max_ways}; lower min_ways")
        if self.ways is None and self.max_support < self.max_ways:
            raise MetanasError(f"{where}: max_support {self.max_support} is below max_ways {self.max_ways}: an episode "
                               "needs at least one shot per class; raise max_support or lower max_ways")
        for key in ("min_log_weight", "max_log_weight", "ignore_hierarchy_probability"):
            if type(getattr(self, key)) not in (int, float):
                raise MetanasError(f"{where}.{key} must be a number, got {getattr(self, key)!r}")
        if self.min_log_weight > self.max_log_weight:
            raise MetanasError(f"{where}: min_log_weight is above max_log_weight; swap them")
        if not 0 <= self.ignore_hierarchy_probability <= 1:
            raise MetanasError(f"{where}.ignore_hierarchy_probability must be in [0, 1], got "
                               f"{self.ignore_hierarchy_probability!r}")
        if self.hierarchy not in HIERARCHIES:
            raise MetanasError(f"{where}.hierarchy: unknown {self.hierarchy!r}; use one of {', '.join(HIERARCHIES)}")
        if self.hierarchy == "alphabet" and self.ways is not None:
            # the reference: "use_bilevel_hierarchy" is incompatible with "num_ways"
            raise MetanasError(f"{where}: hierarchy alphabet draws the ways within an alphabet, so it cannot go with "
                               "fixed ways; drop episodes.ways or set hierarchy: none")

    @property
    def most_ways(self) -> int:
        """The most ways an episode can have: the size of a classifier head that fits every episode."""
        return self.ways or self.max_ways


def parse_episodes(spec, where: str) -> EpisodeRules | None:
    """``episodes:`` of a task YAML: ``fixed`` (None), ``meta-dataset`` (the reference's defaults), or a mapping
    ``{sampler: meta-dataset, KEY: VALUE, ...}`` of :class:`EpisodeRules` overrides."""
    if spec is None or spec == "fixed":
        return None
    if isinstance(spec, EpisodeRules):
        return spec
    if spec == "meta-dataset":
        return EpisodeRules()
    keys = [f.name for f in dataclasses.fields(EpisodeRules)]
    if not isinstance(spec, dict) or spec.get("sampler", "meta-dataset") != "meta-dataset":
        raise MetanasError(f"{where}: episodes must be one of {', '.join(EPISODE_SAMPLERS)} or a mapping "
                           f"{{sampler: meta-dataset, ...}} with keys among {', '.join(keys)}; got {spec!r}")
    unknown = sorted(set(spec) - set(keys) - {"sampler"}, key=str)
    if unknown:
        raise MetanasError(f"{where}: unknown episodes key {unknown[0]!r}; valid keys: sampler, {', '.join(keys)}")
    try:
        return EpisodeRules(**{k: v for k, v in spec.items() if k != "sampler"})
    except MetanasError as e:
        raise MetanasError(f"{where}: {e}") from None


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
    # dataset: mixture: ((family, weight), ...) meta-trained on, and families that only join validation
    sources: tuple = ()
    validation_sources: tuple = ()
    # fixed: N-way K-shot as above; meta-dataset (or EpisodeRules): variable episodes, and then ways/shots/queries
    # are read from the rules: the most ways (a head's size), the fixed or fewest shots, the fixed or most queries
    episodes: object = "fixed"

    def __post_init__(self):
        # Validated here so that YAML files and get_tasksets overrides (dataclasses.replace) share one check.
        rules = parse_episodes(self.episodes, f"task {self.name}")
        object.__setattr__(self, "episodes", rules or "fixed")
        if rules is not None:
            shots = rules.shots[0] if isinstance(rules.shots, tuple) else rules.shots or 1
            for key, value in (("ways", rules.most_ways), ("shots", shots), ("queries", rules.queries or rules.max_queries)):
                object.__setattr__(self, key, value)
        if self.dataset == "mixture" or self.sources or self.validation_sources:
            self._resolve_sources()
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
            default = {"omniglot": "lake", "mixture": "sources"}.get(self.dataset)
            object.__setattr__(self, "split", default or ("standard" if self.dataset in STANDARD_SPLITS else "all"))
        if (self.split == "sources") != (self.dataset == "mixture"):
            raise MetanasError(f"task {self.name}: split sources goes with dataset: mixture (its sources' splits)")
        for key, allowed in (("split", SPLITS), ("dataset", DATASETS)):
            if getattr(self, key) not in allowed:
                raise MetanasError(f"task {self.name}: unknown {key} {getattr(self, key)!r}; use one of {', '.join(allowed)}")
        if self.split in OMNIGLOT_SPLITS and self.dataset != "omniglot":
            raise MetanasError(f"task {self.name}: split {self.split} is an Omniglot split; for {self.dataset} use "
                               "split: all (evaluation only) or split: custom with classes:")
        if self.split == "standard" and self.dataset not in STANDARD_SPLITS:
            raise MetanasError(f"task {self.name}: split standard is the published split of "
                               f"{', '.join(STANDARD_SPLITS)}; for {self.dataset} use lake/vinyals (Omniglot), "
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

    def _resolve_sources(self):
        """Check a mixture's sources and take its image format from them (they must share channels and size)."""
        if self.dataset != "mixture":
            raise MetanasError(f"task {self.name}: sources: and validation_sources: go with dataset: mixture")
        if not isinstance(self.sources, (list, tuple)) or not self.sources:
            raise MetanasError(f"task {self.name}: dataset: mixture needs sources: a list of task families, each a "
                               "name or {family: NAME, weight: W}")
        for key in ("split", "classes", "root"):
            if getattr(self, key) not in (None, "sources"):
                raise MetanasError(f"task {self.name}: {key}: is set per source, not on the mixture; remove it")
        if self.shifts or self.rotations or self.invert:
            raise MetanasError(f"task {self.name}: shifts, rotations and invert are set per source, not on the "
                               "mixture; give them to a source family")
        pairs = []
        for entry in self.sources:
            spec = {"family": entry} if isinstance(entry, str) else entry
            if isinstance(spec, (list, tuple)) and len(spec) == 2:
                spec = dict(zip(("family", "weight"), spec))
            if not isinstance(spec, dict) or set(spec) - {"family", "weight"} or "family" not in spec:
                raise MetanasError(f"task {self.name}: a source is a family name or {{family: NAME, weight: W}}, "
                                   f"got {entry!r}")
            weight = spec.get("weight", 1.0)
            if type(weight) not in (int, float) or not weight > 0:
                raise MetanasError(f"task {self.name}: source {spec['family']}: weight must be a number > 0, "
                                   f"got {weight!r}")
            pairs.append((str(spec["family"]), float(weight)))
        if not isinstance(self.validation_sources, (list, tuple)):
            raise MetanasError(f"task {self.name}: validation_sources must be a list of family names")
        names = [n for n, _ in pairs]
        extra = tuple(str(n) for n in self.validation_sources)
        repeated = next((n for i, n in enumerate(names + list(extra)) if n in (names + list(extra))[:i]), None)
        if repeated:
            raise MetanasError(f"task {self.name}: family {repeated} is listed twice in sources/validation_sources; "
                               "a family is either trained on or only validated on")
        families = {}
        for n in names + list(extra):
            f = families[n] = load_family(n)
            if f.dataset == "mixture":
                raise MetanasError(f"task {self.name}: source {n} is itself a mixture; list its sources instead")
        for n in names:
            check_trainable(families[n])
        for n in extra:
            if families[n].split in ("all", "sources") or (families[n].split == "custom" and not families[n].classes[1]):
                raise MetanasError(f"task {self.name}: validation source {n} has no validation split; use a family "
                                   "with train/validation/test classes (e.g. fonts-5way or an Omniglot shift family)")
        first = families[names[0]]
        for n, f in families.items():
            if (f.channels, f.image_size) != (first.channels, first.image_size):
                raise MetanasError(f"task {self.name}: source {n} has {f.channels} channel(s) at {f.image_size} px "
                                   f"but {names[0]} has {first.channels} at {first.image_size}; sources must share "
                                   "the image format (set channels:/image_size: in the source families)")
        for key, value in (("image_size", first.image_size), ("channels", first.channels),
                           ("normalize", first.normalize)):
            if getattr(self, key) not in (None, value):
                raise MetanasError(f"task {self.name}: {key}: comes from the sources ({value}); remove it")
            object.__setattr__(self, key, value)
        object.__setattr__(self, "sources", tuple(pairs))
        object.__setattr__(self, "validation_sources", extra)
        object.__setattr__(self, "_families", families)

    @property
    def source_names(self) -> list[str]:
        """A mixture's sources, then its validation-only sources (empty for a single family)."""
        return [n for n, _ in self.sources] + list(self.validation_sources)

    def source_families(self, leave_out=()) -> tuple[list[tuple["TaskFamily", float]], list["TaskFamily"]]:
        """A mixture's (family, weight) sources and validation-only families, without the ``leave_out`` names
        (leave-one-domain-out); ways/shots/queries are the mixture's."""
        known = self.source_names
        for n in leave_out:
            if n not in known:
                close = difflib.get_close_matches(n, known, n=1)
                raise MetanasError(f"task.leave_out: {n} is not a source of {self.name}"
                                   f"{f' (did you mean {close[0]}?)' if close else ''}; its sources are "
                                   f"{', '.join(known)}")
        kept = [(n, w) for n, w in self.sources if n not in leave_out]
        if not kept:
            raise MetanasError(f"task.leave_out leaves {self.name} no source to meta-train on; keep at least one")
        like = lambda n: dataclasses.replace(self._families[n], ways=self.ways, shots=self.shots, queries=self.queries,
                                             episodes=self.episodes)
        return [(like(n), w) for n, w in kept], [like(n) for n in self.validation_sources if n not in leave_out]

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
        if self.dataset == "mixture":
            return self._families[self.sources[0][0]].image
        """How the family's images reach a network, before normalisation statistics: channels, size, and whether
        a file is inverted after decoding (Omniglot's black strokes on white become strokes high)."""
        return ImageFormat(self.channels, self.image_size, invert=(self.dataset == "omniglot") != self.invert)

    @property
    def split_sizes(self) -> str:
        """Classes per split, train/validation/test (before rotations), as listed by `metanas tasks`."""
        sizes = {"lake": (787, 177, 659), "vinyals": (1100, 100, 423)}.get(self.split)
        if self.split == "sources":
            return " ".join([f"{n}x{w:g}" for n, w in self.sources] + [f"val:{n}" for n in self.validation_sources])
        if self.dataset in RENDERED_SPLITS:
            sizes = tuple(len(names) for names in RENDERED_SPLITS[self.dataset]())
        elif self.split == "standard":
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
    given = sorted(k for k in ("ways", "shots", "queries") if k in spec)
    if given and spec.get("episodes", "fixed") != "fixed":
        raise MetanasError(f"{path}: {given[0]}: goes with episodes: fixed; with Meta-Dataset episodes set "
                           f"episodes: {{sampler: meta-dataset, {given[0]}: N}} (null: drawn by the rules)")
    if isinstance(spec.get("root"), str):  # relative to the YAML file, so a family and its data travel together
        spec["root"] = str((path.parent / Path(spec["root"]).expanduser()).resolve())
    try:
        return TaskFamily(name=path.stem, **spec)
    except MetanasError as e:
        raise MetanasError(f"{path}: {e}") from None

