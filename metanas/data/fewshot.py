"""The few-shot benchmarks of the meta-learning literature, with the splits their papers use.

Each benchmark is read from the layouts researchers already have on disk, into a ClassDataset of RGB
images (uint8 [M, 3, H, W]) whose class names are those of the published split lists. The lists ship
inside the package (``metanas/data/splits/NAME/{train,val,test}.txt``; sources in ``splits/SOURCES.md``), so a
split never depends on a download. A reader checks that every listed class is on disk and names the file
and the problem when a layout is present but wrong. Folders of image files are decoded once and cached
(:func:`metanas.data.images.decode_classes`); pickles hold decoded images already and are read directly.
"""

from __future__ import annotations

import csv
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metanas.data.images import ClassDataset, decode_classes, image_files, resize, user_cache
from metanas.core.errors import MetanasError
from metanas.core.resources import package_file

SPLIT_FILES = ("train", "val", "test")
MINI_PICKLES = tuple(f"mini-imagenet-cache-{s}.pkl" for s in SPLIT_FILES)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    folders: tuple[str, ...]  # the data set's folder under a data root (first: the documented name)
    image_size: int  # as published (images are resized to the family's image_size)
    counts: tuple[int, int, int]  # classes per split (train, validation, test)
    layout: str  # the on-disk layouts read, for errors and the README
    source: str  # where to get it


BENCHMARKS = {b.name: b for b in (
    Benchmark("miniimagenet", "miniImageNet", ("miniimagenet", "mini-imagenet", "mini_imagenet"), 84, (64, 16, 20),
              "miniimagenet/mini-imagenet-cache-{train,val,test}.pkl (dicts with image_data [N, 84, 84, 3] uint8 and "
              "class_dict {wnid: [indices]}), or miniimagenet/images/*.jpg with miniimagenet/{train,val,test}.csv "
              "(filename,label; Ravi & Larochelle), or miniimagenet/{train,val,test}/WNID/*.jpg",
              "the Ravi & Larochelle split files with ImageNet images, or the pickle caches shared by "
              "learn2learn and MetaOptNet (github.com/learnables/learn2learn, mini-imagenet)"),
    Benchmark("cifar-fs", "CIFAR-FS", ("cifar-100-python",), 32, (64, 16, 20),
              "cifar-100-python/{train,test,meta} (torchvision's CIFAR-100 pickles; both parts are used, 600 "
              "images per class)",
              "python -c \"import torchvision; torchvision.datasets.CIFAR100('DIR', download=True)\" on a machine "
              "with internet"),
    Benchmark("tieredimagenet", "tieredImageNet", ("tieredimagenet", "tiered-imagenet", "tiered_imagenet"), 84,
              (351, 97, 160),
              "tieredimagenet/{train,val,test}/WNID/*.jpg (class folders; Ren et al. 2018)",
              "github.com/renmengye/few-shot-ssl-public (tieredImageNet), extracted to class folders"),
    Benchmark("cub", "CUB-200-2011", ("CUB_200_2011",), 84, (100, 50, 50),
              "CUB_200_2011/images/NNN.Class_Name/*.jpg (Chen et al. 2019 split)",
              "www.vision.caltech.edu/datasets/cub_200_2011 (CUB_200_2011.tgz)"),
)}


def split_lists(name: str) -> list[list[str]]:
    """The published split's lines (train, validation, test) of benchmark ``name``: one class per line, extra
    tab-separated columns (tieredImageNet's super-category) kept."""
    return [package_file("data", "splits", name, f"{s}.txt").read_text().split("\n")[:-1] for s in SPLIT_FILES]


def split_classes(name: str) -> list[list[str]]:
    """Class names of the published split (train, validation, test)."""
    return [[line.split("\t")[0] for line in lines] for lines in split_lists(name)]


def _missing(bench: Benchmark, roots: list[Path]) -> MetanasError:
    searched = ", ".join(str(r) for r in roots) or "no folder"
    return MetanasError(
        f"{bench.title} not found (searched {searched}): expected {bench.layout}; get it from {bench.source}, then "
        f"point root: in the task YAML, --data-root, data.root= or METANAS_DATA at the folder that contains "
        f"{bench.folders[0]}/")


def _find(bench: Benchmark, roots: list[Path], present) -> Path:
    """The first ``root/FOLDER`` (or a root that is itself the folder) for which ``present(folder)`` holds."""
    roots = [*roots, user_cache() / "data"]
    for root in roots:
        for folder in [*(root / f for f in bench.folders), root]:
            if folder.is_dir() and present(folder):
                return folder
    raise _missing(bench, roots)


def _check_classes(bench: Benchmark, found: set[str], where: Path) -> None:
    for split, names in zip(SPLIT_FILES, split_classes(bench.name)):
        absent = [n for n in names if n not in found]
        if absent:
            raise MetanasError(f"{where}: {len(absent)} class(es) of the {bench.title} {split} split are missing "
                               f"(e.g. {absent[0]}): the data set is incomplete or not the published one")


def _classes_in_split_order(bench: Benchmark) -> list[str]:
    return [n for names in split_classes(bench.name) for n in names]


def _from_class_folders(bench: Benchmark, where: Path, folders: dict[str, Path], size: int,
                        skip_corrupt: bool) -> ClassDataset:
    _check_classes(bench, set(folders), where)
    classes = []
    for name in _classes_in_split_order(bench):
        files = image_files(folders[name])
        if not files:
            raise MetanasError(f"{folders[name]}: no images (.jpg, .png): the {bench.title} copy is incomplete")
        classes.append((name, files))
    return decode_classes(bench.name, where, classes, size, channels=3, skip_corrupt=skip_corrupt, label=bench.title)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as e:
        raise MetanasError(f"{path}: cannot read the pickle ({type(e).__name__}: {str(e)[:100]}); the file is "
                           "truncated or not a pickle: download it again") from None


def _pickle_images(path: Path, data, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != len(shape) + 1 \
            or tuple(data.shape[1:]) != shape:
        got = f"{data.dtype} {tuple(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise MetanasError(f"{path}: images are {got}, expected uint8 [N, {', '.join(map(str, shape))}]")
    return data


def _mini_pickles(bench: Benchmark, where: Path, size: int) -> ClassDataset:
    images, class_images = [], {}
    for name in MINI_PICKLES:
        path = where / name
        blob = _unpickle(path)
        if not isinstance(blob, dict) or "image_data" not in blob or "class_dict" not in blob:
            keys = sorted(blob)[:5] if isinstance(blob, dict) else type(blob).__name__
            raise MetanasError(f"{path}: expected a dict with image_data [N, 84, 84, 3] and class_dict "
                               f"{{wnid: [indices]}}, got {keys}")
        data = _pickle_images(path, blob["image_data"], (84, 84, 3))
        offset = sum(len(a) for a in images)
        for wnid, idx in blob["class_dict"].items():
            class_images[wnid] = np.asarray(idx, dtype=np.int64) + offset
        images.append(data)
    _check_classes(bench, set(class_images), where)
    names = _classes_in_split_order(bench)
    order = np.concatenate([class_images[n] for n in names])
    labels = torch.cat([torch.full((len(class_images[n]),), c) for c, n in enumerate(names)])
    x = torch.from_numpy(np.concatenate(images)[order]).permute(0, 3, 1, 2).contiguous()
    return ClassDataset(resize(x, size), labels, names)


def _mini_csv(bench: Benchmark, where: Path, size: int, skip_corrupt: bool) -> ClassDataset:
    files: dict[str, list[Path]] = {}
    for split in SPLIT_FILES:
        path = where / f"{split}.csv"
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0][:2] != ["filename", "label"]:
            raise MetanasError(f"{path}: expected Ravi & Larochelle's header filename,label, got {rows[:1]}")
        for row in rows[1:]:
            files.setdefault(row[1], []).append(where / "images" / row[0])
    _check_classes(bench, set(files), where)
    names = _classes_in_split_order(bench)
    absent = next((p for n in names for p in files[n] if not p.is_file()), None)
    if absent is not None:
        raise MetanasError(f"{absent} is listed in {where}'s split CSVs but missing: the images/ folder is incomplete")
    return decode_classes(bench.name, where, [(n, files[n]) for n in names], size, channels=3,
                          skip_corrupt=skip_corrupt, label=bench.title)


def _split_folders(where: Path) -> dict[str, Path]:
    return {p.name: p for s in SPLIT_FILES if (where / s).is_dir() for p in (where / s).iterdir() if p.is_dir()}


def _load_miniimagenet(bench, roots, size, skip_corrupt):
    layouts = (lambda d: all((d / p).is_file() for p in MINI_PICKLES),
               lambda d: (d / "images").is_dir() and all((d / f"{s}.csv").is_file() for s in SPLIT_FILES),
               lambda d: all((d / s).is_dir() for s in SPLIT_FILES))
    where = _find(bench, roots, lambda d: any(present(d) for present in layouts))
    if layouts[0](where):
        return _mini_pickles(bench, where, size)
    if layouts[1](where):
        return _mini_csv(bench, where, size, skip_corrupt)
    return _from_class_folders(bench, where, _split_folders(where), size, skip_corrupt)


def _load_cifar_fs(bench, roots, size, skip_corrupt):
    where = _find(bench, roots, lambda d: all((d / f).is_file() for f in ("train", "test", "meta")))
    meta = _unpickle(where / "meta")
    if not isinstance(meta, dict) or "fine_label_names" not in meta:
        raise MetanasError(f"{where / 'meta'}: expected CIFAR-100's dict with fine_label_names")
    names = list(meta["fine_label_names"])
    images, labels = [], []
    for part in ("train", "test"):
        blob = _unpickle(where / part)
        if not isinstance(blob, dict) or "data" not in blob or "fine_labels" not in blob:
            raise MetanasError(f"{where / part}: expected CIFAR-100's dict with data [N, 3072] and fine_labels")
        images.append(_pickle_images(where / part, blob["data"], (3072,)).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(blob["fine_labels"], dtype=np.int64))
    _check_classes(bench, set(names), where)
    wanted = _classes_in_split_order(bench)  # relabel in split order, as the other benchmarks
    relabel = torch.tensor([wanted.index(n) for n in names])
    x, y = torch.from_numpy(np.concatenate(images)), relabel[torch.from_numpy(np.concatenate(labels))]
    order = torch.argsort(y, stable=True)
    return ClassDataset(resize(x[order], size), y[order], wanted)


def _load_tieredimagenet(bench, roots, size, skip_corrupt):
    where = _find(bench, roots, lambda d: all((d / s).is_dir() for s in SPLIT_FILES))
    return _from_class_folders(bench, where, _split_folders(where), size, skip_corrupt)


def _load_cub(bench, roots, size, skip_corrupt):
    where = _find(bench, roots, lambda d: (d / "images").is_dir())
    folders = {p.name: p for p in (where / "images").iterdir() if p.is_dir()}
    return _from_class_folders(bench, where, folders, size, skip_corrupt)


READERS = {"miniimagenet": _load_miniimagenet, "cifar-fs": _load_cifar_fs, "tieredimagenet": _load_tieredimagenet,
           "cub": _load_cub}


def load(name: str, roots: list[Path], image_size: int, skip_corrupt: bool = False) -> ClassDataset:
    """Benchmark ``name`` from the first of ``roots`` (then the user cache's data folder) that holds it: every
    class of the published split, in split order (train, validation, test), RGB at ``image_size``."""
    bench = BENCHMARKS[name]
    return READERS[name](bench, [Path(r) for r in roots], image_size, skip_corrupt)
