"""``metanas evaluate``: adapt a warm start to many test tasks (batched) of one family, or of a suite of families,
with the paired architecture-adaptation ablation."""

from __future__ import annotations

from metanas.cli.adapt import add_arguments, cmd_adapt, evaluate_family, paired_run
from metanas.core.errors import MetanasError
from metanas.data.suites import SUITES


def register(sub) -> None:
    a = sub.add_parser("evaluate", help="adapt to many test tasks: accuracy ± 95%% CI, per-step curve, op wins")
    add_arguments(a, tasks=600)
    a.add_argument("--suite", choices=SUITES, help="a table over many families: shift (the shifted, held-out "
                   "and other data sets' families of the warm start's domain), domains (a mixture's "
                   "sources one by one, trained or left out, then the held-out families), meta-dataset (its ten "
                   "sources) or bscd (BSCD-FSL's four, 5-way 5/20/50-shot); see docs/data.md")
    a.add_argument("--protocol", choices=("fixed", "variable"), default="fixed", help="the cross-domain suites' "
                   "episodes: fixed (5-way 1/5-shot for meta-dataset, 5-way 5/20/50-shot for bscd; 15 queries) or "
                   "variable (Meta-Dataset's variable-way, variable-shot episodes; meta-dataset only)")
    a.add_argument("--paired", action="store_true", help="also adapt the same tasks with the architecture "
                   "fixed and report the paired per-task difference (architecture adaptation's gain) ± 95%% CI")
    a.set_defaults(fn=cmd_adapt)


def check_variable(warm, families: list[str]) -> None:
    """Meta-Dataset's variable episodes draw 5 to 50 ways each: a warm start takes them only with a prototype head
    (``inner.head=proto``). Refused in one line before any task is drawn, not row by row."""
    from metanas.data.families import load_family

    family = load_family(families[0])
    drawn = family.episodes == "fixed" or family.episodes.ways is None
    if drawn and not warm.variable_ways:
        raise MetanasError(f"--protocol variable: {family.name}'s episodes draw up to {family.ways} ways each but "
                           f"the warm start's head has {warm.ways} fixed outputs and cannot take variable ways; "
                           "meta-train with inner.head=proto, or use --protocol fixed (5-way 1- and 5-shot)")


def suite(args, warm, dist) -> None:
    """``--suite``: one warm start over a suite of task families: a markdown + CSV table, logged to one MLflow run."""
    from metanas import api
    from metanas.data.suites import suite_families
    from metanas.core.tables import csv_text, markdown, pct
    from metanas.track.runs import child_tracker

    home = warm.derive()
    rows = []
    families = suite_families(args.suite, warm.family, warm.config.task.leave_out, protocol=args.protocol)
    if args.protocol == "variable":
        check_variable(warm, [name for name, _ in families])
    for name, role in families:
        try:
            family, ev = evaluate_family(args, warm, dist, name, progress=False, curve=False)
            paired = paired_run(args, warm, dist, name, ev, progress=False, curve=False)
        except MetanasError as e:  # e.g. a data set that cannot be downloaded here, or other ways
            rows.append((name, role, None, None, f"skipped: {e}"))
            if dist.is_main:  # every rank hits the same error; one line is enough
                print(f"{name}: skipped ({e})")
            continue
        archs = api.architectures(warm, ev)
        distance = sum(warm.space.distance(a, home) for a in archs) / len(archs)
        rows.append((name, role, ev, paired, f"{distance:.3f}"))
        if dist.is_main:
            gain = f", paired gain {100 * paired[1]:+.2f} ± {100 * paired[2]:.2f}" if paired else ""
            print(f"{name} ({role}): {ev.summary()}{gain}, architecture distance {distance:.3f}", flush=True)
    if not dist.is_main:
        return
    steps = warm.adaptation.steps
    head = ["family", "role", f"accuracy ± 95% CI ({args.tasks} tasks)", "architecture fixed",
            "paired gain (points)", "steps", "architecture distance from warm start"]
    md = markdown(head, [[n, r, pct(e.mean, e.ci95), pct(p[0].mean, p[0].ci95) if p else "-",
                          f"{100 * p[1]:+.2f} ± {100 * p[2]:.2f}" if p else "-", steps, d] if e
                         else [n, r, "-", "-", "-", "-", d] for n, r, e, p, d in rows])
    csv = csv_text(["family", "role", "accuracy", "ci95", "fixed_accuracy", "paired_gain", "paired_gain_ci95", "steps",
                    "genotype_distance"],
                   [[n, r, e.mean if e else "", e.ci95 if e else "", p[0].mean if p else "", p[1] if p else "",
                     p[2] if p else "", steps if e else "", d] for n, r, e, p, d in rows])
    print(md)
    if not args.no_track:
        tracker = child_tracker(warm.config, "evaluate", warm.run_id, f"evaluate-suite-{args.suite}")
        tracker.log_text(md + "\n", f"suite_{args.suite}.md")
        tracker.log_text(csv, f"suite_{args.suite}.csv")
        for n, _, e, p, _ in rows:
            if e:
                tracker.log_metrics({f"suite/{n}/accuracy": e.mean, f"suite/{n}/ci95": e.ci95}
                                    | ({f"suite/{n}/paired_gain": p[1]} if p else {}), step=0)
        tracker.end()
        print(f"run id: {tracker.run_id}")
