"""``metanas train``: the same as ``python -m metanas.meta_train``."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    # Every argument, --help and --config included, belongs to meta_train's own parser: with no "-" among this
    # parser's prefix characters none of them is read as an option here (argparse would reject them as unknown).
    t = sub.add_parser("train", help="meta-train (same as python -m metanas.meta_train)", add_help=False,
                       prefix_chars="+")
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(fn=lambda args: _train(args.rest))


def _train(rest) -> None:
    from metanas import meta_train

    meta_train.main(rest)
