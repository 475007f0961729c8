"""The schedule drawn for people: working-day calendar, Mermaid Gantt and a PNG Gantt.

Bars are placed in working days (the scheduler's unit) and labelled with calendar dates, weekends
skipped. Each role keeps its colour from run to run and chart to chart (utils/palette.py), and item
names are shortened at word boundaries. Both charts draw at most MAX_GANTT_ITEMS items, so a 5,000-item breakdown renders in the same time as a 60-item one; the
schedule table still lists every item.
"""
from __future__ import annotations

import datetime as dt
import re
import textwrap

from utils.palette import role_colours
from utils.tools import new_figure, png_bytes

MAX_GANTT_ITEMS = 60
EPS = 1e-9


Holidays = tuple  # of datetime.date: days off besides weekends (Christmas, New Year, --holidays)


def default_holidays(first_year: int, years: int = 2) -> Holidays:
    """Christmas Day and New Year's Day in `years` calendar years from `first_year`: no team works
    them, and a schedule that counts them promises a date it cannot keep."""
    return tuple(d for y in range(first_year, first_year + years + 1)
                 for d in (dt.date(y, 1, 1), dt.date(y, 12, 25)))


def workday(start: dt.date, offset: float, holidays: Holidays = ()) -> dt.date:
    """The date `offset` whole working days after `start` (Mon-Fri, `holidays` off; a start on a day
    off moves to the next working day). numpy's business-day calendar: O(1) whatever the span."""
    import numpy as np

    day = np.busday_offset(np.datetime64(start, "D"), int(offset + EPS), roll="forward",
                           holidays=[np.datetime64(h, "D") for h in holidays])
    return day.astype(dt.date)


def first_workday(day: dt.date, holidays: Holidays = ()) -> dt.date:
    return workday(day, 0, holidays)


def finish_date(start: dt.date, end: float, holidays: Holidays = ()) -> dt.date:
    """The last working day an item occupies when it ends `end` working days after `start`."""
    return workday(start, max(_ceil(end) - 1, 0), holidays)


def _ceil(x: float) -> int:
    whole = int(x + EPS)
    return whole if abs(x - whole) < EPS else whole + 1


def short_label(text: str, width: int = 34) -> str:
    """Shortened at a word boundary with an ellipsis, never cut mid-word."""
    flat = " ".join(str(text).split())
    if len(flat) <= width:
        return flat
    cut = textwrap.shorten(flat, width=width, placeholder=" …")
    if cut == " …" or cut == "…":  # a single word longer than the width: keep it whole
        return flat.split()[0]
    return cut


def shown_rows(rows: list[dict]) -> tuple[list[dict], int]:
    """Rows the charts draw (critical items first, then the earliest), and how many are left out."""
    if len(rows) <= MAX_GANTT_ITEMS:
        return rows, 0
    keep = {id(r) for r in [r for r in rows if r["critical"]][:MAX_GANTT_ITEMS]}
    for r in rows:
        if len(keep) >= MAX_GANTT_ITEMS:
            break
        keep.add(id(r))
    return [r for r in rows if id(r) in keep], len(rows) - MAX_GANTT_ITEMS


def _mermaid_text(s: str) -> str:
    """Mermaid gantt task names end at ':' and comments start at '%%'/'#': keep names plain."""
    return re.sub(r"\s+", " ", re.sub(r"[:#;%]", " ", s)).strip() or "item"


def mermaid_gantt(title: str, rows: list[dict], start: dt.date, holidays: Holidays = ()) -> str:
    """A Mermaid gantt of the levelled schedule: one section per role, `crit` on critical items."""
    rows, left_out = shown_rows(rows)
    lines = ["```mermaid", "gantt", f"    title {_mermaid_text(title)}", "    dateFormat YYYY-MM-DD",
             "    excludes " + ", ".join(["weekends", *(h.isoformat() for h in holidays)])]
    by_role: dict[str, list[dict]] = {}
    for r in rows:
        by_role.setdefault(r["role"], []).append(r)
    for role, group in by_role.items():
        lines.append(f"    section {_mermaid_text(role)}")
        for r in group:
            tags = ["crit"] if r["critical"] else []
            tid = re.sub(r"\W", "_", r["id"])
            end = workday(start, _ceil(r["end"]), holidays)  # Mermaid's end date is exclusive
            lines.append(f"    {_mermaid_text(short_label(r['name'], 40))} ({_mermaid_text(r['person'])}) :"
                         f"{', '.join(tags + [tid, r['start_date'], end.isoformat()])}")
    lines.append("```")
    if left_out:
        lines.append(f"\n_The Gantt charts show {MAX_GANTT_ITEMS} items (critical ones first); "
                     f"{left_out} more are in the table._")
    return "\n".join(lines)


def gantt_png(rows: list[dict], duration: float, start: dt.date, holidays: Holidays = ()) -> bytes:
    """A bar per item on a date axis (working days), coloured by role, critical items outlined in red."""
    rows, left_out = shown_rows(rows)
    fig = new_figure(10, 1.4 + 0.4 * len(rows))
    ax = fig.add_subplot(1, 1, 1)
    colours = role_colours([r["role"] for r in rows])
    for y, r in enumerate(rows):
        ax.barh(y, r["end"] - r["start"], left=r["start"], color=colours[r["role"]],
                edgecolor="#C44E52" if r["critical"] else "white", linewidth=2 if r["critical"] else 0.5)
        ax.text(r["start"] + 0.1, y, r["person"], va="center", fontsize=7, color="white")
    ax.set_yticks(range(len(rows)), [f"{r['id']} {short_label(r['name'])}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    span = max(duration, 1.0)
    ax.set_xlim(0, span * 1.02)
    step = max(1, _ceil(span / 8))
    ticks = list(range(0, int(span) + 1, step))
    ax.set_xticks(ticks, [workday(start, t, holidays).strftime("%d %b") for t in ticks], fontsize=8)
    ax.set_xlabel(f"date (working days from {start.isoformat()}, weekends skipped)")
    title = "Resource-levelled schedule (critical items outlined in red)"
    if left_out:
        title += f"\n{len(rows)} of {len(rows) + left_out} items shown; the table lists all"
    ax.set_title(title, fontsize=10)
    for role in dict.fromkeys(r["role"] for r in rows):
        ax.barh(0, 0, color=colours[role], label=role)
    ax.legend(loc="upper right", fontsize=8)  # rows run by start date: top right is empty
    fig.tight_layout()
    return png_bytes(fig)
