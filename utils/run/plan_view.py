"""The planned DAG as a picture and as Markdown (a `--plan-only` run's `plan.png` and `output.md`).

Columns by dependency depth, a box per task coloured by role (the timeline's colours), an arrow from
each dependency; the Mermaid graph renders on GitHub and in most Markdown viewers.
"""
from __future__ import annotations

from functools import cache
from typing import Any

from utils.dag import levels
from utils.palette import role_colours
from utils.run.timeline import agg_figure, dependencies, figure_png


def _mermaid_text(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in " .,:-_/()" else " " for ch in text)[:60].strip()


def plan_mermaid(plan: dict) -> str:
    """The planned DAG as a Mermaid `graph LR` (renders on GitHub and in most Markdown viewers)."""
    lines = ["graph LR"]
    ids = {t["id"]: f"n{i}" for i, t in enumerate(plan.get("tasks", []))}
    for t in plan.get("tasks", []):
        lines.append(f'  {ids[t["id"]]}["{_mermaid_text(t["id"])}: {_mermaid_text(t.get("title", ""))} '
                     f'({_mermaid_text(t.get("role", ""))})"]')
    for t in plan.get("tasks", []):
        for d in t.get("depends_on") or []:
            if d in ids:
                lines.append(f"  {ids[d]} --> {ids[t['id']]}")
    return "\n".join(lines)


def plan_document(plan: dict) -> str:
    """`output.md` of a `--plan-only` run: the tasks and their DAG."""
    rows = ["| id | title | role | depends on | priority |", "|---|---|---|---|---|"]
    for t in plan.get("tasks", []):
        cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        rows.append(f"| {cell(t['id'])} | {cell(t.get('title', ''))} | {cell(t.get('role', ''))} | "
                    f"{cell(', '.join(t.get('depends_on') or []) or '-')} | {t.get('priority', 3)} |")
    return (f"# Plan: {plan.get('goal', '')}\n\n" + "\n".join(rows)
            + "\n\n```mermaid\n" + plan_mermaid(plan) + "\n```\n\n![planned DAG](plan.png)\n")


@cache
def _arc_class() -> type:
    """matplotlib's `arc3` connection whose "is this point inside the box" test reads the box's
    outline once per arrow. Why: stock `Patch.contains` rebuilds the rounded box's path on every
    probe of the bisection that clips an arrow to its boxes (about 20 probes x 2 boxes x 2 draws per
    arrow), which made the plan picture the costliest part of a short run. Same test, same pixels."""
    from matplotlib.patches import ConnectionStyle

    class Arc3(ConnectionStyle.Arc3):
        def _in_patch(self, patch: Any):
            path, transform = patch.get_path(), patch.get_transform().frozen()
            radius = patch._process_radius(None)
            parts = [path] if path.codes is None else _subpaths(path)
            return lambda xy: any(part.contains_point(xy, transform, radius) for part in parts)

    return Arc3


def _subpaths(path: Any) -> list:
    """`path` cut before each MOVETO but the first, as `Patch.contains` tests it."""
    import numpy as np
    from matplotlib.path import Path

    starts = np.where(path.codes == Path.MOVETO)[0][1:]
    return [Path(v, c) for v, c in zip(np.split(path.vertices, starts), np.split(path.codes, starts))]


def plan_png(plan: dict) -> bytes:
    """The planned DAG as a PNG: columns by dependency depth, arrows from each dependency."""
    depth = levels(dependencies(plan))
    tasks = plan.get("tasks", [])
    columns: dict[int, list[str]] = {}
    for t in tasks:
        columns.setdefault(depth.get(t["id"], 0), []).append(t["id"])
    tall = max((len(c) for c in columns.values()), default=1)
    fig, ax = agg_figure(min(2.4 * (len(columns) or 1) + 1, 30), min(0.6 * tall + 1.2, 30))
    xy = {tid: (x, -y) for x, col in columns.items() for y, tid in enumerate(col)}
    by_id = {t["id"]: t for t in tasks}
    colors = role_colours([str(t.get("role")) for t in tasks])
    boxes = {}
    for tid, (x, y) in xy.items():
        t = by_id[tid]
        title = str(t.get("title", ""))
        label = f"{tid}\n{title[:22] + ('…' if len(title) > 22 else '')}"
        boxes[tid] = ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=3, color="white",
                             bbox={"boxstyle": "round,pad=0.3", "facecolor": colors[str(t.get("role"))],
                                   "alpha": 0.9, "edgecolor": "white"})
    for t in tasks:
        for d in t.get("depends_on") or []:
            if d in xy and d != t["id"]:
                (x0, y0), (x1, y1) = xy[d], xy[t["id"]]
                bend = 0.0 if x1 - x0 == 1 or y0 != y1 else 0.25  # arc over the boxes an edge skips
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=4,
                            arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "mutation_scale": 12,
                                        "connectionstyle": _arc_class()(rad=bend),
                                        "patchA": boxes[d].get_bbox_patch(),
                                        "patchB": boxes[t["id"]].get_bbox_patch()})
    ax.set_xlim(-0.7, max(columns, default=0) + 0.7)
    ax.set_ylim(-tall + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(f"Planned DAG: {len(tasks)} tasks, {len(columns)} levels", fontsize=9)
    return figure_png(fig)
