"""``metanas export``: adapt a warm start to a support folder and save the task's discrete child net (torch.export)."""

from __future__ import annotations

from pathlib import Path

from metanas.cli.common import add_warm_start_args, warm_start_ref
from metanas.core.errors import MetanasError


def register(sub) -> None:
    e = sub.add_parser("export", help="adapt to a support folder and save the discrete child net (torch.export)")
    e.add_argument("--task", required=True, metavar="DIR",
                   help="the task's support set: a folder with one sub-folder of images per class")
    e.add_argument("--out", required=True, metavar="DIR", help="where to write model.pt2, genotype.json, classes.json")
    add_warm_start_args(e)
    e.add_argument("--steps", type=int, help="adaptation steps (default: the checkpoint's inner.eval_steps)")
    e.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                   help="SGD steps on the child's weights on the support set after derivation (default 0)")
    e.add_argument("--genotype", metavar="FILE.json", help="export this fixed architecture (weights adapted) "
                   "instead of the architecture derived from the adapted alpha")
    e.add_argument("--register", metavar="NAME", help="also register the logged model under this name")
    e.add_argument("--no-track", action="store_true", help="do not log an MLflow run and model")
    e.set_defaults(fn=cmd_export)


def cmd_export(args) -> None:
    import torch

    from metanas import api
    from metanas.deploy.export import export_task
    from metanas.track.plots import close
    from metanas.track.runs import child_tracker

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise MetanasError(f"--out {args.out} is a file: export writes a folder (model.pt2, genotype.json, "
                           "classes.json); give a new folder or an existing one")
    warm = api.load(warm_start_ref(args), args.output_dir)
    if args.genotype:
        warm = warm.fixed(warm.space.read(args.genotype))
    exported = export_task(warm, args.task, args.out, adaptation=warm.adaptation.replace(steps=args.steps),
                           finetune=args.finetune)
    with torch.no_grad():
        predicted = exported.child(exported.support_x).argmax(-1)
    print(f"exported: {exported.out.resolve()}  ({', '.join(p.name for p in sorted(exported.out.iterdir()))})")
    print(f"classes: {' '.join(exported.classes)}")
    print(f"genotype: {warm.space.describe(exported.genotype)}")
    print(f"support accuracy: {100 * (predicted == exported.support_y).float().mean():.1f}%")
    if not args.no_track:
        from metanas.track.model_registry import log_task_model

        cfg = warm.with_config({"run.output_dir": args.output_dir, "run.tracking_uri": None}).config
        tracker = child_tracker(cfg, "export", warm.run_id, f"export-{Path(args.task).name}")
        for f in sorted(exported.out.iterdir()):
            tracker.log_artifact(f, "export")
        fig = warm.space.draw(exported.genotype, f"exported task {Path(args.task).name}: child architecture")
        tracker.log_figure(fig, "plots/genotype.png")
        close(fig)
        info = log_task_model(exported, tracker.run_id, args.register)
        tracker.end()
        print(f"mlflow model: {info.model_uri}" + (f"  registered: models:/{args.register}/"
                                                    f"{info.registered_model_version}" if args.register else ""))
        print(f"run id: {tracker.run_id}")
