from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from metanas.config import Config, flatten, from_yaml, load_config, to_yaml
from metanas.core.errors import MetanasError
from metanas.core.resources import builtin_config, resolve_config


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
    ("task.ways=1", "a task needs >= 2 classes"),
    ("search.space=nas-bench", "search.space"),
    ("search.policy=gdas", "search.policy"),
    ("meta.cost_weight=-1", "meta.cost_weight"),
    ("inner.final_temperature=0", "inner.temperature/inner.final_temperature"),
    ("meta.memory_budget=0", "meta.memory_budget"),
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


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_all_shipped_configs_set_exactly_their_keys():
    """Each shipped config, by path and by built-in name, is the defaults with exactly its YAML's keys replaced."""
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert {"default", "smoke", "baseline-conv4", "baseline-frozen-alpha", "baseline-random-genotype"} <= \
        {f.stem for f in files}
    defaults = _leaves(asdict(Config()))
    for f in files:
        assert builtin_config(f.stem).samefile(f)  # --config NAME finds the same file
        written = _leaves(OmegaConf.to_container(OmegaConf.load(f)))
        assert written and set(written) <= set(defaults), f
        for cfg in (load_config(f), load_config(builtin_config(f.stem))):
            loaded = _leaves(asdict(cfg))
            assert {k: loaded[k] for k in written} == written, f
            assert {k: v for k, v in loaded.items() if k not in written} == \
                {k: v for k, v in defaults.items() if k not in written}, f


def test_a_builtin_config_is_named_without_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the name finds the package's copy
    assert resolve_config("smoke") == builtin_config("smoke") and builtin_config("smoke").name == "smoke.yaml"
    assert load_config(resolve_config("smoke")).search.cells == 2
    for path in ("configs/smoke.yaml", "smoke.yaml", "smoke.yml", "./smoke"):
        assert resolve_config(path) == Path(path)  # a path stays a path (and load_config says if it is missing)
    (tmp_path / "smoke").write_text("meta:\n  iterations: 1\n")
    assert resolve_config("smoke") == Path("smoke")  # an existing file wins over the built-in name
    with pytest.raises(MetanasError, match="unknown built-in config 'smok'; did you mean smoke?.*baseline-conv4"):
        resolve_config("smok")


def test_several_configs_merge_in_order_under_the_overrides(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("meta:\n  iterations: 7\n  meta_batch: 3\n")
    b.write_text("meta:\n  iterations: 9\n")
    cfg = load_config([a, b], ["search.cells=2"])
    assert (cfg.meta.iterations, cfg.meta.meta_batch, cfg.search.cells) == (9, 3, 2)  # b over a, a's other keys kept
    assert load_config([b, a]).meta.iterations == 7
    # built-in names compose: the Omniglot-only experiment with conv4's architecture
    cfg = load_config(["omniglot", "baseline-conv4"])
    omniglot = load_config("omniglot")
    assert (cfg.task.family, cfg.meta.iterations, cfg.inner.select_steps) == \
        (omniglot.task.family, omniglot.meta.iterations, omniglot.inner.select_steps)
    assert cfg.search.genotype == "conv4" and omniglot.search.genotype != "conv4"
    from metanas.meta_train import parse_args  # the command line: --config repeated, overrides last

    _, cli = parse_args(["--config", "omniglot", "meta.iterations=3", "--config", "baseline-conv4"])
    assert (cli.task.family, cli.search.genotype, cli.meta.iterations) == (omniglot.task.family, "conv4", 3)
    with pytest.raises(MetanasError, match="nope.yaml.*not found"):
        load_config(["omniglot", tmp_path / "nope.yaml"])


def test_yaml_round_trip_and_flatten():
    cfg = load_config(None, ["meta.iterations=5", "search.space=darts", "search.ops=[conv_3x3,skip_connect]"])
    assert asdict(from_yaml(to_yaml(cfg))) == asdict(cfg)
    flat = flatten(cfg)
    assert flat["meta.iterations"] == 5 and flat["search.ops"] == "conv_3x3,skip_connect"
