from dataclasses import asdict
from pathlib import Path

import pytest

from metanas.config import Config, flatten, from_yaml, load_config, to_yaml
from metanas.errors import MetanasError

ROOT = Path(__file__).resolve().parents[1]


def test_overrides_merge_over_yaml_over_defaults(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("meta:\n  iterations: 7\n  meta_batch: 3\n")
    cfg = load_config(f, ["meta.iterations=20", "search.cells=2"])
    assert (cfg.meta.iterations, cfg.meta.meta_batch, cfg.search.cells) == (20, 3, 2)
    assert cfg.inner.steps == Config().inner.steps


@pytest.mark.parametrize("override, expected", [
    ("meta.iteratons=3", "did you mean 'meta.iterations'"),
    ("serch.cells=2", "did you mean 'search'"),
    ("meta.iterations=abc", "meta.iterations"),
    ("task.shots=-1", "task.shots"),
    ("task.queries=0", "task.queries"),
    ("meta.algorithm=sgd", "one of ('maml', 'fomaml', 'reptile')"),
    ("search.ops=[conv_3x3,conv_9x9]", "conv_9x9"),
    ("inner.variant=bilevel", "inner.variant"),
    ("run.device=tpu", "run.device"),
    ("run.backend=mpi", "one of ('auto', 'gloo', 'nccl')"),
    ("run.dist_timeout=0", "run.dist_timeout"),
    ("meta.iterations", "key=value"),
])
def test_bad_config_is_one_clear_error(override, expected):
    with pytest.raises(MetanasError, match=None) as e:
        load_config(None, [override])
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_typo_in_yaml_file_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("inner:\n  stpes: 3\n")
    with pytest.raises(MetanasError, match=r"inner.stpes.*bad.yaml.*inner.steps"):
        load_config(f)


def test_default_yaml_is_exactly_the_defaults():
    """configs/default.yaml documents the no-argument experiment: it must not drift from the dataclasses."""
    assert asdict(load_config(ROOT / "configs" / "default.yaml")) == asdict(Config())


def test_all_shipped_configs_load():
    for f in (ROOT / "configs").glob("*.yaml"):
        load_config(f)


def test_yaml_round_trip_and_flatten():
    cfg = load_config(None, ["meta.iterations=5", "search.ops=[conv_3x3,skip_connect]"])
    assert asdict(from_yaml(to_yaml(cfg))) == asdict(cfg)
    flat = flatten(cfg)
    assert flat["meta.iterations"] == 5 and flat["search.ops"] == "conv_3x3,skip_connect"
