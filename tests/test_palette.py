"""One role palette: a role has one colour in timeline.png, plan.png and gantt.png."""
from __future__ import annotations

import datetime as dt
import io

import pytest

from utils.palette import KNOWN_ROLES, PALETTE, role_colour, role_colours

T0 = 1_700_000_000.0


def _colours_in(png: bytes) -> set[str]:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return {"#%02X%02X%02X" % rgb for _, rgb in img.getcolors(maxcolors=1 << 20)}


def test_known_roles_own_distinct_colours_whatever_else_is_on_the_chart():
    assert len({role_colour(r) for r in KNOWN_ROLES}) == len(KNOWN_ROLES) <= len(PALETTE)
    # an unknown role hashed onto writer's slot moves, writer keeps its colour
    clash = next(f"r{i}" for i in range(10_000) if role_colour(f"r{i}") == role_colour("writer"))
    colours = role_colours([clash, "writer"])
    assert colours["writer"] == role_colour("writer") and colours[clash] != colours["writer"]


@pytest.mark.parametrize("role", ["writer", "analyst"])  # roles of a workflow and of a project team alike
def test_same_role_same_colour_in_timeline_and_gantt(role):
    from utils.run.timeline import timeline_png
    from utils.tools.gantt import gantt_png

    other = "backend" if role == "writer" else "researcher"
    plan = {"goal": "G", "tasks": [{"id": "a", "title": "A", "role": role, "depends_on": [], "priority": 3},
                                   {"id": "b", "title": "B", "role": other, "depends_on": [], "priority": 3}]}
    results = {tid: {"id": tid, "role": r, "worker": i + 1, "started": T0, "finished": T0 + 2, "state": "done"}
               for i, (tid, r) in enumerate([("a", role), ("b", other)])}
    timeline = _colours_in(timeline_png(plan, results, workers=2))
    rows = [{"id": "w1", "name": "Item", "role": role, "person": "p1", "start": 0.0, "end": 3.0, "critical": False},
            {"id": "w2", "name": "Other", "role": other, "person": "p2", "start": 0.0, "end": 2.0, "critical": False}]
    gantt = _colours_in(gantt_png(rows, 3.0, dt.date(2026, 1, 5)))
    want = role_colour(role)
    assert want in timeline and want in gantt
    assert role_colour(other) in gantt and role_colour(other) in timeline
