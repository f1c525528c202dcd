"""Mixture task families: weighted sources, every task from one source, validation on every domain (held-out sources too),
leave-one-domain-out, and the domains suite."""

import pytest
import torch

from metanas.data import MixtureTaskDataset, get_tasksets, load_dataset, load_family
from metanas.data.suites import role, suite_families
from metanas.core.errors import MetanasError

MIXTURE = """dataset: mixture
sources:
  - {family: omniglot-5way, weight: 3}
  - {family: fonts-5way, weight: 1}
validation_sources: [omniglot-5way-shift-val]
"""


@pytest.fixture
def mixture(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text(MIXTURE)
    return load_family(str(path))


def _pixels(family, split):
    """The set of images (uint8 bytes) of one split of a family."""
    from metanas.data.splits import class_splits

    data = load_dataset(family)
    ids = class_splits(family, data)[split]
    return {data.images[i].numpy().tobytes() for c in ids for i in data.indices_per_class[c].tolist()}


def test_every_task_comes_from_one_source_with_the_listed_weights(mixture):
    sets = get_tasksets(mixture, queries=2)
    assert isinstance(sets.train, MixtureTaskDataset) and sets.train.names == ["omniglot-5way", "fonts-5way"]
    assert sets.train.probabilities == [0.75, 0.25]
    pixels = [_pixels(load_family(n), 0) for n in sets.train.names]
    g, sources = torch.Generator().manual_seed(0), []
    for _ in range(40):
        i, task = sets.train.sample_source(g)
        images = torch.cat([task.support_x, task.query_x])
        keys = [(x * 255).round().to(torch.uint8).numpy().tobytes() for x in images]
        assert all(k in pixels[i] for k in keys), f"a task of source {i} holds an image of another source"
        sources.append(i)
    assert 0 < sum(sources) < 20  # both sources drawn, fonts about a quarter of the time
    many = [sets.train.sample_source(g)[0] for _ in range(400)]
    assert abs(sum(many) / 400 - 0.25) < 0.06


def test_the_same_seed_draws_the_same_sources_and_tasks(mixture):
    sets = get_tasksets(mixture, queries=2)
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(10):
        (i, t), (j, u) = sets.train.sample_source(a), sets.train.sample_source(b)
        assert i == j and all(torch.equal(x, y) for x, y in zip(t, u))


def test_validation_is_on_every_domain_and_leave_out_drops_a_domain(mixture):
    sets = get_tasksets(mixture, queries=2)
    assert sets.test.names == ["omniglot-5way", "fonts-5way"]
    # validation: every domain alike, the sources' new classes and the held-out source's new domain
    assert sets.validation.names == ["omniglot-5way", "fonts-5way", "omniglot-5way-shift-val"]
    assert sets.validation.probabilities == pytest.approx([1 / 3] * 3)
    lodo = get_tasksets(mixture, queries=2, leave_out=["fonts-5way"])
    assert lodo.train.names == ["omniglot-5way"] and lodo.test.names == ["omniglot-5way"]
    assert lodo.validation.names == ["omniglot-5way", "omniglot-5way-shift-val"]  # a left-out source never validates
    with pytest.raises(MetanasError, match="not a source of mix.*did you mean fonts-5way"):
        get_tasksets(mixture, leave_out=["fonts-5wya"])
    with pytest.raises(MetanasError, match="no source to meta-train on"):
        get_tasksets(mixture, leave_out=["omniglot-5way", "fonts-5way"])
    with pytest.raises(MetanasError, match="for mixture families"):
        get_tasksets(load_family("omniglot-5way"), leave_out=["fonts-5way"])


def test_roles_and_the_domains_suite():
    home = load_family("omniglot-fonts-5way")
    assert role(load_family("fonts-5way"), home) == "trained"
    assert role(load_family("fonts-5way"), home, ["fonts-5way"]) == "left out"
    assert role(load_family("omniglot-5way"), home) == "in distribution"  # clean Omniglot: part of shift-train
    assert role(load_family("omniglot-5way-shift-val"), home) == "validation"
    assert role(load_family("omniglot-5way-shift-blur"), home) == "held out"
    suite = dict(suite_families("domains", "omniglot-fonts-5way", ["fonts-5way"]))
    assert list(suite)[:4] == ["omniglot-5way-shift-train", "fonts-5way", "omniglot-5way-shift-val", "omniglot-5way"]
    assert suite["fonts-5way"] == "left out" and suite["digits-5way"] == "held out"
    assert {"omniglot-5way-shift-blur", "omniglot-5way-shift-invert"} <= set(suite)
    assert not any(load_family(n).dataset == "mixture" for n in suite)
    with pytest.raises(MetanasError, match="unknown suite"):
        suite_families("domain", "omniglot-5way")


def test_the_three_source_mixture_left_without_fonts_trains_on_two_kinds_of_image():
    home = load_family("omniglot-glyphs-fonts-5way")
    lodo = get_tasksets(home, queries=2, leave_out=["fonts-5way"])
    assert lodo.train.names == ["omniglot-5way-shift-train", "glyphs-5way"] and lodo.train.probabilities == [0.5, 0.5]
    assert lodo.validation.names == [*lodo.train.names, "omniglot-5way-shift-val"] and lodo.test.names == lodo.train.names
    assert role(load_family("fonts-5way"), home, ["fonts-5way"]) == "left out"
    assert role(load_family("glyphs-5way"), home, ["fonts-5way"]) == "trained"


@pytest.mark.slow
def test_leave_one_domain_out_through_the_cli(tmp_path):
    """Meta-train on the mixture without fonts (real subprocess), then evaluate --suite domains: fonts is a row
    marked left out, the trained source and the held-out shifts are rows, and the table is logged to MLflow."""
    from conftest import client, run_cli

    # its own output dir: a checkpoint in the shared one would become "the newest" that later CLI tests adapt
    out = run_cli("-m", "metanas.meta_train", "--config", "configs/smoke.yaml", "task.family=omniglot-fonts-5way",
                  "task.leave_out=[fonts-5way]", "search.space=chain", "search.widths=[4,8]", "search.channels=8",
                  "meta.iterations=2", f"run.output_dir={tmp_path}", "run.progress=false")
    assert out.returncode == 0, out.stderr
    run_id = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("run id:"))
    ev = run_cli("-m", "metanas.cli", "evaluate", "--suite", "domains", "--run-id", run_id, "--tasks", "3",
                 "--paired", "--output-dir", str(tmp_path))
    assert ev.returncode == 0, ev.stderr
    table = [line for line in ev.stdout.splitlines() if line.startswith("| ")]
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in table[1:])}
    assert rows["fonts-5way"][1] == "left out" and "±" in rows["fonts-5way"][2]
    assert rows["omniglot-5way-shift-train"][1] == "trained"
    assert rows["omniglot-5way-shift-val"][1] == "validation"
    assert rows["omniglot-5way-shift-blur"][1] == "held out" and "±" in rows["omniglot-5way-shift-blur"][4]
    run = client(tmp_path).get_run(ev.stdout.splitlines()[-1].split()[-1])
    assert "suite/fonts-5way/accuracy" in run.data.metrics and "suite/fonts-5way/paired_gain" in run.data.metrics


def test_evaluating_a_mixture_leaves_out_what_the_run_left_out(tmp_path, monkeypatch):
    """A leave-one-domain-out warm start evaluated on its own mixture family draws no task of the left-out source."""
    import metanas.estimation.warm
    from metanas import api
    from metanas.config import load_config
    from metanas.training.loop import train

    cfg = load_config(None, ["task.family=omniglot-fonts-5way", "task.leave_out=[fonts-5way]", "search.widths=[4,8]",
                             "inner.select_steps=[]", "inner.select_lr_alpha=[]",
                             "search.channels=8", "meta.iterations=1", "meta.test_tasks=2", "meta.eval_tasks=2",
                             f"run.output_dir={tmp_path}", "run.progress=false"])
    warm = api.load(str(train(cfg).checkpoint))
    test_sets = []
    real = metanas.estimation.warm.get_tasksets

    def spy(*args, **kwargs):
        sets = real(*args, **kwargs)
        test_sets.append(sets.test)
        return sets

    monkeypatch.setattr(metanas.estimation.warm, "get_tasksets", spy)
    api.evaluate(warm, "omniglot-fonts-5way", 2, seed=0, curve=False)
    assert [s.names for s in test_sets] == [["omniglot-5way-shift-train"]]
