"""Meta-Dataset's and BSCD-FSL's sources (metanas.data.crossdomain), their splits, the memory-mapped cache and the
``meta-dataset`` and ``bscd`` suites.

Nothing can be downloaded here, so the fixture writes every source in its real on-disk format (image folders,
QuickDraw's ``.npy`` bitmaps, VGG Flower's ``imagelabels.mat``, Fungi's and MSCOCO's JSON annotations, ISIC's
one-hot CSV, ChestX's ``Data_Entry_2017.csv``, GTSRB's ``.ppm`` with its GT CSV, CUB's and Aircraft's text files)
with the published class names. Class number c (in split order) has the colour ``COLOUR(c)``, so a test can tell
that every image sits under its class. Every class gets 65 images (BSCD's 50 shots + 15 queries) or 20 (Meta-
Dataset's 5 + 15), most of them hard links to two real files per class, so that the suites can draw their episodes.
"""

import functools
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, run_cli
from conftest import run_cli as run_cli_in
from metanas.core.errors import MetanasError
from metanas.core.resources import package_file
from metanas.data import crossdomain, get_tasksets, load_family
from metanas.data.crossdomain import SOURCES, coco_box
from metanas.data.fewshot import split_classes
from metanas.data.suites import benchmark_families, suite_families

SIZE = 8  # pixels of the images written


def COLOUR(c: int) -> tuple[int, int, int]:
    return (40 + 37 * c) % 216 + 20, (90 + 91 * c) % 216 + 20, (10 + 53 * c) % 216 + 20


def _all(name):
    return [n for names in split_classes(name) for n in names]


def _count(name, c):
    """Images of class number c of source ``name``: enough for the suites' episodes (every split's task set
    checks that its classes have shots + queries images)."""
    return 65 if name.startswith("bscd") else 20


def _image(c, i, size=SIZE, mode="RGB"):
    rng = np.random.default_rng(1000 * c + i)
    a = np.clip(np.array(COLOUR(c), dtype=np.int16) + rng.integers(-6, 7, (size, size, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(a)
    return im.convert("L") if mode == "L" else im


_WRITTEN = {}  # two real files per class and format; the other images are hard links to them (tens of thousands)


def _save(path, c, i, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    key = (c, i % 2, path.suffix, repr(sorted(kw.items())))
    if i >= 2 and key in _WRITTEN and os.path.exists(_WRITTEN[key]):
        os.link(_WRITTEN[key], path)
        return
    _image(c, i, mode=kw.pop("mode", "RGB")).save(path, **kw)
    _WRITTEN[key] = path


def write_folders(folder, name, pattern="{i:04d}.jpg"):
    for c, cls in enumerate(_all(name)):
        for i in range(_count(name, c)):
            _save(folder / cls / pattern.format(i=i, cls=cls), c, i)


def write_ilsvrc(root):
    where = root / "ILSVRC2012_img_train"
    write_folders(where, "md-ilsvrc", "{cls}_{i}0000.JPEG")
    # and the files of Meta-Dataset's duplicates list (images also in Caltech or CUB), which the reader leaves out
    for dup in package_file("data", "splits", "md-ilsvrc", "duplicates.txt").read_text().split():
        if (where / dup.split("_")[0]).is_dir():
            _save(where / dup.split("_")[0] / dup, 0, 1)


def write_omniglot(root):
    for c, name in enumerate(_all("md-omniglot")):
        for i in range(_count("md-omniglot", c)):  # black strokes on white, as Omniglot's PNGs
            path = root / "omniglot-py" / name / f"{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            if i:
                os.link(path.parent / "00.png", path)
            else:
                Image.fromarray(np.full((SIZE, SIZE), 255 - (c % 200), dtype=np.uint8)).save(path)


def write_aircraft(root):
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    variants, boxes, n = {"trainval": [], "test": []}, [], 1000000
    for c, variant in enumerate(_all("md-aircraft")):
        for i in range(_count("md-aircraft", c)):
            # the aircraft (its colour) inside its box, a black frame around it that the crop cuts away
            if i:
                os.link(data / "images" / f"{n - i}.jpg", data / "images" / f"{n}.jpg")
            else:
                im = Image.new("RGB", (3 * SIZE, 2 * SIZE))
                im.paste(_image(c, i), (SIZE, 4))
                im.save(data / "images" / f"{n}.jpg", quality=95, subsampling=0)
            variants["test" if i % 2 else "trainval"].append(f"{n} {variant}")
            boxes.append(f"{n} {SIZE + 1} 5 {2 * SIZE - 2} {SIZE + 2}")
            n += 1
    for part, lines in variants.items():
        (data / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n")
    (data / "images_box.txt").write_text("\n".join(boxes) + "\n")


def write_cub(root):
    where = root / "CUB_200_2011"
    classes = sorted(_all("md-cub"))  # classes.txt numbers the classes 1..200 in name order
    images, labels, n = [], [], 1
    for k, cls in enumerate(classes, 1):
        c = _all("md-cub").index(cls)
        for i in range(_count("md-cub", c)):
            rel = f"{cls}/{cls.split('.')[1]}_{i:04d}.jpg"
            _save(where / "images" / rel, c, i, quality=95)
            images.append(f"{n} {rel}")
            labels.append(f"{n} {k}")
            n += 1
    (where / "classes.txt").write_text("".join(f"{k} {cls}\n" for k, cls in enumerate(classes, 1)))
    (where / "images.txt").write_text("\n".join(images) + "\n")
    (where / "image_class_labels.txt").write_text("\n".join(labels) + "\n")


def write_quickdraw(root):
    (root / "quickdraw").mkdir(parents=True)
    for c, name in enumerate(_all("md-quickdraw")):
        rows = np.zeros((_count("md-quickdraw", c), 784), dtype=np.uint8)
        rows[:, 300:400] = 10 + c % 240  # a stroke whose value names the class
        np.save(root / "quickdraw" / f"{name}.npy", rows)


def write_fungi(root):
    where = root / "fungi"
    names = _all("md-fungi")
    categories = [{"id": int(n[:4]), "name": n[5:], "supercategory": "Fungi"} for n in sorted(names)]
    parts = {"train": {"images": [], "annotations": []}, "val": {"images": [], "annotations": []}}
    n = 0
    for c, name in enumerate(names):
        for i in range(_count("md-fungi", c)):
            rel = f"images/{name.replace(' ', '_')}/F{n:06d}.JPG"
            _save(where / rel, c, i, format="JPEG", quality=95)
            part = parts["val" if i % 4 == 3 else "train"]
            part["images"].append({"id": n, "file_name": rel, "width": SIZE, "height": SIZE})
            part["annotations"].append({"id": n, "image_id": n, "category_id": int(name[:4])})
            n += 1
    for p, blob in parts.items():
        (where / f"{p}.json").write_text(json.dumps({"categories": categories, **blob}))


def write_vggflower(root):
    from scipy.io import savemat

    where = root / "vgg_flower"
    (where / "jpg").mkdir(parents=True)
    labels = []
    for c, name in sorted(enumerate(_all("md-vggflower")), key=lambda t: t[1]):
        for i in range(_count("md-vggflower", c)):
            labels.append(int(name[:3]))
            _save(where / "jpg" / f"image_{len(labels):05d}.jpg", c, i, quality=95)
    savemat(str(where / "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})


def write_gtsrb(root):
    for c, name in enumerate(_all("md-trafficsign")):
        folder = root / "GTSRB" / "Final_Training" / "Images" / f"{c:05d}"
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for i in range(_count("md-trafficsign", c)):
            _save(folder / f"00000_{i:05d}.ppm", c, i)
            rows.append(f"00000_{i:05d}.ppm;{SIZE};{SIZE};1;1;{SIZE - 1};{SIZE - 1};{c}")
        (folder / f"GT-{c:05d}.csv").write_text("\n".join(rows) + "\n")


def write_mscoco(root):
    where = root / "mscoco"
    (where / "train2017").mkdir(parents=True)
    (where / "annotations").mkdir()
    names = _all("md-mscoco")
    categories = [{"id": k + 1, "name": n, "supercategory": "x"} for k, n in enumerate(sorted(names))]
    ids = {cat["name"]: cat["id"] for cat in categories}
    images, annotations = [], []
    for c, name in enumerate(names):  # one image per class, one box per object: the crops are the objects
        image_id = 1000 + c
        count = _count("md-mscoco", c)
        canvas = Image.new("RGB", (12 * count, 12))
        for i in range(count):
            canvas.paste(_image(c, i, size=10), (12 * i + 1, 1))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[name],
                                "bbox": [12 * i + 2, 2, 8, 8], "area": 64, "iscrowd": 0})
        canvas.save(where / "train2017" / f"{image_id:012d}.jpg", quality=95, subsampling=0)
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 12 * count, "height": 12})
    (where / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def write_isic(root):
    where = root / "ISIC"
    header = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = [",".join(header)]
    for c, name in enumerate(_all("bscd-isic")):
        for i in range(_count("bscd-isic", c)):
            image = f"ISIC_{c:03d}{i:04d}"
            _save(where / "ISIC2018_Task3_Training_Input" / f"{image}.jpg", c, i, quality=95)
            rows.append(",".join([image] + ["1.0" if h == name else "0.0" for h in header[1:]]))
    (where / "ISIC2018_Task3_Training_GroundTruth").mkdir()
    (where / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv").write_text(
        "\n".join(rows) + "\n")


def write_chestx(root):
    where = root / "chestX"
    rows = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"]
    for c, name in enumerate(_all("bscd-chestx")):
        for i in range(_count("bscd-chestx", c)):
            image = f"{c:04d}{i:04d}_000.png"
            _save(where / "images" / image, c, i, mode="L")  # X-rays: grayscale PNGs
            rows.append(f"{image},{name},0,{c},50,M,PA")
    # rows the reference leaves out: no finding, Pneumonia, and two findings at once (their files are absent)
    rows += ["x1.png,No Finding,0,1,50,M,PA", "x2.png,Pneumonia,0,1,50,M,PA", "x3.png,Mass|Nodule,0,1,50,M,PA"]
    (where / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")


WRITERS = {
    "md-ilsvrc": write_ilsvrc, "md-omniglot": write_omniglot, "md-aircraft": write_aircraft, "md-cub": write_cub,
    "md-dtd": lambda root: write_folders(root / "dtd" / "images", "md-dtd", "{cls}_{i:04d}.jpg"),
    "md-quickdraw": write_quickdraw, "md-fungi": write_fungi, "md-vggflower": write_vggflower,
    "md-trafficsign": write_gtsrb, "md-mscoco": write_mscoco,
    "bscd-cropdisease": lambda root: write_folders(root / "CropDiseases" / "dataset" / "train", "bscd-cropdisease"),
    "bscd-eurosat": lambda root: write_folders(root / "EuroSAT" / "2750", "bscd-eurosat", "{cls}_{i}.jpg"),
    "bscd-isic": write_isic, "bscd-chestx": write_chestx,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One data root holding all fourteen sources, each in its real format."""
    base = tmp_path_factory.mktemp("crossdomain")
    for write in WRITERS.values():
        write(base)
    return base


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# The published split lists, as shipped: their SHA-256, so that editing a split file fails a test (the counts and
# disjointness are checked separately; SOURCES.md says where each list comes from).
SPLIT_SHA256 = {
    "md-ilsvrc": "b637ad33ba705ced2bd3505f28cd6b49c809fddc605e30a103444ec743284ac1",
    "md-omniglot": "7d66ef94b82934a8f4f67ee9b2665283f46690e796f0338bb3ad5f568e0f9ef5",
    "md-aircraft": "1d7ef46fbe2c1301be7e12db929c8b9ad97c56c0d96b41e533fd29f8badeeb75",
    "md-cub": "9d171acd5b4164fb2ddcd3753ea0cadee4a10d8d07b33b0b238fed1d834eb8a1",
    "md-dtd": "93c8655fe301b49ae2a8c47d93f5b32e806e6640d907c0ec54d563f3d43cc846",
    "md-quickdraw": "ca8feb0788bd276389e1f672ff43092f53bf9984f3cc3c1ff8eea3d73ca81de7",
    "md-fungi": "2c6ea757eff33aa73404f10c68083a276f12bf7dc60b1b0e5916dfa8751b5c5f",
    "md-vggflower": "da53c3246c1436c73afb76faa1b5aad2d52cae6f8d894d0ad4a59608baff52ca",
    "md-trafficsign": "b80931cfb1b0fa9323aa4a214cf2c6ee134b3627dd68ece1e5a47708b4798f6e",
    "md-mscoco": "281d35b2634c900aaa211600a5105ebab8c7093ab3c239af2a3c44d49760c5f8",
    "bscd-cropdisease": "1bf9664e45ab1a370452b9deb30ac2e200ad075b1ab53e9423ff20980d6c3c87",
    "bscd-eurosat": "c8cae9d943a96ce98cf0a4f7abe78c34a99e701035a24528510922c3d650fbfb",
    "bscd-isic": "eb74d8c0ad1c2680d7fc84aa9b443fe3a8d5e883b207ac60336b6ee8134cb1a0",
    "bscd-chestx": "942a7ec78b736777cca0d1cc08e513a48e2814ba604fca092ccd0fb533371066",
}


def _digest(name, read=lambda name, split: package_file("data", "splits", name, f"{split}.txt").read_bytes()):
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        h.update(read(name, split) + b"\0")
    return h.hexdigest()


def test_split_files_are_the_published_ones():
    for name, source in SOURCES.items():
        lists = split_classes(name)
        assert tuple(map(len, lists)) == source.counts, name
        flat = [n for names in lists for n in names]
        assert len(set(flat)) == len(flat), f"{name}: splits overlap or repeat a class"
        assert _digest(name) == SPLIT_SHA256[name], f"{name}: a split file was edited (update SOURCES.md and the hash)"
    # the papers' sizes, written out once more
    assert {n: s.counts for n, s in SOURCES.items()} == {
        "md-ilsvrc": (712, 158, 130), "md-omniglot": (883, 81, 659), "md-aircraft": (70, 15, 15),
        "md-cub": (140, 30, 30), "md-dtd": (33, 7, 7), "md-quickdraw": (241, 52, 52), "md-fungi": (994, 200, 200),
        "md-vggflower": (71, 15, 16), "md-trafficsign": (0, 0, 43), "md-mscoco": (0, 40, 40),
        "bscd-cropdisease": (0, 0, 38), "bscd-eurosat": (0, 0, 10), "bscd-isic": (0, 0, 7), "bscd-chestx": (0, 0, 7)}
    # Omniglot by alphabet: the 5 smallest background alphabets validate, images_evaluation tests
    alphabets = [{n.split("/")[1] for n in names} for names in split_classes("md-omniglot")]
    assert tuple(map(len, alphabets)) == (25, 5, 20) and "Tagalog" in alphabets[1]
    assert all(n.startswith("images_evaluation/") for n in split_classes("md-omniglot")[2])
    assert len(package_file("data", "splits", "md-ilsvrc", "duplicates.txt").read_text().split()) == 403


def test_an_edited_split_file_fails_the_check():
    """The hash check bites: the DTD lists with one validation class moved to the end of its list are caught."""
    real = lambda name, split: package_file("data", "splits", name, f"{split}.txt").read_bytes()
    edited = lambda name, split: (real(name, split).replace(b"gauzy\n", b"") + b"gauzy\n" if split == "val"
                                  else real(name, split))
    assert _digest("md-dtd", real) == SPLIT_SHA256["md-dtd"]
    assert edited("md-dtd", "val") != real("md-dtd", "val") and _digest("md-dtd", edited) != SPLIT_SHA256["md-dtd"]


@pytest.mark.parametrize("name", list(SOURCES))
def test_reader_puts_every_image_under_its_published_class(name, root, cache):
    data = crossdomain.load(name, [root], 12, channels=3)
    flat = _all(name)
    assert data.class_names == flat and data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 12, 12)
    counts = torch.bincount(data.labels, minlength=len(flat)).tolist()
    assert counts == [_count(name, c) for c in range(len(flat))]
    if name == "md-ilsvrc":  # Meta-Dataset leaves out the images that are also in Caltech or CUB: on disk, not read
        on_disk = sum(len(list((root / "ILSVRC2012_img_train" / cls).iterdir())) for cls in flat)
        assert on_disk > sum(counts) + 300
    assert isinstance(data.images.numpy().base, np.memmap) or data.images.numpy().base is not None  # memory-mapped
    for c in (0, len(flat) // 2, len(flat) - 1):
        x = data.images[data.indices_per_class[c]].float()
        if name == "md-quickdraw":
            assert x.amax().item() == pytest.approx(10 + c % 240, abs=2)
        elif name == "md-omniglot":  # inverted: strokes high
            assert x.mean().item() == pytest.approx(c % 200, abs=2)
        elif name == "bscd-chestx":
            assert x.mean().item() == pytest.approx(np.dot((0.299, 0.587, 0.114), COLOUR(c)), abs=4)
        else:
            assert torch.allclose(x.mean((0, 2, 3)), torch.tensor(COLOUR(c), dtype=torch.float), atol=7), (name, c)
    again = crossdomain.load(name, [root], 12, channels=3)  # from the cache, the same
    assert torch.equal(again.images, data.images) and torch.equal(again.labels, data.labels)


def test_coco_crops_are_the_references_boxes():
    # Meta-Dataset: enlarged 1.2x about the centre, rounded, clipped to the image
    assert coco_box([10, 20, 30, 40], 100, 100) == (7, 16, 43, 65)  # Python's round: 42.5 -> 42
    assert coco_box([0, 0, 50, 50], 40, 40) == (0, 0, 40, 40)
    assert coco_box([50, 50, 10, 10], 40, 40) is None  # outside the image: skipped, as the reference does


def test_missing_source_is_one_line_naming_the_folder(tmp_path, cache):
    for name, source in SOURCES.items():
        with pytest.raises(MetanasError) as e:
            crossdomain.load(name, [tmp_path / "empty"], 12)
        msg = str(e.value)
        assert "\n" not in msg and f"{source.folders[0]}/" in msg and source.title in msg, msg


def test_missing_or_corrupt_file_is_named_by_its_path(root, tmp_path, cache):
    broken = tmp_path / "broken"
    shutil.copytree(root / "ISIC", broken / "ISIC")
    gone = next((broken / "ISIC" / "ISIC2018_Task3_Training_Input").iterdir())
    gone.unlink()
    with pytest.raises(MetanasError, match=str(gone).replace("\\", "\\\\")):
        crossdomain.load("bscd-isic", [broken], 12)
    gone.write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(MetanasError, match="cannot decode .*" + gone.name):
        crossdomain.load("bscd-isic", [broken], 12)
    shutil.copytree(root / "vgg_flower", broken / "vgg_flower")
    (broken / "vgg_flower" / "imagelabels.mat").write_bytes(b"garbage")
    with pytest.raises(MetanasError, match="imagelabels.mat"):
        crossdomain.load("md-vggflower", [broken], 12)
    shutil.copytree(root / "fgvc-aircraft-2013b", broken / "fgvc-aircraft-2013b")
    (broken / "fgvc-aircraft-2013b" / "data" / "images_box.txt").unlink()
    with pytest.raises(MetanasError, match="images_box.txt not found"):
        crossdomain.load("md-aircraft", [broken], 12)


def test_quickdraw_refuses_bitmaps_of_another_shape(root, tmp_path, cache):
    bad = tmp_path / "bad" / "quickdraw"
    shutil.copytree(root / "quickdraw", bad)
    np.save(bad / "angel.npy", np.zeros((3, 100), dtype=np.uint8))
    with pytest.raises(MetanasError, match=r"angel.npy: bitmaps are uint8 \(3, 100\), expected uint8 \[N, 784\]"):
        crossdomain.load("md-quickdraw", [bad.parent], 12)


def test_memmap_cache_is_rebuilt_when_stale_or_damaged(root, tmp_path, cache):
    src = tmp_path / "eurosat"
    shutil.copytree(root / "EuroSAT", src / "EuroSAT")
    first = crossdomain.load("bscd-eurosat", [src], 12)
    files = sorted(cache.glob("bscd-eurosat-*"))
    assert {f.suffix for f in files} == {".npy", ".json"} and len(files) == 3
    meta = next(f for f in files if f.suffix == ".json")
    meta.write_text("{garbage")  # damaged: rebuilt, the same
    assert torch.equal(crossdomain.load("bscd-eurosat", [src], 12).images, first.images)
    extra = src / "EuroSAT" / "2750" / "Forest" / "new.jpg"
    _save(extra, 99, 0)  # a file added: stale, rebuilt with it
    assert len(crossdomain.load("bscd-eurosat", [src], 12).images) == len(first.images) + 1


def test_families_sample_published_episodes(root, cache):
    for name, ways, shots in (("bscd-isic-5way-50shot", 5, 50), ("md-aircraft-5way-5shot", 5, 5)):
        fam = load_family(name)
        assert (fam.ways, fam.shots, fam.queries, fam.image_size, fam.channels) == (ways, shots, 15, 84, 3)
        sets = get_tasksets(fam, str(root))
        task = sets.test.sample(torch.Generator().manual_seed(0))
        assert task.support_x.shape == (5 * shots, 3, 84, 84) and task.query_x.shape == (75, 3, 84, 84)
        test_classes = set(split_classes(fam.dataset)[2])
        assert set(sets.test.dataset.class_names) == test_classes
    assert load_family("bscd-eurosat-5way-5shot").held_out and load_family("md-mscoco-5way-1shot").held_out
    assert not load_family("md-ilsvrc-5way-1shot").held_out


def test_suites_list_the_papers_settings():
    md = benchmark_families("meta-dataset")
    assert len(md) == 20 and md[:2] == ["md-ilsvrc-5way-1shot", "md-ilsvrc-5way-5shot"]
    bscd = benchmark_families("bscd")
    assert bscd == [f"bscd-{s}-5way-{k}shot" for s in ("cropdisease", "eurosat", "isic", "chestx") for k in (5, 20, 50)]
    assert all(load_family(n).episodes != "fixed" for n in benchmark_families("meta-dataset", "variable"))
    with pytest.raises(MetanasError, match="no protocol 'variable'"):
        benchmark_families("bscd", "variable")
    roles = dict(suite_families("meta-dataset", "md-ilsvrc-5way-1shot"))
    assert roles["md-ilsvrc-5way-1shot"].startswith("trained; Meta-Dataset: train")
    assert roles["md-mscoco-5way-5shot"] == "held out; Meta-Dataset: validation + test (never trained on)"
    assert dict(suite_families("bscd", "miniimagenet-5way-1shot"))["bscd-chestx-5way-5shot"] == \
        "held out; BSCD-FSL: test only"
    # the shift suite of a miniImageNet warm start does not take in the cross-domain benchmarks' 42 families
    assert not any(n.startswith(("md-", "bscd-")) for n, _ in suite_families("shift", "miniimagenet-5way-1shot"))


def one_line_exit_2(res, *needles):
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


def test_evaluate_on_a_missing_source_is_one_line(tmp_path):
    env = {"METANAS_DATA": str(tmp_path), "METANAS_CACHE": str(tmp_path / "cache")}
    res = run_cli("-m", "metanas.cli", "tasks", "show", "bscd-eurosat-5way-5shot", "--out", str(tmp_path / "x.png"),
                  env=env)
    one_line_exit_2(res, "EuroSAT (BSCD-FSL) not found", "EuroSAT/2750/CLASS/*.jpg", "EuroSAT/")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_both_suites_end_to_end_through_the_cli(root, tmp_path):
    """A colour warm start (smoke meta-training on Meta-Dataset's DTD, read from its files) evaluated by
    ``metanas evaluate --suite bscd`` and ``--suite meta-dataset`` through the real CLI: one row per source and
    setting, each with its accuracy and role; ``--protocol variable`` refuses a 5-way head in one line. At
    ``--shots 5``: a BSCD 50-shot task of 84 px images takes about 10 GB in this supernet (measured), more than CI
    has beside the other tests' worker."""
    env = {"METANAS_CACHE": str(tmp_path / "cache"), "METANAS_DATA": str(root), "PYTHONPATH": str(ROOT)}
    # a family of the working directory's tasks/, so that the suites find the warm start's family by its name
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "dtd-small.yaml").write_text("dataset: md-dtd\nsplit: standard\nimage_size: 16\n")
    out = tmp_path / "runs"
    run_cli = functools.partial(run_cli_in, cwd=tmp_path)
    res = run_cli("-m", "metanas.meta_train", "--config", "smoke", "task.family=dtd-small", "task.queries=1",
                  f"run.output_dir={out}", "run.progress=false", env=env)
    assert res.returncode == 0, res.stderr
    run_id = next(line.split()[-1] for line in res.stdout.splitlines() if line.startswith("run id:"))
    for suite, families in (("bscd", benchmark_families("bscd")), ("meta-dataset", benchmark_families("meta-dataset"))):
        res = run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--output-dir", str(out), "--suite", suite,
                      "--tasks", "2", "--shots", "5", env=env, timeout=900)
        assert res.returncode == 0, res.stderr
        rows = [line for line in res.stdout.splitlines() if line.startswith("| ")]
        for name in families:
            row = next(r for r in rows if r.startswith(f"| {name} "))
            assert "%" in row and ("BSCD-FSL" in row or "Meta-Dataset" in row), row
        assert "skipped" not in res.stdout, res.stdout
    one_line_exit_2(run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--output-dir", str(out), "--suite",
                            "meta-dataset", "--protocol", "variable", "--tasks", "2", "--no-track", env=env),
                    "--protocol variable", "up to 50 ways", "head has 5 fixed outputs")


def test_variable_protocol_refuses_in_one_line():
    """A warm start whose head has fixed ways is refused by --protocol variable in one clear line."""
    from types import SimpleNamespace

    from metanas.cli.evaluate import check_variable

    families = benchmark_families("meta-dataset", "variable")
    with pytest.raises(MetanasError, match="head has 5 fixed outputs and cannot take variable ways") as e:
        check_variable(SimpleNamespace(ways=5, variable_ways=False), families)
    assert "\n" not in str(e.value) and "md-ilsvrc-variable" in str(e.value)
    check_variable(SimpleNamespace(ways=5, variable_ways=True), families)  # a head that takes drawn ways


def test_cache_build_memory_stays_flat(tmp_path):
    """benchmarks/cache_memory.py on 20,000 images at 84 px (420 MB decoded): the main process grows by a small
    part of the decoded size while the memory-mapped cache builds (a build that held the set would grow by all
    of it; 100,000 images: 0.058, docs/data.md)."""
    res = run_cli("benchmarks/cache_memory.py", "--images", "20000", "--classes", "200", "--dir", str(tmp_path),
                  timeout=600)
    assert res.returncode == 0, res.stderr
    line = next(line for line in res.stdout.splitlines() if "growth of the main process" in line)
    growth = float(line.rsplit(":", 1)[1])
    assert growth < 0.35, res.stdout
    assert "(20000, 3, 84, 84) uint8 = 404 MB" in res.stdout
