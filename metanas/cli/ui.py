"""``metanas ui``: the MLflow UI on the project's store."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def register(sub) -> None:
    u = sub.add_parser("ui", help="open the MLflow UI on the project's store")
    u.add_argument("--output-dir", default="runs")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)


def ui_command(output_dir: str, host: str, port: int) -> list[str]:
    uri = f"sqlite:///{Path(output_dir).resolve()}/mlflow.db"
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def cmd_ui(args) -> None:
    cmd = ui_command(args.output_dir, args.host, args.port)
    print(" ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)  # become the MLflow server: Ctrl-C and SIGTERM reach it (and its workers) directly
