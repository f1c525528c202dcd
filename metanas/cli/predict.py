"""``metanas predict``: classify images with an exported task model (a folder, or an MLflow model URI)."""

from __future__ import annotations

from pathlib import Path

from metanas.core.errors import MetanasError


def register(sub) -> None:
    r = sub.add_parser("predict", help="classify images with an exported task model")
    r.add_argument("--model", required=True, metavar="DIR|URI",
                   help="the --out folder of metanas export, or an MLflow model URI (models:/NAME/VERSION)")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument("--output-dir", default="runs", help="runs folder whose MLflow store resolves a model URI")
    r.set_defaults(fn=cmd_predict)


def cmd_predict(args) -> None:
    from metanas.deploy.export import load_task_model

    model_dir = args.model
    if ":/" in args.model:  # an MLflow model URI: models:/NAME/VERSION, runs:/ID/model, models:/m-...
        from metanas.track.model_registry import download

        model_dir = download(args.model, args.output_dir)
    model = load_task_model(model_dir)
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise MetanasError(f"image {missing[0]} not found: pass image files to classify")
    for path, label, prob in model.predict(args.images):
        print(f"{path} -> {label} ({prob:.3f})")
