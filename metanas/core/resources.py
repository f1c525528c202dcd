"""Files shipped inside the package (package data): the built-in task families and configs, and the few-shot
benchmarks' published split lists (``metanas/data/splits``).

They live in ``metanas/tasks/*.yaml`` and ``metanas/configs/*.yaml`` and are found through
:mod:`importlib.resources`, so an installed wheel finds them from any working directory. A
``./tasks`` folder in the working directory still shadows the built-in families (see
:mod:`metanas.data.families`); a config is named by path, or by the bare name of a built-in one
(``--config smoke`` = ``metanas/configs/smoke.yaml``).
"""

from __future__ import annotations

import difflib
import os
from importlib.resources import files
from pathlib import Path

from metanas.core.errors import MetanasError

CONFIG_SUFFIXES = (".yaml", ".yml")
DATA_ROOT_HELP = ("folder holding the data sets (omniglot-py/, miniimagenet/, cifar-100-python/, tieredimagenet/, "
                  "CUB_200_2011/); else $METANAS_DATA, else the user cache")


def add_config_arg(parser, under: str = "the defaults (configs/default.yaml)") -> None:
    """``--config F``, repeatable, for every command that builds a config: files or built-in names merged in order
    over ``under`` (later keys winning), the ``key=value`` overrides last; ``args.config`` is a list (empty: none)."""
    parser.add_argument("--config", action="append", default=[], metavar="F",
                        help=f"YAML config or built-in name (e.g. omniglot, configs/smoke.yaml) over {under}; repeat to "
                        "merge several in order, later keys winning")


def _package_dir(name: str) -> Path:
    # A filesystem install (wheel, editable, source tree) gives a real folder; zip imports are not supported.
    return Path(str(files("metanas").joinpath(name)))


def package_file(*parts: str) -> Path:
    """A file shipped in the package, e.g. ``package_file("data", "splits", "cub", "test.txt")``."""
    return _package_dir("/".join(parts))


def builtin_tasks_dir() -> Path:
    """The folder of the built-in task families (``metanas/tasks``)."""
    return _package_dir("tasks")


def builtin_configs_dir() -> Path:
    """The folder of the built-in configs (``metanas/configs``)."""
    return _package_dir("configs")


def builtin_configs() -> list[str]:
    """Names of the built-in configs (``smoke``, ``default``, ...), sorted."""
    folder = builtin_configs_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def is_config_name(config: str | os.PathLike) -> bool:
    """True for a bare name (no ``/``, no ``.yaml``/``.yml``) that is not an existing file: a built-in config."""
    text = os.fspath(config)
    return (bool(text) and "/" not in text and os.sep not in text and not text.endswith(CONFIG_SUFFIXES)
            and not Path(text).is_file())


def builtin_config(name: str) -> Path:
    """The packaged ``metanas/configs/NAME.yaml``; a MetanasError naming the built-in configs if there is none."""
    path = builtin_configs_dir() / f"{name}.yaml"
    if path.is_file():
        return path
    known = builtin_configs()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise MetanasError(f"unknown built-in config {name!r}; {hint}built-in configs: {', '.join(known) or 'none'} "
                       "(or pass the path of a YAML file, e.g. --config configs/smoke.yaml)")


def resolve_config(config: str | os.PathLike) -> Path:
    """What ``--config`` names: a bare name is a built-in config (:func:`builtin_config`), anything else a path."""
    return builtin_config(os.fspath(config)) if is_config_name(config) else Path(config)
