"""What several commands share: naming a warm start on the command line, loading it, lists of numbers."""

from __future__ import annotations

from metanas.core.errors import MetanasError


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
    from metanas import api
    from metanas.training import distributed
    from metanas.core.runtime import seed_everything

    warm = api.load(warm_start_ref(args), args.output_dir)
    warm = warm.with_config({"run.output_dir": args.output_dir, "run.device": args.device, "run.tracking_uri": None,
                             **({"data.root": args.data_root} if args.data_root else {})})
    cfg = warm.config
    if getattr(args, "genotype", None):  # a fixed architecture (e.g. from metanas search): weights only
        warm = warm.fixed(warm.space.read(args.genotype))
    dist = distributed.init(cfg)
    seed_everything(args.seed or 0)  # select-adaptation: None (its tasks are then seeded by the run)
    return warm.to(dist.device), dist


def numbers(kind):
    def parse(text: str) -> list:
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise MetanasError(f"{text!r} is not a comma-separated list of numbers: write e.g. 3,10") from None
    return parse
