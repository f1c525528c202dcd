"""Colour images end to end and the few-shot benchmarks (miniImageNet, CIFAR-FS, tieredImageNet, CUB).

No benchmark can be downloaded here, so the fixtures write small files in each real on-disk format with the
published split's class names; each image of class number c (in split order) has the colour ``COLOUR(c)``, so
a test can tell that a reader put every image under the right class.
"""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from metanas.data import ImageFormat, get_tasksets, load_family
from metanas.data.fewshot import BENCHMARKS, split_classes, split_lists
from metanas.data.images import channel_stats
from metanas.data.shifts import SHIFTS, Shift, TaskShift
from metanas.data.show import draw_task
from metanas.core.errors import MetanasError

PER_CLASS = 4  # 1 shot + 2 queries in the test families, plus one


def COLOUR(c: int) -> tuple[int, int, int]:
    return (40 + 37 * c) % 216 + 20, (90 + 91 * c) % 216 + 20, (10 + 53 * c) % 216 + 20


def _images(c: int, n: int, size: int) -> np.ndarray:
    """n images of class number c: its colour, with a little noise (uint8 [n, size, size, 3])."""
    rng = np.random.default_rng(c)
    base = np.array(COLOUR(c), dtype=np.int16)
    return np.clip(base + rng.integers(-8, 9, (n, size, size, 3)), 0, 255).astype(np.uint8)


def _all(name):
    return [n for names in split_classes(name) for n in names]


def write_mini_pickles(folder, size=84):
    folder.mkdir(parents=True)
    c = 0
    for split, names in zip(("train", "val", "test"), split_classes("miniimagenet")):
        data, class_dict = [], {}
        for name in names:
            class_dict[name] = list(range(len(data) * PER_CLASS, (len(data) + 1) * PER_CLASS))
            data.append(_images(c, PER_CLASS, size))
            c += 1
        with open(folder / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": np.concatenate(data), "class_dict": class_dict}, f)


def write_jpegs(folder, c, n=PER_CLASS, size=20, prefix=""):
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(_images(c, n, size)):
        Image.fromarray(im).save(folder / f"{prefix}{i:08d}.jpg", quality=95)


def write_mini_csv(folder):
    (folder / "images").mkdir(parents=True)
    c = 0
    for split, names in zip(("train", "val", "test"), split_classes("miniimagenet")):
        rows = ["filename,label"]
        for name in names:
            write_jpegs(folder / "images", c, prefix=name)
            rows += [f"{name}{i:08d}.jpg,{name}" for i in range(PER_CLASS)]
            c += 1
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")


def write_split_folders(folder, name):
    for c, (split, cls) in enumerate((s, n) for s, names in zip(("train", "val", "test"), split_classes(name))
                                     for n in names):
        write_jpegs(folder / split / cls, c)


def write_cifar(folder):
    folder.mkdir(parents=True)
    names = sorted(_all("cifar-fs"))  # CIFAR-100's fine labels, alphabetical as in its meta file
    wanted = _all("cifar-fs")
    for part, n in (("train", 3), ("test", 1)):
        data, labels = [], []
        for label, name in enumerate(names):
            data.append(_images(wanted.index(name), n, 32).transpose(0, 3, 1, 2).reshape(n, 3072))
            labels += [label] * n
        with open(folder / part, "wb") as f:
            pickle.dump({"data": np.concatenate(data), "fine_labels": labels, "filenames": []}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names, "coarse_label_names": []}, f)


def write_cub(folder):
    for c, name in enumerate(_all("cub")):
        write_jpegs(folder / "images" / name, c, prefix=f"{name.split('.')[1]}_")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """One data root per layout, each holding one benchmark in its real format."""
    base = tmp_path_factory.mktemp("benchmarks")
    write_mini_pickles(base / "pickles" / "miniimagenet")
    write_mini_csv(base / "csv" / "miniimagenet")
    write_split_folders(base / "folders" / "miniimagenet", "miniimagenet")
    write_cifar(base / "cifar" / "cifar-100-python")
    write_split_folders(base / "tiered" / "tieredimagenet", "tieredimagenet")
    write_cub(base / "cub" / "CUB_200_2011")
    return base


def family(tmp_path, dataset, root, **extra):
    text = {"dataset": dataset, "root": str(root), "image_size": 16, "queries": 2, **extra}
    path = tmp_path / f"{dataset}.yaml"
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in text.items()) + "\n")
    return path


LAYOUTS = [("miniimagenet", "pickles"), ("miniimagenet", "csv"), ("miniimagenet", "folders"), ("cifar-fs", "cifar"),
           ("tieredimagenet", "tiered"), ("cub", "cub")]


def test_published_split_lists_have_the_papers_counts():
    for name, bench in BENCHMARKS.items():
        lists = split_classes(name)
        assert tuple(map(len, lists)) == bench.counts, name
        flat = [n for names in lists for n in names]
        assert len(set(flat)) == len(flat), f"{name}: splits overlap or repeat a class"
    supers = [{line.split("\t")[1] for line in lines} for lines in split_lists("tieredimagenet")]
    assert tuple(map(len, supers)) == (20, 6, 8) and not (supers[0] & supers[1] or supers[0] & supers[2])
    assert all(n.startswith("n") and len(n) == 9 for n in _all("miniimagenet"))
    assert len(_all("cub")) == 200 and _all("cub")[:2] == ["001.Black_footed_Albatross", "003.Sooty_Albatross"]


@pytest.mark.parametrize("dataset,layout", LAYOUTS)
def test_reader_finds_every_split_class_in_rgb(dataset, layout, roots, tmp_path, monkeypatch):
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    fam = load_family(family(tmp_path, dataset, roots / layout))
    assert fam.channels == 3 and fam.split == "standard" and fam.normalize
    sets = get_tasksets(fam)
    published = split_classes(dataset)
    seen = set()
    for ts, names in zip(sets, published):
        assert ts.dataset.class_names == names  # exactly the published lists, in their order
        assert not seen & set(names)
        seen |= set(names)
        assert ts.dataset.images.dtype == torch.uint8 and ts.dataset.images.shape[1:] == (3, 16, 16)
    # every image sits under its class: class number c (in split order) has colour COLOUR(c)
    flat = _all(dataset)
    for ts in sets:
        for label in (0, ts.dataset.num_classes - 1):
            c = flat.index(ts.dataset.class_names[label])
            mean = ts.dataset.images[ts.dataset.indices_per_class[label]].float().mean((0, 2, 3))
            assert torch.allclose(mean, torch.tensor(COLOUR(c), dtype=torch.float), atol=6), (dataset, c)
    task = sets.test.sample(torch.Generator().manual_seed(0))
    assert task.support_x.shape == (5, 3, 16, 16) and task.query_x.shape == (10, 3, 16, 16)


def test_normalisation_uses_the_meta_train_split_and_the_warm_starts_statistics(roots, tmp_path, monkeypatch):
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    fam = load_family(family(tmp_path, "miniimagenet", roots / "pickles"))
    sets = get_tasksets(fam)
    fmt = sets.train.format
    assert (fmt.mean, fmt.std) == channel_stats(sets.train.dataset.images)  # the train split's, not all images
    assert fmt.mean != channel_stats(sets.test.dataset.images)[0]
    task = sets.test.sample(torch.Generator().manual_seed(1))
    raw = fmt.denormalize(task.support_x)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5 and task.support_x.mean().abs() < 3
    # a warm start's statistics win over the family's own: tasks of another family look like its training data
    warm = ImageFormat(3, 84, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    other = get_tasksets(fam, warm_format=warm).test.sample(torch.Generator().manual_seed(1))
    assert torch.allclose(other.support_x, (raw - 0.5) / 0.25, atol=1e-5)
    # grayscale stroke data is not normalised (zero means "no ink" under zero padding)
    assert load_family("omniglot-5way").normalize is False


def test_cache_round_trips_and_is_rebuilt_when_stale(roots, tmp_path, monkeypatch):
    from metanas.data.fewshot import load

    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cub"
    shutil.copytree(roots / "cub", root)
    first = load("cub", [root], 16)
    [cache] = (tmp_path / "cache").iterdir()
    assert cache.name.startswith("cub-16px-c3-")
    stamp = cache.stat().st_mtime_ns
    again = load("cub", [root], 16)
    assert torch.equal(again.images, first.images) and cache.stat().st_mtime_ns == stamp  # read, not rebuilt
    cache.write_bytes(b"garbage")
    assert torch.equal(load("cub", [root], 16).images, first.images)  # a damaged cache is rebuilt
    write_jpegs(root / "CUB_200_2011" / "images" / _all("cub")[5], 5, n=1, prefix="extra_")
    assert len(load("cub", [root], 16).images) == len(first.images) + 1  # a new image makes the cache stale


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_every_shift_works_on_colour_tasks(name):
    x = torch.from_numpy(_images(3, 6, 16)).permute(0, 3, 1, 2).float() / 255
    out = SHIFTS[name](x.clone(), 1.0, torch.Generator().manual_seed(0))
    again = SHIFTS[name](x.clone(), 1.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out, again)  # reproducible from the seed
    assert out.min() >= 0 and out.max() <= 1 + 1e-6
    if name == "grayscale":
        assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 1], out[:, 2], atol=1e-6)
    if name in ("hue", "color_jitter", "jpeg", "downsample", "grayscale", "blur", "noise"):
        assert not torch.allclose(out, x, atol=1e-3), f"{name} at severity 1 left the images unchanged"


@pytest.mark.parametrize("name", ["hue", "grayscale"])
def test_colour_shifts_refuse_grayscale(name, tmp_path):
    with pytest.raises(MetanasError, match="RGB"):
        SHIFTS[name](torch.rand(2, 1, 8, 8), 1.0, torch.Generator())
    path = tmp_path / "bad.yaml"
    path.write_text(f"dataset: omniglot\nshifts: [{name}]\n")
    with pytest.raises(MetanasError, match=f"shift {name} needs colour images.*channels: 3"):
        load_family(str(path))


def test_severity_zero_is_the_identity_for_the_colour_shifts():
    x = torch.from_numpy(_images(7, 4, 16)).permute(0, 3, 1, 2).float() / 255
    for name in ("hue", "grayscale", "color_jitter", "downsample", "jpeg"):
        assert torch.allclose(TaskShift((Shift(name, 0.0),))(x, torch.Generator()), x, atol=1e-5), name


def test_imagefolder_reads_colour_when_the_family_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    for c in range(3):
        write_jpegs(tmp_path / "data" / f"class{c}", c, n=3, size=12)
    spec = "dataset: imagefolder\nroot: data\nsplit: all\nways: 2\nqueries: 1\nimage_size: 12\n"
    (tmp_path / "rgb.yaml").write_text(spec + "channels: 3\n")
    (tmp_path / "gray.yaml").write_text(spec)
    rgb = get_tasksets(load_family(str(tmp_path / "rgb.yaml"))).test.dataset
    gray = get_tasksets(load_family(str(tmp_path / "gray.yaml"))).test.dataset
    assert rgb.images.shape == (9, 3, 12, 12) and gray.images.shape == (9, 1, 12, 12)
    assert torch.allclose(rgb.images[:3].float().mean((0, 2, 3)), torch.tensor(COLOUR(0), dtype=torch.float), atol=6)
    luma = (rgb.images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert (luma - gray.images[:, 0].float()).abs().mean() < 3


def test_tasks_show_draws_colour_tasks_in_colour(roots, tmp_path):
    out = tmp_path / "task.png"
    res = run_cli("-m", "metanas.cli", "tasks", "show", str(family(tmp_path, "cub", roots / "cub")),
                  "--out", str(out), env={"METANAS_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr
    png = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert (np.abs(png[..., 0] - png[..., 1]) > 40).mean() > 0.01  # coloured pixels, not a gray colormap


def test_draw_task_undoes_the_normalisation(roots, tmp_path, monkeypatch):
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    ts = get_tasksets(load_family(family(tmp_path, "cub", roots / "cub"))).test
    task = ts.sample(torch.Generator().manual_seed(0))
    assert draw_task(task, tmp_path / "t.png", image_format=ts.format).is_file()


def test_tasks_lists_the_benchmarks_with_their_split_sizes():
    res = run_cli("-m", "metanas.cli", "tasks")
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()[1:]}
    for name, sizes in (("miniimagenet-5way-1shot", "64/16/20"), ("miniimagenet-5way-5shot", "64/16/20"),
                        ("cifar-fs-5way-1shot", "64/16/20"), ("tieredimagenet-5way-5shot", "351/97/160"),
                        ("cub-5way-1shot", "100/50/50"), ("omniglot-5way", "787/177/659")):
        assert sizes in lines[name].split(), lines[name]
    assert lines["miniimagenet-cub-5way-5shot"].split()[10] == "yes"  # the cross-domain test is held out


def one_line_exit_2(res, *needles):
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


def test_missing_benchmark_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "runs"
    res = run_cli("-m", "metanas.meta_train", "--config", "smoke", "task.family=miniimagenet-5way-1shot",
                  f"data.root={tmp_path / 'empty'}", f"run.output_dir={out}", "run.progress=false",
                  env={"METANAS_DATA": str(tmp_path / "nothing"), "METANAS_CACHE": str(tmp_path / "cache"),
                       "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    one_line_exit_2(res, "miniImageNet not found", "mini-imagenet-cache-{train,val,test}.pkl", "{train,val,test}.csv",
                    "METANAS_DATA", "--data-root", "root:")
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_wrong_layouts_name_the_file_and_the_problem(roots, tmp_path):
    def show(root, dataset="miniimagenet"):
        return run_cli("-m", "metanas.cli", "tasks", "show", str(family(tmp_path, dataset, root)),
                       "--out", str(tmp_path / "x.png"), env={"METANAS_CACHE": str(tmp_path / "cache")})

    bad = tmp_path / "nokey" / "miniimagenet"
    shutil.copytree(roots / "pickles" / "miniimagenet", bad)
    with open(bad / "mini-imagenet-cache-val.pkl", "wb") as f:
        pickle.dump({"images": np.zeros((1, 84, 84, 3), np.uint8), "class_dict": {}}, f)
    one_line_exit_2(show(bad.parent), "mini-imagenet-cache-val.pkl", "image_data")

    small = tmp_path / "small" / "miniimagenet"
    write_mini_pickles(small, size=32)
    one_line_exit_2(show(small.parent), "mini-imagenet-cache-train.pkl", "(256, 32, 32, 3)", "[N, 84, 84, 3]")

    partial = tmp_path / "partial"
    shutil.copytree(roots / "cub", partial)
    gone = _all("cub")[-1]
    shutil.rmtree(partial / "CUB_200_2011" / "images" / gone)
    one_line_exit_2(show(partial, "cub"), "CUB-200-2011 test split are missing", gone)
    assert not (tmp_path / "x.png").exists()


def test_suite_follows_the_warm_starts_domain():
    from metanas.data.suites import suite_families

    colour = [n for n, _ in suite_families("shift", "miniimagenet-5way-1shot")]
    assert colour[0] == "miniimagenet-5way-1shot"
    assert {"miniimagenet-5way-1shot-shift-colour", "miniimagenet-5way-1shot-shift-quality", "cub-5way-1shot",
            "cifar-fs-5way-1shot", "tieredimagenet-5way-1shot"} <= set(colour)
    assert not any(n.startswith(("omniglot", "digits", "mnist")) for n in colour)
    assert "miniimagenet-cub-5way-1shot" not in colour  # the same tasks as cub-5way-1shot: evaluated once
    gray = [n for n, _ in suite_families("shift", "omniglot-5way")]
    assert "omniglot-5way-shift-blur" in gray and "digits-5way" in gray
    assert not any(load_family(n).channels == 3 for n in gray)


@pytest.mark.slow
def test_colour_family_end_to_end_through_the_cli(roots, tmp_path):
    """Meta-train on a colour family, adapt, export and predict through the real CLI; a warm start refuses
    a family of another channel count with one line."""
    env = {"METANAS_CACHE": str(tmp_path / "cache")}
    fam = family(tmp_path, "miniimagenet", roots / "pickles")
    out = tmp_path / "runs"
    res = run_cli("-m", "metanas.meta_train", "--config", "smoke", f"task.family={fam}", "task.queries=2",
                  f"run.output_dir={out}", "run.progress=false", env=env)
    assert res.returncode == 0, res.stderr
    run_id = next(line.split()[-1] for line in res.stdout.splitlines() if line.startswith("run id:"))
    from metanas.meta.warm_start import WarmStart

    warm = WarmStart.load(run_id, out)
    assert warm.image.channels == 3 and warm.image.mean is not None
    assert any(p.dim() == 4 and p.shape[1] == 3 for p in warm.model.parameters())  # the stem takes RGB

    res = run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--output-dir", str(out), "--task", str(fam),
                  "--tasks", "4", "--no-track", env=env)
    assert res.returncode == 0 and "accuracy" in res.stdout, res.stderr

    one_line_exit_2(run_cli("-m", "metanas.cli", "evaluate", "--run-id", run_id, "--output-dir", str(out),
                            "--task", "omniglot-5way", "--tasks", "2", "--no-track", env=env),
                    "3-channel images", "omniglot-5way has 1")

    support = tmp_path / "support"
    for c in range(5):
        write_jpegs(support / f"class{c}", 10 * c, n=1, size=40)
    queries = tmp_path / "queries"
    write_jpegs(queries, 20, n=2, size=40)
    model = tmp_path / "model"
    res = run_cli("-m", "metanas.cli", "export", "--run-id", run_id, "--output-dir", str(out), "--task", str(support),
                  "--out", str(model), "--no-track", env=env)
    assert res.returncode == 0, res.stderr
    meta = json.loads((model / "model.json").read_text())
    assert meta["image"]["channels"] == 3 and meta["image"]["mean"] == list(warm.image.mean)
    res = run_cli("-m", "metanas.cli", "predict", "--model", str(model), *map(str, sorted(queries.iterdir())), env=env)
    assert res.returncode == 0, res.stderr
    predicted = [line.split(" -> ")[1].split()[0] for line in res.stdout.splitlines()]
    assert len(predicted) == 2 and predicted[0] == "class2"  # the query has class2's colour


def test_decoded_colour_images_are_contiguous(tmp_path, monkeypatch):
    """A channels-last strided batch (np.stack of transposed views) crashed torch.func.grad's convolution
    backward (heap corruption): decoding must give plain [N, C, H, W] layouts."""
    from metanas.data.images import decode_classes

    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    write_jpegs(tmp_path / "a", 1, n=2, size=10)
    files = sorted((tmp_path / "a").iterdir())
    assert ImageFormat(3, 8).read(files).is_contiguous()
    assert decode_classes("t", tmp_path, [("a", files)], 8, channels=3).images.is_contiguous()


def test_the_data_root_is_read_at_each_load_not_cached_with_the_first(roots, tmp_path, monkeypatch):
    """A family without root: follows METANAS_DATA; the per-process data cache must not keep the first one."""
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    other = tmp_path / "other"
    shutil.copytree(roots / "cub", other)
    write_jpegs(other / "CUB_200_2011" / "images" / _all("cub")[0], 0, n=1, prefix="extra_")
    path = tmp_path / "cub.yaml"
    path.write_text("dataset: cub\nimage_size: 16\nqueries: 2\n")
    sizes = []
    for root in (roots / "cub", other):
        monkeypatch.setenv("METANAS_DATA", str(root))
        sizes.append(len(get_tasksets(load_family(str(path))).train.dataset.images))
    assert sizes[1] == sizes[0] + 1
