"""``metanas adapt-domain``: move a warm start's alpha to a new domain, the mean adapted alpha of a few of the
domain's labelled tasks, and write the result as a new checkpoint (:func:`metanas.api.adapt_domain`)."""

from __future__ import annotations

from metanas.cli.common import add_warm_start_args, load_warm_start
from metanas.core.errors import MetanasError
from metanas.core.resources import DATA_ROOT_HELP


def register(sub) -> None:
    d = sub.add_parser("adapt-domain", help="move the warm start's architecture to a new domain (the mean adapted "
                       "alpha of a few of its labelled tasks) and write it as a new checkpoint")
    d.add_argument("--task", required=True, help="the new domain's task family (its validation split where it has "
                   "one, else other tasks of its test classes)")
    add_warm_start_args(d, registry=False)
    d.add_argument("--tasks", type=int, default=50, help="labelled tasks that estimate the domain's alpha (default 50)")
    d.add_argument("--rounds", type=int, default=1, help="repeat from the last estimate (default 1)")
    d.add_argument("--seed", type=int, help="seed of the tasks (default: the run's seed + 4)")
    d.add_argument("--steps", type=int, help="the tasks' adaptation steps (default: the checkpoint's)")
    d.add_argument("--lr-alpha", type=float, help="the tasks' alpha step, > 0 (default: the checkpoint's)")
    d.add_argument("--out", help="the new checkpoint (default OUTPUT_DIR/domains/RUN_ID-TASK.pt)")
    d.add_argument("--data-root", help=DATA_ROOT_HELP)
    d.add_argument("--device", default="auto")
    d.set_defaults(fn=cmd_adapt_domain)


def cmd_adapt_domain(args) -> None:
    from pathlib import Path

    from metanas import api
    from metanas.meta.checkpoint import write_domain

    warm, dist = load_warm_start(args)
    out = Path(args.out or Path(args.output_dir) / "domains" / f"{warm.run_id}-{Path(args.task).stem}.pt")
    try:
        if out.resolve() == Path(warm.path).resolve():
            raise MetanasError(f"--out {out} is the warm start's own checkpoint: give another path (adapt-domain "
                               "writes a new checkpoint and leaves the run's own as it is)")
        adaptation = warm.adaptation.replace(steps=args.steps, lr_alpha=args.lr_alpha)
        domain, info = api.adapt_domain(warm, args.task, args.tasks, rounds=args.rounds, seed=args.seed,
                                        adaptation=adaptation, progress=True)
    finally:
        dist.close()
    write_domain(warm.path, out, domain.params, arch=warm.space.to_json(domain.derive()), domain=info,
                 adaptation=domain.adaptation.as_dict())
    what = "validation classes" if info["split"] == "validation" else "test classes (other tasks; it has no validation split)"
    print(f"{args.task}: alpha = the mean adapted alpha of {args.tasks} tasks of its {what}, {args.rounds} round(s)")
    print(f"architecture: {warm.space.describe(warm.derive())} -> {warm.space.describe(domain.derive())}")
    print(f"its tasks adapt as the calibration did: {domain.adaptation}")
    print(f"checkpoint: {out}\nadapt to the domain's tasks from it: metanas evaluate --checkpoint {out} --task {args.task}")
