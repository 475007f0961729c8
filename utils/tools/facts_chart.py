"""The report's chart of source facts: one small bar chart per unit, so only like units are compared.

Kept apart from `sources.py` (reading files, extracting facts) because it is the only part that
needs matplotlib, and the facts it draws arrive as the extraction tasks' `data`.
"""
from __future__ import annotations

import math
import textwrap

from utils.tools import ToolInput, ToolResult, new_figure, png_bytes
from utils.tools.source_facts import plain_number, round_sig
from utils.tools.sources import quantity_text

MAX_CHART_UNITS = 4          # small charts, one per unit
MAX_BARS_PER_CHART = 8


def _chart_groups(inp: ToolInput) -> list[tuple[str, list[dict]]]:
    """Facts grouped by unit, largest groups first; a unit with one fact compares nothing."""
    by_unit: dict[str, list[dict]] = {}
    for res in inp.deps.values():
        data = (res or {}).get("data") or {}
        for f in data.get("facts") or []:
            v = f.get("value") if isinstance(f, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and f.get("unit"):
                by_unit.setdefault(str(f["unit"]), []).append(f)
    groups = [(u, fs[:MAX_BARS_PER_CHART]) for u, fs in by_unit.items() if len(fs) >= 2]
    groups.sort(key=lambda g: -len(g[1]))
    return groups[:MAX_CHART_UNITS]


def _label(f: dict, width: int = 28) -> str:
    """A bar label wrapped at word boundaries (two lines at most), never cut mid-word."""
    text = f.get("measure") or f.get("text") or "value"
    lines = textwrap.wrap(text, width, break_long_words=False) or ["value"]
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def chart_facts(inp: ToolInput) -> ToolResult:
    """One small bar chart per unit: only like units are compared, values rounded to 3 significant
    figures. A "from X to Y" fact charts Y, its current figure, with X as a faint marker."""
    groups = _chart_groups(inp)
    if not inp.deps:
        return ToolResult(markdown="_No source files were given, so there are no figures to chart._",
                          data={"charted": []})
    if not groups:
        return ToolResult(markdown="_No two facts share a unit, so there is nothing to compare in a chart._",
                          data={"charted": []})
    rows = sum(len(fs) for _, fs in groups)
    fig = new_figure(9, 1.0 + 0.45 * rows + 0.8 * len(groups))
    axes = fig.subplots(len(groups), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(fs) + 1 for _, fs in groups]})[:, 0]
    charted = []
    for ax, (unit, fs) in zip(axes, groups):
        ys = list(range(len(fs)))
        values = [round_sig(float(f["value"])) for f in fs]
        ax.barh(ys, values, color="#4C72B0")
        for y, f in zip(ys, fs):
            if f.get("previous") is not None:
                ax.plot([round_sig(float(f["previous"]))], [y], marker="|", markersize=14, color="#C44E52")
        ax.set_yticks(ys, [_label(f) for f in fs], fontsize=8)
        ax.invert_yaxis()
        for y, v in zip(ys, values):
            ax.text(v, y, f" {plain_number(v)}", va="center", fontsize=8)
        ax.set_title(f"Unit: {unit}", fontsize=9, loc="left")
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.margins(x=0.15)
        charted += [{"text": f["text"], "value": v, "unit": unit, "measure": f.get("measure"),
                     "previous": f.get("previous"), "pointer": f.get("pointer")} for f, v in zip(fs, values)]
    fig.suptitle("Figures from the sources, one chart per unit (red mark: the earlier value)", fontsize=10)
    fig.tight_layout()
    md = ["![Figures from the sources, one chart per unit](facts.png)", ""]
    md += [f"{i}. {quantity_text(c)} [source: {c['pointer']}]" for i, c in enumerate(charted, 1)]
    return ToolResult(markdown="\n".join(md), data={"charted": charted, "units": [u for u, _ in groups]},
                      artifacts={"facts.png": png_bytes(fig)})


TOOLS_HERE = {"chart_facts": chart_facts}
