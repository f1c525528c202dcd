"""Shifted task families: the shift registry, per-task domains, other data sets, held-out families, `tasks show`.

Shifts run on real Omniglot images; digits is scikit-learn's real set; ImageFolder and torchvision sets
are read from small files the tests write (no network).
"""

import struct

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from metanas.data import (
    SHIFTS, ClassDataset, ConsecutiveLabels, KShots, LoadData, NWays, RemapLabels, Shift, TaskDataset, TaskShift,
    check_trainable, get_tasksets, list_families, load_family,
)
from metanas.data.datasets import from_torchvision
from metanas.data.shifts import COLOUR_SHIFTS
from metanas.core.errors import MetanasError

GRAY = [name for name in SHIFTS if name not in COLOUR_SHIFTS]  # the colour ones: tests/test_colour.py
SHIFTED = [name for name in GRAY if name != "clean"]
# shifts whose every random draw is a per-task parameter (noise also draws per pixel)
DETERMINISTIC_PER_TASK = [name for name in SHIFTED if name != "noise"]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def images():
    """10 real Omniglot images [10, 1, 28, 28] in [0, 1] (one 5-way task's support and first queries)."""
    task = get_tasksets(load_family("omniglot-5way")).test.sample(gen())
    return torch.cat([task.support_x, task.query_x[::15]])


def write_yaml(path, text):
    path.write_text(text)
    return str(path)


# ---------- the shift registry ----------

@pytest.mark.parametrize("name", SHIFTED)
def test_each_shift_changes_the_image_and_stays_in_range(images, name):
    out = SHIFTS[name](images.clone(), 1.0, gen(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert 0 <= out.min() and out.max() <= 1
    assert (out - images).abs().mean() > 0.01, name


@pytest.mark.parametrize("name", GRAY)
def test_severity_zero_is_the_identity(images, name):
    torch.testing.assert_close(SHIFTS[name](images.clone(), 0.0, gen(1)), images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["blur", "dilate", "erode", "noise", "elastic"])
def test_higher_severity_moves_the_image_further(images, name):
    dist = [(SHIFTS[name](images.clone(), s, gen(1)) - images).abs().mean().item() for s in (0.25, 0.5, 1.0)]
    assert dist[0] < dist[1] < dist[2], dist


@pytest.mark.parametrize("name", SHIFTED)
def test_same_seed_same_shift(images, name):
    a = SHIFTS[name](images.clone(), 0.8, gen(3))
    b = SHIFTS[name](images.clone(), 0.8, gen(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["rotation", "scale_translate", "elastic", "noise", "invert"])
def test_the_random_parameters_vary_across_tasks(images, name):
    outs = {SHIFTS[name](images.clone(), 0.5, gen(seed)).numpy().tobytes() for seed in range(10)}
    assert len(outs) >= 2


@pytest.mark.parametrize("name", DETERMINISTIC_PER_TASK)
def test_all_images_of_a_call_share_one_shift(images, name):
    # identical inputs stay identical: the angle / field / zoom is drawn once, not per image
    same = images[:1].expand(6, -1, -1, -1).clone()
    for seed in range(3):
        out = SHIFTS[name](same, 1.0, gen(seed))
        assert torch.equal(out, out[:1].expand_as(out)), name


def test_rotation_turns_about_the_centre_by_one_angle_per_task():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 13:15, 21:23] = 1  # a dot 8 px right of the centre (13.5, 13.5)
    angles = []
    for seed in range(20):
        out = SHIFTS["rotation"](x, 1.0, gen(seed))[0, 0]
        ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        cy, cx = (out * ys).sum() / out.sum() - 13.5, (out * xs).sum() / out.sum() - 13.5
        assert abs(torch.hypot(cy, cx) - 8) < 0.5  # stays on its circle
        assert abs(out.sum() - x.sum()) < 0.5  # keeps its ink
        angles.append(torch.atan2(cy, cx).rad2deg().item())
    # severity 1: arbitrary angles, both directions, far beyond quarter turns
    assert min(angles) < -90 and max(angles) > 90 and len({round(a) for a in angles}) > 15


def test_invert_severity_is_the_share_of_inverted_tasks(images):
    inverted = [SHIFTS["invert"](images, 0.3, gen(s)).mean() > 0.5 for s in range(400)]
    assert 0.22 < sum(inverted) / 400 < 0.38


def test_taskshift_draws_one_entry_per_task_or_composes_all(images):
    one = TaskShift((Shift("clean"), Shift("invert", 1.0)))
    inverted = [one(images, gen(s)).mean() > 0.5 for s in range(200)]
    assert 0.35 < sum(inverted) / 200 < 0.65
    both = TaskShift((Shift("invert", 1.0), Shift("invert", 1.0)), compose=True)
    torch.testing.assert_close(both(images, gen()), images)  # inverted twice
    torch.testing.assert_close(TaskShift((Shift("blur", 1.0), Shift("invert", 1.0)), compose=True)(images, gen()),
                               1 - SHIFTS["blur"](images, 1.0, gen()))  # applied in list order


# ---------- shifts inside the task sampler ----------

def test_support_and_query_share_the_task_shift(images):
    # every image of the data set is the same picture: any per-image shift would make them differ
    picture = (images[0, 0] * 255).round().to(torch.uint8)
    ds = ClassDataset(picture.expand(40, 1, 28, 28).clone(), torch.arange(4).repeat_interleave(10),
                      ["a", "b", "c", "d"])
    pipeline = [NWays(ds, 3), KShots(ds, 6), LoadData(ds), RemapLabels(ds), ConsecutiveLabels(ds)]
    shift = TaskShift((Shift("rotation", 1.0), Shift("elastic", 1.0), Shift("scale_translate", 1.0)))
    tasks = TaskDataset(ds, pipeline, shots=2, queries=4, shift=shift)
    clean = TaskDataset(ds, pipeline, shots=2, queries=4).sample(gen()).support_x[0]
    for seed in range(5):
        t = tasks.sample(gen(seed))
        x = torch.cat([t.support_x, t.query_x])
        assert torch.equal(x, x[:1].expand_as(x))
        assert not torch.allclose(x[0], clean, atol=1e-3)


def test_shifted_family_is_reproducible_and_shifts_its_tasks():
    sets = get_tasksets(load_family("omniglot-5way-shift-train"))
    plain = get_tasksets(load_family("omniglot-5way"))
    a, b = sets.train.sample(gen(4)), sets.train.sample(gen(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    changed = 0
    for seed in range(12):
        shifted, clean = sets.validation.sample(gen(seed)), plain.validation.sample(gen(seed))
        assert torch.equal(shifted.support_y, clean.support_y)
        changed += not torch.allclose(shifted.support_x, clean.support_x)
    assert 3 <= changed <= 11  # clean | rotation | noise, one per task: about 2 in 3 tasks are shifted


def test_unshifted_families_draw_the_same_tasks_as_before():
    # no shift = no extra generator draws: existing seeds, checkpoints and resumes keep their tasks
    fam = load_family("omniglot-5way")
    assert fam.shifts == () and get_tasksets(fam).train.shift is None


@pytest.mark.parametrize("text, match", [
    ("shifts: [rotaton]\n", "unknown shift 'rotaton'; did you mean rotation"),
    ("shifts: [{name: blur, severity: 2}]\n", "between 0 and 1"),
    ("shifts: [{name: blur, sevrity: 1}]\n", "bad shift entry"),
    ("shifts: blur\n", "must be a list"),
    ("held_out: maybe\n", "held_out must be true or false"),
    ("dataset: digits\nsplit: lake\n", "Omniglot split"),
    ("dataset: imagefolder\n", "needs root"),
    ("dataset: digits\nsplit: custom\n", "split: custom goes with classes"),
    ("dataset: digits\nsplit: custom\nclasses: {train: [1, 2], test: [2]}\n", "'2' is in classes.train and classes.test"),
])
def test_bad_shift_or_dataset_keys_are_named(tmp_path, text, match):
    path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(MetanasError, match=match) as err:
        load_family(path)
    assert path in str(err.value)


# ---------- held-out families ----------

def test_shipped_held_out_families_use_only_shifts_unseen_in_meta_training():
    train = load_family("omniglot-5way-shift-train")
    check_trainable(train)
    seen = {s.name for s in train.shifts} - {"clean"}
    held = [load_family(n) for n in ("omniglot-5way-shift-blur", "omniglot-5way-shift-elastic",
                                     "omniglot-5way-shift-invert", "omniglot-5way-shift-mixed")]
    for fam in held:
        assert fam.held_out and fam.shifts and not seen & {s.name for s in fam.shifts}, fam.name
        with pytest.raises(MetanasError, match="held out"):
            check_trainable(fam)
    assert {s.name for s in held[-1].shifts} >= {"blur", "elastic", "invert"}


def test_every_family_is_either_trainable_or_refused_with_a_reason():
    for name in list_families():
        fam = load_family(name)
        reason = fam.untrainable_reason()
        assert (reason is None) == (not fam.held_out and fam.split in ("lake", "vinyals", "standard", "custom", "sources")), name


def test_meta_training_refuses_a_held_out_family(tmp_path):
    out = run_cli("-m", "metanas.meta_train", "task.family=omniglot-5way-shift-blur", f"run.output_dir={tmp_path}",
                  "run.progress=false", timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "is held out" in lines[0] and "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())  # refused before the MLflow run or a checkpoint exists


def test_meta_training_refuses_a_test_only_family(tmp_path, capsys):
    from metanas import meta_train

    with pytest.raises(SystemExit) as exit_:
        meta_train.main(["task.family=digits-5way", f"run.output_dir={tmp_path}", "run.progress=false"])
    assert exit_.value.code == 2
    assert "no meta-train and validation classes" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ---------- other data sets ----------

def test_digits_family_is_test_only_and_samples_5way_tasks():
    sets = get_tasksets(load_family("digits-5way"))
    assert sets.train is None and sets.validation is None
    assert sets.test.num_classes == 10 and len(sets.test.dataset.images) == 1797
    task = sets.test.sample(gen())
    assert task.support_x.shape == (5, 1, 28, 28) and task.query_x.shape == (75, 1, 28, 28)
    assert task.support_y.tolist() == [0, 1, 2, 3, 4]
    border = torch.cat([task.query_x[..., :2].flatten(), task.query_x[..., -2:].flatten()])  # side columns
    assert border.mean() < 0.1 and task.query_x.max() > 0.9  # strokes high, background low, like Omniglot


def test_digits_custom_split_can_be_meta_trained_and_stays_disjoint(tmp_path):
    fam = load_family(write_yaml(tmp_path / "digits-2way.yaml", (
        "dataset: digits\nsplit: custom\nways: 2\nshots: 1\nqueries: 5\n"
        "classes: {train: [0, 1, 2, 3, 4], validation: [5, 6], test: [7, 8, 9]}\n")))
    check_trainable(fam)
    sets = get_tasksets(fam)
    assert [ts.dataset.class_names for ts in sets] == [["0", "1", "2", "3", "4"], ["5", "6"], ["7", "8", "9"]]
    bad = write_yaml(tmp_path / "bad.yaml", "dataset: digits\nsplit: custom\nclasses: {train: [0], test: [ten]}\n")
    with pytest.raises(MetanasError, match="class 'ten' of classes: is not in the digits data"):
        get_tasksets(load_family(bad))


def test_imagefolder_family_from_a_folder_of_pngs(tmp_path):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "owl"]):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            im = np.full((30, 20, 3), 255, dtype=np.uint8)  # dark ink on white, RGB, not square
            im[5 + c * 5: 12 + c * 5, 3:17] = rng.integers(0, 40)
            Image.fromarray(im).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "data" / "notes.txt").write_text("not a class")
    (tmp_path / "data" / "cat" / "README").write_text("not an image")
    fam = load_family(write_yaml(tmp_path / "mine.yaml", (
        "dataset: imagefolder\nroot: data\ninvert: true\nways: 3\nshots: 1\nqueries: 2\nimage_size: 14\n")))
    assert fam.root == str((tmp_path / "data").resolve())  # relative to the YAML file
    sets = get_tasksets(fam)
    assert sets.train is None and sets.test.dataset.class_names == ["cat", "dog", "owl"]
    assert tuple(sets.test.dataset.images.shape) == (12, 1, 14, 14)
    task = sets.test.sample(gen())
    assert task.support_x.shape == (3, 1, 14, 14) and task.query_x.shape == (6, 1, 14, 14)
    assert task.support_x[:, 0, 0, 0].max() < 0.05 and task.support_x.max() > 0.8  # inverted: ink high

    (tmp_path / "data" / "cat" / "3.png").write_bytes(b"not a png")
    with pytest.raises(MetanasError, match="cannot decode .*3.png"):
        get_tasksets(load_family(write_yaml(tmp_path / "mine2.yaml", "dataset: imagefolder\nroot: data\n")))
    with pytest.raises(MetanasError, match="image folder .*nowhere not found"):
        get_tasksets(load_family(write_yaml(tmp_path / "mine3.yaml", "dataset: imagefolder\nroot: nowhere\n")))


class FakeMNIST:
    """The interface of torchvision's MNIST-style sets that metanas reads."""

    def __init__(self, n=60, classes=("zero", "one", "two", "three")):
        self.classes = list(classes)
        self.targets = torch.arange(n) % len(classes)
        self.data = torch.zeros(n, 28, 28, dtype=torch.uint8)
        for i, t in enumerate(self.targets.tolist()):  # a bar whose row and half encode the class
            self.data[i, 4 + (t % 5) * 5: 8 + (t % 5) * 5, 4 + (t // 5 % 2) * 10: 14 + (t // 5 % 2) * 10] = 255


def test_torchvision_style_set_converts_to_a_class_dataset():
    data = from_torchvision(FakeMNIST(), image_size=14)
    assert data.class_names == ["zero", "one", "two", "three"] and data.images.shape == (60, 1, 14, 14)
    assert data.images.dtype == torch.uint8 and torch.bincount(data.labels).tolist() == [15] * 4
    fake = FakeMNIST()
    fake.classes = ["a", "b", "c", "d", "e"]  # "e" has no image: labels stay dense, no empty class
    assert from_torchvision(fake).class_names == ["a", "b", "c", "d"]


def _write_idx(path, array: np.ndarray):
    path.write_bytes(struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


def test_mnist_family_reads_torchvision_files_from_its_root(tmp_path):
    # torchvision's own reader on tiny idx files in its layout: the code path a real download takes
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    fake = FakeMNIST(n=100, classes=[str(d) for d in range(10)])
    for part in ("train", "t10k"):
        _write_idx(raw / f"{part}-images-idx3-ubyte", fake.data.numpy())
        _write_idx(raw / f"{part}-labels-idx1-ubyte", fake.targets.numpy())
    fam = load_family(write_yaml(tmp_path / "m.yaml", "dataset: mnist\nroot: mnist\nqueries: 5\n"))
    test = get_tasksets(fam).test
    import torchvision

    assert test.num_classes == 10 and test.dataset.class_names == torchvision.datasets.MNIST.classes
    assert torch.equal(test.dataset.images[:, 0], fake.data[torch.argsort(fake.targets, stable=True)])  # class-major
    assert test.sample(gen()).support_x.shape == (5, 1, 28, 28)


def test_missing_torchvision_set_says_how_to_provide_it(tmp_path, monkeypatch):
    import torchvision

    def offline(self):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets.KMNIST, "download", offline)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fam = load_family(write_yaml(tmp_path / "k.yaml", "dataset: kmnist\nroot: nowhere\n"))
    with pytest.raises(MetanasError, match=r"KMNIST not found under .*nowhere.*download failed .*root: DIR"):
        get_tasksets(fam)


# ---------- metanas tasks ----------

def test_tasks_lists_dataset_split_shift_and_held_out(capsys):
    from metanas import cli

    cli.main(["tasks"])
    header, *rows = capsys.readouterr().out.splitlines()
    assert all(col in header for col in ("dataset", "split", "ways", "shots", "shift", "held-out"))
    row = {line.split()[0]: line.split() for line in rows}
    assert row["omniglot-5way-shift-train"][9:11] == ["clean|rotation:1|noise:0.5", "no"]
    assert row["omniglot-5way-shift-blur"][9:11] == ["blur:1", "yes"]
    assert row["digits-5way"][1:3] == ["digits", "all"] and row["digits-5way"][11] == "test-only"


def test_tasks_show_writes_a_png(tmp_path, capsys):
    png = tmp_path / "task.png"
    out = run_cli("-m", "metanas.cli", "tasks", "show", "omniglot-5way-shift-mixed", "--out", str(png),
                  "--seed", "3", timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.width > 300 and im.height > 400

    from metanas import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["tasks", "show", "digits-5way", "--split", "train", "--out", str(tmp_path / "no.png")])
    assert exit_.value.code == 2 and "has no train classes" in capsys.readouterr().err
    assert not (tmp_path / "no.png").exists()
