"""``metanas runs`` (recent MLflow runs), ``tasks`` (list / show task families), ``ui`` (the MLflow UI)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from metanas.errors import MetanasError
from metanas.resources import DATA_ROOT_HELP


def register(sub) -> None:
    n = sub.add_parser("runs", help="list recent MLflow runs with their key metrics")
    n.add_argument("--output-dir", default="runs")
    n.add_argument("-n", type=int, default=10, help="how many runs (default 10)")
    n.set_defaults(fn=cmd_runs)

    k = sub.add_parser("tasks", help="list the task families; `tasks show NAME` draws a sample task")
    k.set_defaults(fn=cmd_tasks)
    ks = k.add_subparsers(dest="tasks_command")
    show = ks.add_parser("show", help="draw one task of a family (support and query grid) to a PNG")
    show.add_argument("name", help="task family name (tasks/NAME.yaml) or YAML path")
    show.add_argument("--out", help="PNG path (default: NAME-SPLIT-seedS.png)")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--split", choices=("train", "validation", "test"), default="test")
    show.add_argument("--data-root", help=DATA_ROOT_HELP)

    u = sub.add_parser("ui", help="open the MLflow UI on the project's store")
    u.add_argument("--output-dir", default="runs")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)


def cmd_runs(args) -> None:
    from metanas.tracking import recent_runs

    if args.n < 1:
        raise MetanasError("-n must be >= 1")
    rows = recent_runs(args.output_dir, args.n)
    metrics = ("test/accuracy", "val/accuracy", "adapt/accuracy")
    print(f"{'run id':32s}  {'kind':10s} {'name / family':40s} {'status':8s} {'started':16s} "
          + " ".join(f"{m:>14s}" for m in metrics))
    for r in rows:
        print(f"{r['run_id']:32s}  {r['kind']:10s} {r['name'][:40]:40s} {r['status']:8s} {r['started']:16s} "
              + " ".join(f"{_pct(r['metrics'].get(m)):>14s}" for m in metrics))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def cmd_tasks(args) -> None:
    if args.tasks_command == "show":
        return cmd_tasks_show(args)
    from metanas.data import list_families, load_family

    rows = [load_family(n) for n in list_families()]
    width = min(30, max(len(f.shift_str) for f in rows))  # a long mix overflows its row, not the table
    print(f"{'name':30s} {'dataset':14s} {'split':8s} {'classes':11s} ways shots queries  size  ch  "
          f"{'shift':{width}s}  held-out  description")
    for f in rows:
        held = "yes" if f.held_out else "test-only" if f.untrainable_reason() else "no"
        print(f"{f.name:30s} {f.dataset:14s} {f.split:8s} {f.split_sizes:11s} {f.ways:4d} {f.shots:5d} {f.queries:7d}"
              f"  {f.image_size:4d} {f.channels:3d}  {f.shift_str:{width}s}  {held:8s}  {f.description}")


def cmd_tasks_show(args) -> None:
    import torch

    from metanas.data import get_tasksets, load_family
    from metanas.data.show import draw_task

    family = load_family(args.name)
    taskset = getattr(get_tasksets(family, args.data_root), args.split)
    if taskset is None:
        raise MetanasError(f"task family {family.name} (split: {family.split}) has no {args.split} classes; "
                           "use --split test")
    task = taskset.sample(torch.Generator().manual_seed(args.seed))
    out = Path(args.out or f"{family.name}-{args.split}-seed{args.seed}.png")
    draw_task(task, out, title=f"{family.name}, {args.split} split, seed {args.seed}\nshift: {family.shift_str}",
              image_format=taskset.format)
    print(out)


def ui_command(output_dir: str, host: str, port: int) -> list[str]:
    uri = f"sqlite:///{Path(output_dir).resolve()}/mlflow.db"
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def cmd_ui(args) -> None:
    cmd = ui_command(args.output_dir, args.host, args.port)
    print(" ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)  # become the MLflow server: Ctrl-C and SIGTERM reach it (and its workers) directly
