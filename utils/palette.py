"""The one role palette: a role has the same colour in timeline.png, plan.png and gantt.png.

There used to be two palettes in different orders, so `writer` was blue in one chart and grey in
the other. Known roles (the built-in workflows' roles and the usual team roles) own a slot each;
any other role is placed by a stable hash of its name (not Python's salted `hash`), and within one
chart a role whose slot is taken moves to the next free colour. Known roles are placed first, so
their colour never depends on which other roles share the chart.
"""
from __future__ import annotations

import zlib

PALETTE = ("#4C72B0", "#55A868", "#8172B2", "#CCB974", "#64B5CD", "#DD8452", "#937860", "#DA8BC3",
           "#8C8C8C", "#2CA02C", "#17BECF", "#BCBD22", "#F7B6D2", "#E17C05", "#1F77B4", "#9467BD",
           "#8C564B", "#7F7F7F", "#AEC7E8", "#FF9896")
KNOWN_ROLES = ("pm", "backend", "frontend", "qa", "devops", "data", "security", "designer", "writer",
               "analyst", "mobile", "ml", "researcher", "summarizer", "interpreter", "breakdown", "scheduler")
_SLOT = {role: i for i, role in enumerate(KNOWN_ROLES)}


def _key(role: str) -> str:
    return str(role).strip().lower()


def role_colour(role: str) -> str:
    """A role's own colour, the same in every run and chart (before any clash within one chart)."""
    key = _key(role)
    return PALETTE[_SLOT.get(key, zlib.crc32(key.encode("utf-8", "surrogatepass")) % len(PALETTE))]


def role_colours(roles: list[str]) -> dict[str, str]:
    """Distinct colours for the roles of one chart: each role takes its own colour, or the next free
    one when another role of the chart has it. Known roles go first, so they always keep theirs."""
    taken: dict[str, str] = {}
    used: set[str] = set()
    for role in sorted(set(roles), key=lambda r: (_key(r) not in _SLOT, _key(r), r)):
        start = PALETTE.index(role_colour(role))
        free = [PALETTE[(start + i) % len(PALETTE)] for i in range(len(PALETTE))
                if PALETTE[(start + i) % len(PALETTE)] not in used]
        taken[role] = free[0] if free else PALETTE[start]
        used.add(taken[role])
    return taken
