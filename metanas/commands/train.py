"""``metanas train``: the same as ``python -m metanas.meta_train``."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    t = sub.add_parser("train", help="meta-train (same as python -m metanas.meta_train)", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(fn=lambda args: _train(args.rest))


def _train(rest) -> None:
    from metanas import meta_train

    meta_train.main(rest)
