"""The ``metanas`` command: the parser and the dispatch.

Each command lives in the module of its name (``metanas adapt-domain``: :mod:`metanas.cli.adapt_domain`) and
registers its own sub-parser; :data:`COMMANDS` lists them in the order ``metanas --help`` shows, and imports a
module only when the parser is built. Adding a command: its module here, and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse

from metanas.core.errors import exit_on_error
from metanas.core.registry import Registry

COMMANDS = Registry("command module")
for _name in ("train", "adapt", "evaluate", "select_adaptation", "adapt_domain", "search", "compare", "export", "predict",
              "register", "runs", "tasks", "ui"):
    COMMANDS.register(f"metanas.cli.{_name}", name=_name)
MODULES = tuple(COMMANDS.names())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metanas", description="Meta-learned neural architecture search.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        COMMANDS.get(name).register(sub)
    return p


@exit_on_error
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.fn(args)

