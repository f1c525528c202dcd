"""``metanas runs``: recent MLflow runs with their key metrics."""

from __future__ import annotations

from metanas.core.errors import MetanasError


def register(sub) -> None:
    n = sub.add_parser("runs", help="list recent MLflow runs with their key metrics")
    n.add_argument("--output-dir", default="runs")
    n.add_argument("-n", type=int, default=10, help="how many runs (default 10)")
    n.set_defaults(fn=cmd_runs)


def cmd_runs(args) -> None:
    from metanas.track.runs import recent_runs

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
