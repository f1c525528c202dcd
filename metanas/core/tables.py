"""Result tables: one markdown and one CSV writer for every table metanas prints and logs."""

from __future__ import annotations

import csv
import io


def markdown(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def csv_text(head: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    w.writerows(rows)
    return buf.getvalue()


def pct(mean: float, ci: float) -> str:
    return f"{100 * mean:.2f} ± {100 * ci:.2f}%"
