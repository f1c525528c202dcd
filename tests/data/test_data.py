"""Data layer: Omniglot reader/cache, task families, task transforms and sampler.

Real-data tests read Omniglot from $METANAS_DATA (../shared/data in CI) through the cache in
$METANAS_CACHE; reader tests build tiny fake omniglot-py trees in tmp_path.
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metanas.data import (
    ClassDataset, ConsecutiveLabels, KShots, LoadData, NWays, RemapLabels, TaskDataset,
    get_tasksets, list_families, load_family, load_omniglot, resolve_data_root,
)
from metanas.core.errors import MetanasError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def toy(classes=6, per_class=20):
    """A ClassDataset whose image i is filled with the value i, so a task's pixels name its source images."""
    n = classes * per_class
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, 4, 4).clone()
    images[:, 0, 0, 1] = 255  # a marker pixel, so a rotation is visible
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ClassDataset(images, labels, [f"c{i}" for i in range(classes)])


def pipeline(ds, ways, k):
    return [NWays(ds, ways), KShots(ds, k), LoadData(ds), RemapLabels(ds), ConsecutiveLabels(ds)]


def source_ids(x):
    """The toy image index behind each image in x [..., 1, 4, 4]: the value of a pixel off the marker."""
    return (x[..., 0, 3, 3] * 255).round().long()


# ---------- transforms, one at a time ----------

def test_nways_picks_n_distinct_classes_with_all_their_images():
    ds = toy()
    desc = NWays(ds, 3)(range(ds.num_classes), gen())
    classes = {c for c, _ in desc}
    assert len(classes) == 3 and len(desc) == 3 * 20
    assert all(ds.labels[i] == c for c, i in desc)


def test_nways_maps_rotated_class_ids_to_their_base_class():
    ds = toy()
    desc = NWays(ds, 4)(range(4 * ds.num_classes), gen(3))
    assert all(ds.labels[i] == c % ds.num_classes for c, i in desc)


def test_kshots_keeps_k_distinct_images_per_class_in_class_order():
    ds = toy()
    desc = [(c, i) for c in (4, 1) for i in ds.indices_per_class[c].tolist()]
    out = KShots(ds, 7)(desc, gen())
    assert [c for c, _ in out] == [4] * 7 + [1] * 7
    assert len({i for _, i in out}) == 14  # without replacement
    assert set(out) <= set(desc)


def test_kshots_rejects_more_images_than_a_class_has():
    ds = toy(per_class=5)
    with pytest.raises(MetanasError, match="only 5"):
        KShots(ds, 6)([(0, i) for i in range(5)], gen())


def test_loaddata_rotates_by_the_class_ids_quarter_turns():
    ds = toy()
    (c0, x0), (c1, x1) = LoadData(ds)([(2, 45), (ds.num_classes + 2, 45)], gen())
    assert torch.equal(x0, ds.images[45])
    assert torch.equal(x1, torch.rot90(ds.images[45], 1, (1, 2))) and not torch.equal(x1, x0)


def test_remaplabels_numbers_classes_by_first_appearance():
    out = RemapLabels(None)([(9, "a"), (3, "b"), (9, "c"), (7, "d")], gen())
    assert out == [(0, "a"), (1, "b"), (0, "c"), (2, "d")]


def test_consecutivelabels_sorts_stably_by_label():
    out = ConsecutiveLabels(None)([(1, "a"), (0, "b"), (1, "c"), (0, "d")], gen())
    assert out == [(0, "b"), (0, "d"), (1, "a"), (1, "c")]


# ---------- TaskDataset on the toy set ----------

def test_task_is_class_major_with_disjoint_support_and_query():
    ds = toy()
    task = TaskDataset(ds, pipeline(ds, 3, 2 + 4), shots=2, queries=4).sample(gen())
    assert task.support_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert task.query_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    sup, qry = source_ids(task.support_x), source_ids(task.query_x)
    assert not set(sup.tolist()) & set(qry.tolist())
    # every image of label j comes from the same underlying class
    for j in range(3):
        assert len(set(ds.labels[sup[task.support_y == j]].tolist() + ds.labels[qry[task.query_y == j]].tolist())) == 1


def test_taskdataset_rejects_a_pipeline_that_is_not_class_major():
    ds = toy()
    broken = [NWays(ds, 3), KShots(ds, 3), LoadData(ds)]  # class ids, not labels 0..N-1
    with pytest.raises(MetanasError, match="class-major"):
        TaskDataset(ds, broken, shots=1, queries=2).sample(gen())


def test_rotations_multiply_classes_and_rotate_images():
    ds = toy(classes=3)
    tasks = TaskDataset(ds, pipeline(ds, 3, 2), shots=1, queries=1, rotations=True)
    assert tasks.num_classes == 12
    marker_at = set()
    for seed in range(10):
        x = tasks.sample(gen(seed)).support_x[:, 0]
        marker_at |= {tuple(p) for p in (x == 1).nonzero()[:, 1:].tolist()}
    # the marker pixel (0, 1) lands on all four rotated positions of a 4x4 image
    assert marker_at == {(0, 1), (2, 0), (3, 2), (1, 3)}


# ---------- real Omniglot ----------

@pytest.fixture(scope="module")
def lake():
    return get_tasksets(load_family("omniglot-5way"))


@pytest.fixture(scope="module")
def vinyals():
    return get_tasksets(load_family("omniglot-5way-vinyals"))


def test_omniglot_images_are_inverted_and_resized():
    data = load_omniglot(resolve_data_root(None))
    assert data.images.shape == (32460, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.num_classes == 1623 and data.class_names[0].startswith("images_background/")
    assert data.images.float().mean() < 40  # mostly background, which must be 0 (strokes are 255)


def test_5way_1shot_shapes_and_dtypes(lake):
    batch = lake.train.sample_batch(4, gen())
    assert batch.support_x.shape == (4, 5, 1, 28, 28) and batch.support_x.dtype == torch.float32
    assert batch.query_x.shape == (4, 75, 1, 28, 28)
    assert batch.support_y.dtype == torch.int64 and batch.support_y[0].tolist() == [0, 1, 2, 3, 4]
    assert batch.query_y[0].tolist() == [j for j in range(5) for _ in range(15)]
    assert 0 <= batch.query_x.min() and batch.query_x.max() <= 1 and batch.query_x.max() > 0.5


def test_overrides_change_ways_shots_queries():
    tasks = get_tasksets(load_family("omniglot-5way"), ways=20, shots=5, queries=3).test
    task = tasks.sample(gen())
    assert task.support_x.shape == (100, 1, 28, 28) and task.query_x.shape == (60, 1, 28, 28)


def test_real_support_and_query_share_no_image(lake):
    task = lake.validation.sample(gen(5))
    sup = {x.numpy().tobytes() for x in task.support_x}
    assert not any(x.numpy().tobytes() in sup for x in task.query_x)


def test_same_seed_same_task_other_seed_other_task(lake):
    a, b, c = (lake.train.sample(gen(s)) for s in (7, 7, 8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.support_x, c.support_x)


def test_lake_split_is_disjoint_and_tests_on_the_evaluation_alphabets(lake):
    names = [set(ts.dataset.class_names) for ts in lake]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    alphabets = [{n.split("/")[1] for n in s} for s in names]
    assert len(alphabets[0]) == 25 and len(alphabets[1]) == 5 and not alphabets[0] & alphabets[1]
    evaluation = Path(resolve_data_root(None), "omniglot-py", "images_evaluation")
    assert all(n.startswith("images_evaluation/") for n in names[2])
    assert alphabets[2] == set(os.listdir(evaluation)) and len(alphabets[2]) == 20


def test_vinyals_split_is_disjoint_and_covers_every_character(vinyals):
    names = [set(ts.dataset.class_names) for ts in vinyals]
    assert [len(s) for s in names] == [1100, 100, 423]
    assert len(names[0] | names[1] | names[2]) == 1623
    assert [ts.num_classes for ts in vinyals] == [4400, 400, 1692]


def _image_keys(images):
    """Byte strings of uint8 images [M, 1, H, W] in all four quarter turns (Vinyals tasks rotate classes)."""
    return {im.tobytes() for q in range(4) for im in torch.rot90(images[:, 0], q, dims=(1, 2)).contiguous().numpy()}


def _task_keys(task):
    x = torch.cat([task.support_x, task.query_x])[:, 0]
    return [im.tobytes() for im in (x * 255).round().to(torch.uint8).numpy()]


@pytest.mark.parametrize("name", ["omniglot-5way", "omniglot-5way-vinyals"])
def test_no_meta_train_class_appears_in_a_validation_or_test_task(name):
    # End to end over the sampler, not just the class lists: no image a learner sees in a validation or
    # test task is (in any rotation) an image of a meta-train class.
    sets = get_tasksets(load_family(name))
    train = _image_keys(sets.train.dataset.images)
    g = gen(11)
    assert all(k in train for k in _task_keys(sets.train.sample(g)))  # the check can see a train image
    for split in (sets.validation, sets.test):
        for _ in range(60):
            assert not any(k in train for k in _task_keys(split.sample(g))), split
    held_out = {n for ts in sets[1:] for n in ts.dataset.class_names}
    assert not held_out & set(sets.train.dataset.class_names)


def test_custom_and_test_only_splits_keep_meta_train_classes_out(tmp_path):
    path = tmp_path / "digits-custom.yaml"
    path.write_text("dataset: digits\nsplit: custom\nways: 2\nqueries: 5\n"
                    "classes: {train: [0, 1, 2, 3], validation: [4, 5, 6], test: [7, 8, 9]}\n")
    sets = get_tasksets(load_family(str(path)))
    names = [set(ts.dataset.class_names) for ts in sets]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    digit_of = {}  # image bytes -> the classes holding that image (all 1,797 digits are distinct)
    for ts in sets:
        for im, label in zip(ts.dataset.images, ts.dataset.labels):
            digit_of.setdefault(im.numpy().tobytes(), set()).add(ts.dataset.class_names[label])
    g = gen(0)
    for split in sets[1:]:
        for _ in range(50):
            assert not any(digit_of[k] & names[0] for k in _task_keys(split.sample(g)))
    test_only = get_tasksets(load_family("digits-5way"))
    assert test_only.train is None and test_only.validation is None  # split: all has no meta-train classes


def test_too_many_ways_names_the_split():
    with pytest.raises(MetanasError, match=r"validation split\) asks for 500 ways but has only 177"):
        get_tasksets(load_family("omniglot-5way"), ways=500)


def test_too_many_shots_and_queries():
    with pytest.raises(MetanasError, match="10 shots \\+ 15 queries = 25 .* only 20"):
        get_tasksets(load_family("omniglot-5way"), shots=10)


def test_invalid_override():
    with pytest.raises(MetanasError, match="ways must be an integer >= 1"):
        get_tasksets(load_family("omniglot-5way"), ways=0)


# ---------- task families ----------

def test_families_load():
    assert {"omniglot-5way", "omniglot-5way-5shot", "omniglot-20way", "omniglot-5way-vinyals"} <= set(list_families())
    fam = load_family("omniglot-20way")
    assert (fam.ways, fam.shots, fam.queries, fam.split) == (20, 1, 5, "lake") and fam.description
    assert load_family("omniglot-5way-vinyals").rotations


def test_builtin_families_are_found_from_any_directory_and_tasks_shadows_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: the families come from the package data
    assert {"omniglot-5way", "digits-5way"} <= set(list_families())
    assert load_family("omniglot-5way").ways == 5
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "omniglot-5way.yaml").write_text("ways: 3\n")
    (tmp_path / "tasks" / "mine.yaml").write_text("dataset: imagefolder\nsplit: all\nroot: pics\n")
    assert load_family("omniglot-5way").ways == 3  # ./tasks first
    assert "mine" in list_families()
    assert load_family("mine").root == str(tmp_path / "tasks" / "pics")  # relative to its YAML, not the cwd


def test_no_task_families_at_all_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from metanas import cli
    from metanas.data import families

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(families, "builtin_tasks_dir", lambda: tmp_path / "not-installed")  # a wheel without its data
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tasks"])
    assert exit_.value.code == 2 and "no task families found" in capsys.readouterr().err
    with pytest.raises(MetanasError, match="unknown task family 'omniglot-5way'.*known families: none"):
        load_family("omniglot-5way")


def test_unknown_family_lists_known_ones():
    with pytest.raises(MetanasError) as err:
        load_family("omniglot-5wya")
    assert "did you mean omniglot-5way?" in str(err.value) and "omniglot-20way" in str(err.value)


@pytest.mark.parametrize("text, match", [
    ("ways: [5,\n", "malformed YAML"),
    ("ways: 5\nwayz: 3\n", "unknown key 'wayz'"),
    ("ways: 0\n", "ways must be an integer >= 1"),
    ("split: random\n", "unknown split 'random'"),
    ("- 5\n", "must be a mapping"),
    # mixtures
    ("dataset: mixture\n", "needs sources"),
    ("dataset: mixture\nsources: [omniglot-5wya]\n", "did you mean omniglot-5way"),
    ("dataset: mixture\nsources: [{family: fonts-5way, weight: 0}]\n", "weight must be a number > 0"),
    ("dataset: mixture\nsources: [digits-5way]\n", "no meta-train and validation classes"),
    ("dataset: mixture\nsources: [fonts-5way, miniimagenet-5way-1shot]\n", "must share the image format"),
    ("dataset: mixture\nsources: [fonts-5way]\nvalidation_sources: [digits-5way]\n", "has no validation split"),
    ("dataset: mixture\nsources: [fonts-5way, fonts-5way]\n", "listed twice"),
    ("dataset: mixture\nsources: [fonts-5way]\nshifts: [blur]\n", "set per source"),
    ("dataset: omniglot\nsources: [fonts-5way]\n", "go with dataset: mixture"),
])
def test_bad_family_file_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MetanasError, match=match) as err:
        load_family(str(path))
    assert str(path) in str(err.value)


# ---------- data root and reader ----------

def test_missing_data_root_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("METANAS_DATA", str(tmp_path))
    with pytest.raises(MetanasError) as err:
        resolve_data_root(None)
    assert str(tmp_path) in str(err.value) and "METANAS_DATA" in str(err.value) and "--data-root" in str(err.value)
    # an explicit root wins over the environment
    with pytest.raises(MetanasError, match="nowhere"):
        resolve_data_root(str(tmp_path / "nowhere"))


def fake_tree(root, chars=2, per_char=3):
    """A tiny omniglot-py tree of 1-bit PNGs (True = background) with one stroke pixel per image."""
    for half in ("images_background", "images_evaluation"):
        for c in range(chars):
            char_dir = root / "omniglot-py" / half / "Alpha" / f"character{c + 1:02d}"
            char_dir.mkdir(parents=True)
            for i in range(per_char):
                im = np.ones((105, 105), dtype=bool)
                im[10:40, 10 + i:50 + i] = False
                Image.fromarray(im).save(char_dir / f"{c:04d}_{i + 1:02d}.png")
    return root


def test_reader_caches_and_rebuilds_a_corrupt_or_stale_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    root = fake_tree(tmp_path / "data")
    first = load_omniglot(root, image_size=14)
    assert first.images.shape == (12, 1, 14, 14) and first.num_classes == 4
    assert first.images[0, 0, 3, 3] > 200 and first.images[0, 0, 12, 12] == 0  # strokes high, background 0
    [cache] = (tmp_path / "cache").iterdir()
    cache.write_bytes(b"garbage")
    again = load_omniglot(root, image_size=14)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert cache.stat().st_size > 1000  # rewritten
    # a new file makes the cached count stale
    Image.fromarray(np.ones((105, 105), dtype=bool)).save(
        root / "omniglot-py/images_background/Alpha/character01/0000_04.png")
    assert len(load_omniglot(root, image_size=14).images) == 13


def test_corrupt_png_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    root = fake_tree(tmp_path / "data")
    bad = root / "omniglot-py/images_evaluation/Alpha/character02/0001_02.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MetanasError, match=re.escape(f"cannot decode {bad}: ") + ".*delete or replace"):
        load_omniglot(root)
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written is left behind
