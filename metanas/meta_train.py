"""Meta-train a warm start: ``python -m metanas.meta_train [--config F ...] [key=value ...]``.

The command line (arguments, printed summary) over :func:`metanas.training.loop.train`, which is also the Python
API (``metanas.train(cfg)``). Only this entry point and the ``metanas train`` command import this module.
"""

from __future__ import annotations

import argparse

from metanas.config import Config, load_config
from metanas.core.errors import exit_on_error
from metanas.core.resources import DATA_ROOT_HELP, add_config_arg
from metanas.training.loop import Result, train


def parse_args(argv=None) -> tuple[argparse.Namespace, Config]:
    p = argparse.ArgumentParser(prog="python -m metanas.meta_train", description=__doc__.splitlines()[0])
    add_config_arg(p)
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--resume", metavar="RUN_ID|PATH", help="continue a run from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. meta.iterations=20")
    args = p.parse_intermixed_args(argv)  # overrides may come before and after --config / --resume
    overrides = list(args.overrides) + ([f"data.root={args.data_root}"] if args.data_root else [])
    return args, load_config(args.config, overrides)


@exit_on_error
def main(argv=None) -> Result:
    args, cfg = parse_args(argv)
    result = train(cfg, resume=args.resume)
    if result.rank != 0:  # under torchrun rank 0 speaks for all
        return result
    print(f"test accuracy: {result.test.summary()}  [{cfg.task.family}, {result.eval_steps} adaptation steps]")
    print(f"run id: {result.run_id}")
    print(f"genotype: {result.describe}")
    print(f"checkpoint: {result.checkpoint}")
    print(f"meta-training: {result.steps} steps in {result.train_seconds:.1f} s on {result.world} rank(s)")
    print(f"wall time: {result.seconds:.0f} s")
    return result


if __name__ == "__main__":
    main()
