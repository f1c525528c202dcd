"""Draw one task to a PNG: support images above, query images below, one column per label (colour tasks in colour)."""

from __future__ import annotations

from pathlib import Path

from metanas.data.images import ImageFormat
from metanas.data.sampler import Task


def draw_task(task: Task, path: str | Path, title: str = "", max_queries: int = 5,
              image_format: ImageFormat | None = None) -> Path:
    """Write `task` (one task, class-major) as a grid: K support rows, then up to `max_queries` query rows.
    ``image_format``: the task set's, to undo its normalisation."""
    # Figure + Agg canvas rather than pyplot: no global backend switch, nothing kept alive after saving.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ways = int(task.support_y.max()) + 1
    shots, queries = len(task.support_y) // ways, len(task.query_y) // ways
    shown = min(queries, max_queries)
    fmt = image_format or ImageFormat(task.support_x.shape[-3])
    support = fmt.denormalize(task.support_x).view(ways, shots, *task.support_x.shape[-3:])
    query = fmt.denormalize(task.query_x).view(ways, queries, *task.query_x.shape[-3:])[:, :shown]

    cell, header, title_h = 0.7, 0.55, 0.5 if title else 0.0  # inches
    heights = [title_h, header + cell * shots, header + cell * shown]
    fig = Figure(figsize=(max(4.5, 0.6 + cell * ways), sum(heights)))
    FigureCanvasAgg(fig)
    head, top, bottom = fig.subfigures(3, 1, height_ratios=heights)
    if title:
        head.text(0.5, 0.5, title, ha="center", va="center", fontsize=9, wrap=True)
    for sub, images, rows, height, label in (
            (top, support, shots, heights[1], f"support ({shots} per label)"),
            (bottom, query, shown, heights[2], f"query (first {shown} of {queries} per label)")):
        sub.text(0.02, 1 - 0.12 / height, label, ha="left", va="top", fontsize=9)
        axes = sub.subplots(rows, ways, squeeze=False)
        sub.subplots_adjust(left=0.05, right=0.95, bottom=0.02, top=1 - header / height, wspace=0.05, hspace=0.05)
        for j in range(ways):
            for i in range(rows):
                ax = axes[i, j]
                im = images[j, i].clamp(0, 1).cpu()
                if im.shape[0] == 3:
                    ax.imshow(im.permute(1, 2, 0).numpy(), interpolation="nearest")
                else:
                    ax.imshow(im[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
            axes[0, j].set_title(f"label {j}", fontsize=8, pad=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
