"""``metanas tasks``: list the task families; ``metanas tasks show NAME`` draws one task to a PNG."""

from __future__ import annotations

from pathlib import Path

from metanas.core.errors import MetanasError
from metanas.core.resources import DATA_ROOT_HELP


def register(sub) -> None:
    k = sub.add_parser("tasks", help="list the task families; `tasks show NAME` draws a sample task")
    k.set_defaults(fn=cmd_tasks)
    ks = k.add_subparsers(dest="tasks_command")
    show = ks.add_parser("show", help="draw one task of a family (support and query grid) to a PNG")
    show.add_argument("name", help="task family name (tasks/NAME.yaml) or YAML path")
    show.add_argument("--out", help="PNG path (default: NAME-SPLIT-seedS.png)")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--split", choices=("train", "validation", "test"), default="test")
    show.add_argument("--data-root", help=DATA_ROOT_HELP)


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
