"""The sources of the cross-domain few-shot benchmarks, read from the files their users download.

- Meta-Dataset (Triantafillou et al., ICLR 2020): ILSVRC-2012, Omniglot, FGVC-Aircraft, CUB-200-2011, DTD,
  QuickDraw, Fungi, VGG Flower, Traffic Signs (GTSRB) and MSCOCO, each with the class split of
  google-research/meta-dataset (its ``dataset_conversion/splits/*.json``, ILSVRC's from the WordNet graph of its
  dataset spec, Omniglot's by alphabet), read as its converter ``dataset_to_records.py`` reads them: Aircraft
  cropped to its bounding boxes, MSCOCO's objects cropped from the annotation boxes enlarged 1.2 times, Omniglot
  inverted, ILSVRC without the images that are also in Caltech or CUB.
- BSCD-FSL (Guo et al., ECCV 2020): CropDisease, EuroSAT, ISIC 2018 and ChestX, test-only, read as
  IBM/cdfsl-benchmark's ``datasets/*_few_shot.py`` read them (ISIC's one-hot ground-truth CSV, ChestX's
  single-finding rows of ``Data_Entry_2017.csv``).

Every class list ships in ``metanas/data/splits/NAME/`` (provenance in ``splits/SOURCES.md``), so a split never
depends on a download. The images are decoded once into a memory-mapped cache
(:func:`metanas.data.images.decode_memmap`): ILSVRC at 84 px is 27 GB, so no part of the library holds a whole
source in memory. A missing source is one line naming the folder and layout expected; a missing or corrupt file
is named by its path.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metanas.core.errors import MetanasError, describe
from metanas.core.resources import package_file
from metanas.data import fewshot
from metanas.data.fewshot import Benchmark, split_classes
from metanas.data.images import (CHUNK, ClassDataset, decode_memmap, image_files, read_memmap, resize, source_key,
                                 to_channels, write_memmap)

SUITES = {"meta-dataset": "Meta-Dataset", "bscd": "BSCD-FSL"}


@dataclass(frozen=True)
class Source(Benchmark):
    suite: str  # meta-dataset | bscd
    role: str  # the source's role in its benchmark, as the paper has it
    licence: str


MD_TRAIN = "train+test (v1); test only in v2"
SOURCES = {s.name: s for s in (
    Source("md-ilsvrc", "ILSVRC-2012 (Meta-Dataset)", ("ILSVRC2012_img_train", "ilsvrc_2012", "imagenet"), 84,
           (712, 158, 130), "ILSVRC2012_img_train/WNID/*.JPEG (the 1,000 class folders of the training set)",
           "image-net.org (ILSVRC2012_img_train.tar, each class tar extracted to its folder)",
           "meta-dataset", "train+test (v1); the only training source in v2 (all 1,000 classes)",
           "ImageNet terms of access (non-commercial research)"),
    Source("md-omniglot", "Omniglot (Meta-Dataset)", ("omniglot-py",), 84, (883, 81, 659),
           "omniglot-py/images_{background,evaluation}/ALPHABET/CHARACTER/*.png",
           "github.com/brendenlake/omniglot (images_background.zip, images_evaluation.zip)",
           "meta-dataset", MD_TRAIN, "MIT"),
    Source("md-aircraft", "FGVC-Aircraft (Meta-Dataset)", ("fgvc-aircraft-2013b",), 84, (70, 15, 15),
           "fgvc-aircraft-2013b/data/{images_variant_trainval.txt,images_variant_test.txt,images_box.txt,"
           "images/*.jpg}", "www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft (fgvc-aircraft-2013b.tar.gz)",
           "meta-dataset", MD_TRAIN, "images for non-commercial research only"),
    Source("md-cub", "CUB-200-2011 (Meta-Dataset)", ("CUB_200_2011",), 84, (140, 30, 30),
           "CUB_200_2011/{images.txt,image_class_labels.txt,classes.txt,images/NNN.Class/*.jpg}",
           "www.vision.caltech.edu/datasets/cub_200_2011 (CUB_200_2011.tgz)",
           "meta-dataset", MD_TRAIN, "images from Flickr, for non-commercial research"),
    Source("md-dtd", "DTD (Meta-Dataset)", ("dtd",), 84, (33, 7, 7), "dtd/images/CLASS/*.jpg",
           "www.robots.ox.ac.uk/~vgg/data/dtd (dtd-r1.0.1.tar.gz)", "meta-dataset", MD_TRAIN,
           "research use only"),
    Source("md-quickdraw", "QuickDraw (Meta-Dataset)", ("quickdraw",), 84, (241, 52, 52),
           "quickdraw/CLASS.npy (numpy bitmaps: uint8 [N, 784], 28x28 per row)",
           "storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/*.npy (gsutil -m cp ...)",
           "meta-dataset", MD_TRAIN, "CC BY 4.0"),
    Source("md-fungi", "Fungi (Meta-Dataset)", ("fungi",), 84, (994, 200, 200),
           "fungi/{train.json,val.json,images/CLASS/*.JPG} (COCO-style annotations of the FGVCx 2018 challenge)",
           "github.com/visipedia/fgvcx_fungi_comp (train_val_annotations.tgz, fungi_train_val.tgz)",
           "meta-dataset", MD_TRAIN, "images of the Danish Svampeatlas, for the FGVCx competition and research"),
    Source("md-vggflower", "VGG Flower (Meta-Dataset)", ("vgg_flower", "102flowers"), 84, (71, 15, 16),
           "vgg_flower/{imagelabels.mat,jpg/image_NNNNN.jpg}",
           "www.robots.ox.ac.uk/~vgg/data/flowers/102 (102flowers.tgz, imagelabels.mat)",
           "meta-dataset", "train+test (v1); dropped in v2", "research use (no licence stated)"),
    Source("md-trafficsign", "Traffic Signs (GTSRB, Meta-Dataset)", ("GTSRB",), 84, (0, 0, 43),
           "GTSRB/Final_Training/Images/000NN/{*.ppm,GT-000NN.csv}",
           "benchmark.ini.rub.de (GTSRB_Final_Training_Images.zip)", "meta-dataset", "test only",
           "research use (no licence stated)"),
    Source("md-mscoco", "MSCOCO (Meta-Dataset)", ("mscoco", "coco"), 84, (0, 40, 40),
           "mscoco/{instances_train2017.json or annotations/instances_train2017.json,train2017/NNNNNNNNNNNN.jpg}",
           "cocodataset.org (train2017.zip, annotations_trainval2017.zip)", "meta-dataset",
           "validation + test (never trained on)", "annotations CC BY 4.0; images Flickr terms"),
    Source("bscd-cropdisease", "CropDisease (BSCD-FSL)", ("CropDiseases", "cropdisease"), 84, (0, 0, 38),
           "CropDiseases/dataset/train/CLASS/*.jpg (PlantVillage, 38 classes)",
           "kaggle.com/saroz014/plant-disease (the cdfsl-benchmark README's link)", "bscd", "test only",
           "CC BY-SA 3.0 (PlantVillage)"),
    Source("bscd-eurosat", "EuroSAT (BSCD-FSL)", ("EuroSAT",), 84, (0, 0, 10), "EuroSAT/2750/CLASS/*.jpg",
           "madm.dfki.de/files/sentinel/EuroSAT.zip", "bscd", "test only", "MIT"),
    Source("bscd-isic", "ISIC 2018 (BSCD-FSL)", ("ISIC",), 84, (0, 0, 7),
           "ISIC/{ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv,"
           "ISIC2018_Task3_Training_Input/*.jpg}", "challenge.isic-archive.com/data#2018 (task 3 training data)",
           "bscd", "test only", "CC BY-NC 4.0"),
    Source("bscd-chestx", "ChestX (BSCD-FSL)", ("chestX", "chestx"), 84, (0, 0, 7),
           "chestX/{Data_Entry_2017.csv,images/*.png} (every images_0NN/images/ folder moved into one images/)",
           "kaggle.com/nih-chest-xrays/data (kaggle datasets download -d nih-chest-xrays/data)", "bscd",
           "test only", "CC0 (NIH Clinical Center)"),
)}


def _need(bench: Source, path: Path) -> Path:
    if not path.exists():
        raise MetanasError(f"{path} not found: the {bench.title} copy is incomplete; expected {bench.layout}")
    return path


def _files(bench: Source, listed: dict[str, list], where: Path) -> list[tuple[str, list]]:
    """The split's classes in split order with their items, each listed class present and every file there."""
    fewshot._check_classes(bench, {n for n, items in listed.items() if items}, where)
    classes = [(name, listed[name]) for names in split_classes(bench.name) for name in names]
    for _, items in classes:
        for item in items:
            path = item[0] if isinstance(item, tuple) else item
            if not os.path.isfile(path):
                raise MetanasError(f"{path} not found: it is listed in the {bench.title} annotations but missing; "
                                   "the download is incomplete")
    return classes


def _folders(where: Path) -> dict[str, list[Path]]:
    return {p.name: image_files(p) for p in sorted(where.iterdir()) if p.is_dir()}


def _decode(bench, where, classes, size, channels, skip, invert=False) -> ClassDataset:
    return decode_memmap(bench.name, where, classes, size, channels, invert=invert, skip_corrupt=skip,
                         label=bench.title)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MetanasError(f"cannot read {path}: {describe(e)}; the file is truncated or not JSON: download it "
                           "again") from None


def _read_csv(path: Path, **kw) -> list[list[str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.reader(f, **kw))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MetanasError(f"cannot read {path}: {describe(e)}; download it again") from None


# --- Meta-Dataset ----------------------------------------------------------------------------------------------

def _ilsvrc(bench, roots, size, channels, skip):
    first = split_classes(bench.name)[0][0]
    where = fewshot._find(bench, roots, lambda d: (d / first).is_dir() or (d / "train" / first).is_dir())
    where = where / "train" if (where / "train" / first).is_dir() else where
    # Meta-Dataset skips the ImageNet images that are also in Caltech-101/256 or CUB (its duplicates lists)
    duplicates = set(package_file("data", "splits", bench.name, "duplicates.txt").read_text().split())
    listed = {}
    for name in [n for names in split_classes(bench.name) for n in names]:
        folder = where / name
        listed[name] = [p for p in image_files(folder) if p.name not in duplicates] if folder.is_dir() else []
    return _decode(bench, where, _files(bench, listed, where), size, channels, skip)


def _omniglot(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "images_background").is_dir()
                          and (d / "images_evaluation").is_dir())
    listed = {}
    for name in [n for names in split_classes(bench.name) for n in names]:
        folder = where / name
        listed[name] = sorted(folder.glob("*.png")) if folder.is_dir() else []
    # black strokes on white, inverted as Meta-Dataset's converter does (invert_img=True): strokes high
    return _decode(bench, where, _files(bench, listed, where), size, channels, skip, invert=True)


def _aircraft(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "data" / "images_variant_trainval.txt").is_file())
    data = where / "data"
    variants = defaultdict(list)
    for part in ("trainval", "test"):
        for line in _need(bench, data / f"images_variant_{part}.txt").read_text().splitlines():
            if line.strip():
                name, variant = line.split(" ", 1)
                variants[variant].append(name)
    boxes = {}
    for line in _need(bench, data / "images_box.txt").read_text().splitlines():
        if line.strip():
            name, *box = line.split(" ")
            boxes[name] = tuple(int(v) for v in box)
    missing = next((n for names in variants.values() for n in names if n not in boxes), None)
    if missing is not None:
        raise MetanasError(f"{data / 'images_box.txt'}: no bounding box for image {missing}; download the data "
                           "set again")
    # cropped to the aircraft's bounding box, as Meta-Dataset's converter does
    listed = {v: [(str(data / "images" / f"{n}.jpg"), boxes[n]) for n in sorted(names)] for v, names in variants.items()}
    return _decode(bench, where, _files(bench, listed, where), size, channels, skip)


def _cub(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "images.txt").is_file() or (d / "images").is_dir())
    rows = lambda name: [line.split(" ", 1) for line in _need(bench, where / name).read_text().splitlines()
                         if line.strip()]
    classes = dict(rows("classes.txt"))
    images = dict(rows("images.txt"))
    listed = defaultdict(list)
    for image_id, class_id in rows("image_class_labels.txt"):
        if image_id not in images or class_id.strip() not in classes:
            raise MetanasError(f"{where / 'image_class_labels.txt'}: image {image_id} or class {class_id} is not in "
                               "images.txt / classes.txt; download the data set again")
        listed[classes[class_id.strip()]].append(where / "images" / images[image_id])
    return _decode(bench, where, _files(bench, dict(listed), where), size, channels, skip)


def _dtd(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "images").is_dir())
    return _decode(bench, where, _files(bench, _folders(where / "images"), where), size, channels, skip)


def _quickdraw(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: any(d.glob("*.npy")))
    names = [n for ns in split_classes(bench.name) for n in ns]
    files = {p.stem: p for p in where.glob("*.npy")}
    fewshot._check_classes(bench, set(files), where)
    arrays = []
    for name in names:
        try:
            a = np.load(files[name], mmap_mode="r")  # a class is up to 300k bitmaps: never read whole
        except Exception as e:
            raise MetanasError(f"cannot read {files[name]}: {describe(e)}; the file is truncated or not a .npy: "
                               "download it again") from None
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != 784 or not len(a):
            raise MetanasError(f"{files[name]}: bitmaps are {a.dtype} {tuple(a.shape)}, expected uint8 [N, 784] "
                               "(QuickDraw's numpy_bitmap files)")
        arrays.append(a)
    key = source_key(where.resolve(), [files[n] for n in names])
    cached = read_memmap(bench.name, where.resolve(), key, size, channels)
    if cached is not None:
        return cached

    def chunks():
        for c, a in enumerate(arrays):
            for i in range(0, len(a), CHUNK):
                # strokes high on a 0 background already, as Meta-Dataset stores them (gray repeated to RGB)
                x = torch.from_numpy(np.array(a[i:i + CHUNK])).view(-1, 1, 28, 28)
                yield to_channels(resize(x, size), channels).numpy(), np.full(len(x), c)

    return write_memmap(bench.name, where.resolve(), key, names, sum(len(a) for a in arrays), size, channels,
                        chunks(), bench.title)


def _fungi(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "train.json").is_file())
    parts = [_read_json(_need(bench, where / f"{p}.json")) for p in ("train", "val")]
    try:
        categories = {c["id"]: f"{c['id']:04d}.{c['name']}" for c in parts[0]["categories"]}
        files = {im["id"]: im["file_name"] for p in parts for im in p["images"]}
        listed = defaultdict(list)
        for p in parts:
            for a in p["annotations"]:
                listed[categories[a["category_id"]]].append(where / files[a["image_id"]])
    except (KeyError, TypeError) as e:
        raise MetanasError(f"{where / 'train.json'}: not the FGVCx fungi annotations (missing {describe(e)}): "
                           "expected COCO-style categories, images and annotations") from None
    return _decode(bench, where, _files(bench, dict(listed), where), size, channels, skip)


def _vggflower(bench, roots, size, channels, skip):
    from scipy.io import loadmat  # reads MATLAB v5 .mat files such as imagelabels.mat

    where = fewshot._find(bench, roots, lambda d: (d / "imagelabels.mat").is_file())
    path = where / "imagelabels.mat"
    try:
        labels = np.asarray(loadmat(str(path))["labels"]).ravel()
    except Exception as e:
        raise MetanasError(f"cannot read {path}: {describe(e)}; expected imagelabels.mat with labels [1, 8189]: "
                           "download it again") from None
    by_label = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[int(label)].append(where / "jpg" / f"image_{i + 1:05d}.jpg")
    names = [n for ns in split_classes(bench.name) for n in ns]
    listed = {n: by_label.get(int(n[:3]), []) for n in names}  # NNN.flower name: NNN is the label in the .mat
    return _decode(bench, where, _files(bench, listed, where), size, channels, skip)


def _trafficsign(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "Final_Training" / "Images").is_dir())
    listed = {}
    for name in split_classes(bench.name)[2]:  # NN.Sign name: NN is the folder 000NN
        folder = where / "Final_Training" / "Images" / f"{int(name[:2]):05d}"
        if not folder.is_dir():
            listed[name] = []
            continue
        gt = _need(bench, folder / f"GT-{int(name[:2]):05d}.csv")
        rows = _read_csv(gt, delimiter=";")
        if not rows or rows[0][:1] != ["Filename"] or "ClassId" not in rows[0]:
            raise MetanasError(f"{gt}: expected GTSRB's header Filename;Width;Height;Roi.X1;...;ClassId")
        listed[name] = [folder / r[0] for r in rows[1:] if r]
    return _decode(bench, where, _files(bench, listed, where), size, channels, skip)


def coco_box(bbox, width: int, height: int, ratio: float = 1.2) -> tuple[int, int, int, int] | None:
    """The crop of a COCO box ``[x, y, w, h]`` as Meta-Dataset takes it: enlarged ``ratio`` times about its centre,
    rounded to pixels and clipped to the image; None when empty (the reference skips those)."""
    x, y, w, h = bbox
    x, y, w, h = x - 0.5 * w * (ratio - 1), y - 0.5 * h * (ratio - 1), w * ratio, h * ratio
    box = (max(int(round(x - 0.5)), 0), max(int(round(y - 0.5)), 0),
           min(int(round(x + w - 0.5)) + 1, width), min(int(round(y + h - 0.5)) + 1, height))
    return box if box[2] > box[0] and box[3] > box[1] else None


def _mscoco(bench, roots, size, channels, skip):
    name = "instances_train2017.json"
    where = fewshot._find(bench, roots, lambda d: (d / "train2017").is_dir())
    path = next((p for p in (where / name, where / "annotations" / name) if p.is_file()), where / "annotations" / name)
    blob = _read_json(_need(bench, path))
    try:
        categories = {c["id"]: c["name"] for c in blob["categories"]}
        sizes = {im["id"]: (im["width"], im["height"]) for im in blob["images"]}
        listed = defaultdict(list)
        for a in blob["annotations"]:
            box = coco_box(a["bbox"], *sizes[a["image_id"]])
            if box is not None:
                listed[categories[a["category_id"]]].append((str(where / "train2017" / f"{a['image_id']:012d}.jpg"),
                                                             box))
    except (KeyError, TypeError, ValueError) as e:
        raise MetanasError(f"{path}: not COCO instance annotations ({describe(e)}): expected categories, images "
                           "with width/height, and annotations with image_id, category_id and bbox") from None
    return _decode(bench, where, _files(bench, dict(listed), where), size, channels, skip)


# --- BSCD-FSL --------------------------------------------------------------------------------------------------

def _cropdisease(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "dataset" / "train").is_dir())
    return _decode(bench, where, _files(bench, _folders(where / "dataset" / "train"), where), size, channels, skip)


def _eurosat(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "2750").is_dir())
    return _decode(bench, where, _files(bench, _folders(where / "2750"), where), size, channels, skip)


def _isic(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "ISIC2018_Task3_Training_Input").is_dir())
    path = _need(bench, where / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv")
    rows = _read_csv(path)
    if not rows or rows[0][:1] != ["image"] or len(rows[0]) < 2:
        raise MetanasError(f"{path}: expected the header image,MEL,NV,BCC,AKIEC,BKL,DF,VASC, got {rows[:1]}")
    header = rows[0][1:]
    listed = defaultdict(list)
    for r in rows[1:]:
        if not r:
            continue
        try:
            hot = [float(v) != 0 for v in r[1:]]
        except ValueError:
            raise MetanasError(f"{path}: row {r[0]} is not one-hot (values {r[1:]})") from None
        if sum(hot) != 1:
            raise MetanasError(f"{path}: row {r[0]} has {sum(hot)} diagnoses, expected one (one-hot)")
        listed[header[hot.index(True)]].append(where / "ISIC2018_Task3_Training_Input" / f"{r[0]}.jpg")
    return _decode(bench, where, _files(bench, dict(listed), where), size, channels, skip)


def _chestx(bench, roots, size, channels, skip):
    where = fewshot._find(bench, roots, lambda d: (d / "Data_Entry_2017.csv").is_file())
    path = where / "Data_Entry_2017.csv"
    rows = _read_csv(path)
    if not rows or rows[0][:2] != ["Image Index", "Finding Labels"]:
        raise MetanasError(f"{path}: expected NIH's header Image Index,Finding Labels,..., got {rows[:1]}")
    used = set(split_classes(bench.name)[2])
    listed = defaultdict(list)
    for r in rows[1:]:
        # cdfsl-benchmark keeps the images with exactly one finding among its 7 (not No Finding, not Pneumonia)
        if r and r[1] in used:
            listed[r[1]].append(where / "images" / r[0])
    return _decode(bench, where, _files(bench, dict(listed), where), size, channels, skip)


READERS = {"md-ilsvrc": _ilsvrc, "md-omniglot": _omniglot, "md-aircraft": _aircraft, "md-cub": _cub, "md-dtd": _dtd,
           "md-quickdraw": _quickdraw, "md-fungi": _fungi, "md-vggflower": _vggflower,
           "md-trafficsign": _trafficsign, "md-mscoco": _mscoco, "bscd-cropdisease": _cropdisease,
           "bscd-eurosat": _eurosat, "bscd-isic": _isic, "bscd-chestx": _chestx}

# Registered as benchmarks with a published split (split: standard): the task families' defaults (84 px, RGB), the
# class counts `metanas tasks` lists and the split lists all come from metanas.data.fewshot.
fewshot.BENCHMARKS.update(SOURCES)


def load(name: str, roots: list[Path], image_size: int, channels: int = 3, skip_corrupt: bool = False) -> ClassDataset:
    """Source ``name`` from the first of ``roots`` (then the user cache's data folder) that holds it: every class of
    its published split, in split order (train, validation, test), at ``image_size`` with ``channels``, memory-mapped."""
    return READERS[name](SOURCES[name], [Path(r) for r in roots], image_size, channels, skip_corrupt)


def sources(suite: str) -> list[Source]:
    """The sources of ``suite`` (meta-dataset or bscd) in the paper's order."""
    return [s for s in SOURCES.values() if s.suite == suite]
