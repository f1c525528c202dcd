"""The ``metanas`` commands, one module each; every module registers its own sub-parser(s).

``metanas.cli`` is only the parser and the dispatch: it calls each module's ``register(subparsers)``
(the modules in :data:`COMMANDS`, imported when the parser is built) and runs the ``fn`` the parsed
sub-command set. Adding a command: its module here, and one line below.
"""

from __future__ import annotations

from metanas.plugins import Registry

COMMANDS = Registry("command module")
for _name in ("train", "adapt", "select", "search", "export", "runs"):
    COMMANDS.register(f"metanas.commands.{_name}", name=_name)
MODULES = tuple(COMMANDS.names())


def add_warm_start_args(p, registry: bool = True) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="checkpoint file (default: the newest under OUTPUT_DIR/checkpoints)")
    src.add_argument("--run-id", help="MLflow run id of a meta-training run")
    if registry:
        src.add_argument("--model", metavar="models:/NAME/VERSION", help="a registered warm start")
    p.add_argument("--output-dir", default="runs", help="runs folder with checkpoints/ and mlflow.db")


def warm_start_ref(args) -> str | None:
    return getattr(args, "model", None) or args.checkpoint or args.run_id


def load_warm_start(args):
    """``(warm start, dist)``: the warm start the arguments name, with the command line's settings (device, data
    root, output dir, ``--genotype``), and the process group (under torchrun, test tasks are split over ranks)."""
    from metanas import api, distributed
    from metanas.runtime import seed_everything

    warm = api.load(warm_start_ref(args), args.output_dir)
    cfg = warm.config
    cfg.run.output_dir, cfg.run.device, cfg.run.tracking_uri = args.output_dir, args.device, None
    if args.data_root:
        cfg.data.root = args.data_root
    if getattr(args, "genotype", None):  # a fixed architecture (e.g. from metanas search): weights only
        warm = warm.fixed(warm.space.read(args.genotype))
    dist = distributed.init(cfg)
    seed_everything(args.seed or 0)  # select-adaptation: None (its tasks are then seeded by the run)
    return warm.to(dist.device), dist
