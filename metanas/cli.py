"""The ``metanas`` command: the parser and the dispatch.

Each command lives in its own module under :mod:`metanas.commands` and registers its own sub-parser:
``train``, ``adapt``/``evaluate``, ``search``, ``export``/``predict``/``register``, ``runs``/``tasks``/``ui``.
"""

from __future__ import annotations

import argparse

from metanas.errors import exit_on_error


def build_parser() -> argparse.ArgumentParser:
    from metanas.commands import COMMANDS

    p = argparse.ArgumentParser(prog="metanas", description="Meta-learned neural architecture search.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        COMMANDS.get(name).register(sub)
    return p


@exit_on_error
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
