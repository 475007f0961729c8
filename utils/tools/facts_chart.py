"""The report's chart of source facts: one small bar chart per kind of quantity, so only like is
compared with like.

A kind is more than a unit symbol: shares (38% of revenue) and changes (up 6.5%) are both "%",
but one bar of each on a common axis invites a comparison that means nothing; so are money in $ and
in $ billion, and the means of two different CSV columns. Each bar is labelled so it can be told
apart from its neighbours (its quarter, group or line when the words alone repeat), values are
drawn as the source states them, and no label is ever read as markup (`$48,000 of a $60,000` is
text, not matplotlib mathtext). Kept apart from `sources.py` because only this part needs
matplotlib; the facts arrive as the extraction tasks' `data`.
"""
from __future__ import annotations

import math
import re
import textwrap

from utils.tools import ToolInput, ToolResult, new_figure, png_bytes
from utils.tools.source_facts import plain_number, round_sig
from utils.tools.sources import quantity_text

MAX_CHART_KINDS = 6          # small charts, one per kind of quantity
MAX_BARS_PER_CHART = 8
_CHANGE = re.compile(r"\b(change|growth|grew|grow|rose|rise|rising|fell|fall|falling|increase[ds]?|decrease[ds]?|"
                     r"decline[ds]?|up|down|dropped|jumped|climbed|slow(?:ed)?|higher|lower)\b", re.IGNORECASE)


def kind_of(f: dict) -> str:
    """The kind of quantity a fact is, as a panel title: "share (%)", "change (%)", "rate (%)", "money ($)",
    "speed-up (times)", "count (orders)", "mean net_generation"."""
    unit = str(f.get("unit") or "")
    if not unit:  # a CSV column or JSON key with no unit: only the same measure compares
        what = re.sub(r"\s+(?:Q\d|#\d+)$|\s+\(.*\)$", "", str(f.get("what") or f.get("column") or "value"))
        return what
    if unit in ("%", "pp"):
        changing = unit == "pp" or f.get("earlier") is not None or _CHANGE.search(str(f.get("what") or ""))
        if changing:
            return f"change ({unit})"
        return f"rate ({unit})" if re.search(r"\brate\b", str(f.get("what") or ""), re.IGNORECASE) else f"share ({unit})"
    if unit[:1] in "$€£":
        return f"money ({unit})"
    if unit == "times":
        return "ratio (times)"
    return f"amount ({unit})"


def _chart_groups(inp: ToolInput) -> list[tuple[str, list[dict]]]:
    """Facts grouped by kind, largest groups first; a kind with one fact compares nothing."""
    by_kind: dict[str, list[dict]] = {}
    for res in inp.deps.values():
        data = (res or {}).get("data") or {}
        for f in data.get("facts") or []:
            v = f.get("value") if isinstance(f, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                by_kind.setdefault(kind_of(f), []).append(f)
    groups = [(k, fs[:MAX_BARS_PER_CHART]) for k, fs in by_kind.items() if len(fs) >= 2]
    groups.sort(key=lambda g: -len(g[1]))
    return groups[:MAX_CHART_KINDS]


def _shown(f: dict) -> float:
    """The value as the source states it; a computed mean (a CSV column's) at 3 significant figures."""
    return round_sig(float(f["value"])) if f.get("column") else float(f["value"])


def bar_labels(fs: list[dict], width: int = 28) -> list[str]:
    """One label per bar, wrapped at word boundaries (two lines at most), never cut mid-word; where
    the words repeat within a panel, the fact's group, scope or line is added so every bar differs."""
    base = [str(f.get("what") or f.get("text") or "value") for f in fs]
    out = []
    for f, text in zip(fs, base):
        if base.count(text) > 1:
            extra = f.get("group") or f.get("scope") or f"{f.get('file', '')}:L{f.get('line', '')}"
            text = f"{text} ({extra})" if extra not in text else text
        if base.count(text) > 1 or out.count(text):
            text = f"{text} [L{f.get('line', '')}]"
        lines = textwrap.wrap(text, width, break_long_words=False) or ["value"]
        out.append("\n".join(lines[:2]) + ("…" if len(lines) > 2 else ""))
    return out


def chart_facts(inp: ToolInput) -> ToolResult:
    """One small bar chart per kind of quantity. A "from X to Y" fact charts Y, its current figure,
    with X as a faint marker."""
    groups = _chart_groups(inp)
    if not inp.deps:
        return ToolResult(markdown="_No source files were given, so there are no figures to chart._",
                          data={"charted": []})
    if not groups:
        return ToolResult(markdown="_No two facts are of the same kind, so there is nothing to compare in a chart._",
                          data={"charted": []})
    rows = sum(len(fs) for _, fs in groups)
    fig = new_figure(9, 1.0 + 0.45 * rows + 0.8 * len(groups))
    axes = fig.subplots(len(groups), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(fs) + 1 for _, fs in groups]})[:, 0]
    charted = []
    for ax, (kind, fs) in zip(axes, groups):
        ys = list(range(len(fs)))
        values = [_shown(f) for f in fs]
        ax.barh(ys, values, color="#4C72B0")
        for y, f in zip(ys, fs):
            if f.get("earlier") is not None:
                ax.plot([float(f["earlier"])], [y], marker="|", markersize=14, color="#C44E52")
        ax.set_yticks(ys, bar_labels(fs), fontsize=8, parse_math=False)
        ax.invert_yaxis()
        for y, v in zip(ys, values):
            ax.text(v, y, f" {plain_number(v)}", va="center", fontsize=8, parse_math=False)
        ax.set_title(kind, fontsize=9, loc="left", parse_math=False)
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.margins(x=0.15)
        charted += [{"text": f.get("text"), "value": v, "unit": f.get("unit") or "", "what": f.get("what"),
                     "kind": kind, "earlier": f.get("earlier"), "total": f.get("total"), "scope": f.get("scope"),
                     "pointer": f.get("pointer")} for f, v in zip(fs, values)]
    fig.suptitle("Figures from the sources, one chart per kind of quantity (red mark: the earlier value)",
                 fontsize=10, parse_math=False)
    fig.tight_layout()
    md = ["![Figures from the sources, one chart per kind of quantity](facts.png)", ""]
    md += [f"{i}. {quantity_text(c)} [source: {c['pointer']}]" for i, c in enumerate(charted, 1)]
    return ToolResult(markdown="\n".join(md), data={"charted": charted, "kinds": [k for k, _ in groups]},
                      artifacts={"facts.png": png_bytes(fig)})


TOOLS_HERE = {"chart_facts": chart_facts}
