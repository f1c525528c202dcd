"""metanas.core.registry.Registry: the one registry of spaces, policies, strategies and commands."""

import pytest

from metanas.core.errors import MetanasError
from metanas.core.registry import Registry


def test_register_get_names_in_order_and_the_closest_name_on_a_typo():
    reg = Registry("widget")

    @reg.register
    class Spanner:
        name = "spanner"

    reg.register(len, name="length")
    assert reg.names() == ["spanner", "length"] == list(reg) and len(reg) == 2
    assert reg.get("spanner") is Spanner and reg["length"] is len and "length" in reg and "nut" not in reg
    with pytest.raises(MetanasError, match=r"unknown widget 'spaner'; did you mean spanner\? choose from spanner, length"):
        reg.get("spaner")
    with pytest.raises(MetanasError, match="unknown widget"):
        reg.get(["unhashable"])
    with pytest.raises(ValueError):
        reg.register(object())  # no name


def test_a_config_keyed_registry_speaks_the_config_error_format_and_loads_module_paths_lazily():
    reg = Registry("codec", key="x.codec")
    reg.register("json", name="json")
    reg.register("json:dumps", name="dumps")
    import json

    assert reg.get("json") is json and reg.get("dumps") is json.dumps
    with pytest.raises(MetanasError, match=r"bad value for config key 'x.codec': 'dump' \(did you mean dumps\? one of"):
        reg.get("dump")


def test_spaces_policies_strategies_and_commands_are_registries():
    from metanas.cli import COMMANDS, MODULES
    from metanas.policy.execution import POLICIES, Mixture, create_policy
    from metanas.search.strategies import STRATEGIES, RandomSearch, strategy_class
    from metanas.space import SPACES, list_spaces

    assert {"darts", "chain"} <= set(SPACES) and list_spaces() == sorted(SPACES.names())
    assert POLICIES.names() == ["mixture", "gumbel"] and isinstance(create_policy("mixture"), Mixture)
    assert STRATEGIES.names() == ["random", "evolution", "reinforce", "bohb", "darts", "nasrl", "pnas", "bo", "nao"]
    assert strategy_class("random") is RandomSearch
    assert MODULES == ("train", "adapt", "evaluate", "select_adaptation", "adapt_domain", "search", "compare",
                       "export", "predict", "register", "runs", "tasks", "ui") == tuple(COMMANDS)
    assert COMMANDS.get("search").__name__ == "metanas.cli.search"
    with pytest.raises(MetanasError, match="search.policy.*did you mean gumbel"):
        create_policy("gumble")


def test_shifts_and_data_set_readers_are_registries():
    from metanas.data.datasets import READERS
    from metanas.data.families import DATASETS
    from metanas.data.shifts import SHIFTS

    assert isinstance(SHIFTS, Registry) and SHIFTS.names()[:3] == ["clean", "rotation", "scale_translate"]
    md = ("ilsvrc", "omniglot", "aircraft", "cub", "dtd", "quickdraw", "fungi", "vggflower", "trafficsign", "mscoco")
    assert DATASETS == ("omniglot", "digits", "fonts", "glyphs", "imagefolder", "mnist", "fashionmnist", "kmnist",
                        "miniimagenet", "cifar-fs", "tieredimagenet", "cub", *(f"md-{n}" for n in md),
                        "bscd-cropdisease", "bscd-eurosat", "bscd-isic", "bscd-chestx", "mixture") == (*READERS, "mixture")
    assert READERS.get("digits")("digits", [], 8, 1, False).images.shape[1:] == (1, 8, 8)
    with pytest.raises(MetanasError, match="unknown dataset 'digit'; did you mean digits"):
        READERS.get("digit")
