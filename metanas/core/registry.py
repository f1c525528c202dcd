"""One registry helper for everything chosen by name: search spaces, execution policies, search strategies,
task shifts, data set readers and the ``metanas`` commands (see :data:`metanas.space.SPACES`,
:data:`metanas.policy.execution.POLICIES`, :data:`metanas.search.strategies.STRATEGIES`, :data:`metanas.data.shifts.SHIFTS`,
:data:`metanas.data.datasets.READERS`, :data:`metanas.cli.COMMANDS`).

A :class:`Registry` maps names to implementations in the order they were registered. ``register`` doubles as a
class decorator (the name is the class's ``name`` attribute unless given); an entry may also be a module path
(``"package.module"`` or ``"package.module:attribute"``), imported on first use, so that listing the names
imports nothing. An unknown name is a :class:`~metanas.core.errors.MetanasError` naming the closest known one and
all the choices (in the config-error format when the registry has a config key, e.g. ``search.space``).

(Not to be confused with :mod:`metanas.track.model_registry`, the MLflow model registry.)
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Iterator

from metanas.core.errors import MetanasError


class Registry:
    """Named implementations of one kind: ``register``, ``get`` (or ``registry[name]``), ``names``."""

    def __init__(self, kind: str, key: str | None = None):
        self.kind = kind  # in error messages: "unknown {kind} ..."
        self.key = key  # the config key that names an entry, if any
        self._entries: dict[str, Any] = {}

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """Add ``obj`` under ``name`` (default ``obj.name``) and return it; without ``obj``, a decorator.
        Registering a name again replaces its entry."""
        if obj is None:
            return lambda o: self.register(o, name=name)
        name = name or getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a name to be registered: pass name= or give it a name attribute")
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> Any:
        """The entry ``name`` names (a module path is imported now); a MetanasError with the closest name if none."""
        try:
            obj = self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable value from a config file
            raise self.unknown(name) from None
        if isinstance(obj, str):
            module, _, attribute = obj.partition(":")
            obj = importlib.import_module(module)
            obj = self._entries[name] = getattr(obj, attribute) if attribute else obj
        return obj

    def names(self) -> list[str]:
        return list(self._entries)

    def unknown(self, name: Any) -> MetanasError:
        """The error for a name that is not registered: the closest known one, then all of them."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        choices = ", ".join(self.names()) or "none registered"
        if self.key:  # the one config-error format (metanas.space.base.require)
            return MetanasError(f"bad value for config key '{self.key}': {name!r} ({hint}one of {choices})")
        return MetanasError(f"unknown {self.kind} {name!r}; {hint}choose from {choices}")

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

