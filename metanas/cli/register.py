"""``metanas register``: register a warm start in the MLflow model registry."""

from __future__ import annotations

from metanas.cli.common import add_warm_start_args, warm_start_ref


def register(sub) -> None:
    g = sub.add_parser("register", help="register a warm start in the MLflow model registry")
    g.add_argument("--name", required=True, help="registered model name")
    add_warm_start_args(g, registry=False)
    g.set_defaults(fn=cmd_register)


def cmd_register(args) -> None:
    from metanas.meta.checkpoint import resolve
    from metanas.track.model_registry import register_warm_start

    mv = register_warm_start(resolve(warm_start_ref(args), args.output_dir), args.name, args.output_dir)
    print(f"registered: models:/{mv.name}/{mv.version}  (warm start of run {mv.tags.get('metanas.warm_start')}, "
          f"{mv.tags.get('metanas.family')})")
