"""Project tools: CPM and allocation checked against a small project worked out by hand."""
from __future__ import annotations

import json

import pytest

from utils.errors import ToolError
from utils.tools import ToolInput, run_tool
from utils.tools.project import allocate_resources, critical_path


def item(iid: str, days: float, deps: list[str] | None = None, role: str = "dev") -> dict:
    return {"id": iid, "name": f"Item {iid}", "estimate_days": days, "depends_on": deps or [], "role": role}


# A(3) -> B(2) -> D(4) and A -> C(5) -> D. By hand: A 0-3, B 3-5, C 3-8, D 8-12.
# Duration 12, critical path A, C, D; B may start as late as 6 (LF = LS of D = 8): slack 3.
HAND = [item("A", 3), item("B", 2, ["A"]), item("C", 5, ["A"]), item("D", 4, ["B", "C"])]


def tin(deps: dict | None = None, **params) -> ToolInput:
    return ToolInput(task={"id": "t9", "title": "Launch plan", "inputs": []}, data_path=None, input_paths=[],
                     deps=deps or {}, params=params, goal="test")


def test_critical_path_by_hand():
    res = critical_path(HAND)
    assert res["duration_days"] == 12
    assert res["critical_path"] == ["A", "C", "D"]
    assert res["critical"] == ["A", "C", "D"]
    rows = res["items"]
    assert (rows["A"]["es"], rows["A"]["ef"], rows["A"]["slack"]) == (0, 3, 0)
    assert (rows["B"]["es"], rows["B"]["ef"], rows["B"]["ls"], rows["B"]["lf"]) == (3, 5, 6, 8)
    assert rows["B"]["slack"] == 3 and rows["B"]["critical"] is False
    assert (rows["C"]["es"], rows["C"]["lf"], rows["C"]["slack"]) == (3, 8, 0)
    assert (rows["D"]["es"], rows["D"]["ef"], rows["D"]["ls"]) == (8, 12, 8)


def test_cycle_is_named():
    items = [item("A", 1, ["C"]), item("B", 1, ["A"]), item("C", 1, ["B"]), item("X", 1)]
    with pytest.raises(ToolError, match="dependency cycle") as exc:
        critical_path(items)
    msg = str(exc.value)
    for iid in "ABC":
        assert iid in msg.split(":", 1)[1]
    assert "X" not in msg.split(":", 1)[1]


@pytest.mark.parametrize("items, message", [
    ([item("A", 1, ["Z"])], "'A' depends on unknown item 'Z'"),
    ([item("A", 1, ["A"])], "'A' depends on itself"),
    ([item("A", 0)], "estimate_days must be a number > 0"),
    ([item("A", "soon")], "estimate_days must be a number > 0"),
    ([item("A", 1), item("A", 2)], "duplicate work item id 'A'"),
    ([], "no work items"),
])
def test_invalid_items(items: list, message: str):
    with pytest.raises(ToolError, match=message):
        critical_path(items)


def test_capacity_one_serialises_parallel_items():
    items = [item("P", 2), item("Q", 3)]
    one = allocate_resources(items, {"dev": 1})
    assert one["levelled_duration_days"] == 5
    spans = sorted((r["start"], r["end"]) for r in one["items"].values())
    assert spans == [(0, 2), (2, 5)] or spans == [(0, 3), (3, 5)]
    assert {r["person"] for r in one["items"].values()} == {"dev-1"}
    assert one["utilisation"]["dev"] == 1.0
    two = allocate_resources(items, {"dev": 2})
    assert two["levelled_duration_days"] == 3
    assert {r["person"] for r in two["items"].values()} == {"dev-1", "dev-2"}
    assert two["utilisation"]["dev"] == pytest.approx(5 / 6, abs=1e-6)


def test_allocation_respects_dependencies_and_is_never_shorter_than_cpm():
    items = HAND + [item("E", 4, ["A"])]
    cpm = critical_path(items)
    res = allocate_resources(items, {"dev": 2})
    rows = res["items"]
    for it in items:
        for d in it["depends_on"]:
            assert rows[it["id"]]["start"] >= rows[d]["end"]
    assert res["levelled_duration_days"] >= cpm["duration_days"]
    # no person does two things at once
    by_person: dict[str, list] = {}
    for r in rows.values():
        by_person.setdefault(r["person"], []).append((r["start"], r["end"]))
    for spans in by_person.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_role_missing_from_team():
    with pytest.raises(ToolError, match="no team members for role\\(s\\) qa; team roles: dev"):
        allocate_resources([item("A", 1), item("B", 1, role="qa")], {"dev": 1})
    with pytest.raises(ToolError, match="whole number >= 1"):
        allocate_resources([item("A", 1)], {"dev": 0})


def test_schedule_tool_from_dependency_work_items():
    deps = {"t1": {"data": {"summary": "x", "work_items": HAND}, "output": "..."}, "t0": {"data": None}}
    res = run_tool("schedule", tin(deps, team={"dev": 1}, start="2026-01-05"))
    d = res.data
    json.dumps(d)
    assert d["duration_days"] == 12 and d["critical_path"] == ["A", "C", "D"]
    assert d["levelled_duration_days"] == 14  # one developer does all 14 days of work in sequence
    assert d["start_date"] == "2026-01-05"
    # 2026-01-05 is a Monday; 14 working days later is Friday 2026-01-23
    assert d["end_date"] == "2026-01-23"
    rows = {r["id"]: r for r in d["items"]}
    assert rows["A"]["start_date"] == "2026-01-05" and rows["A"]["person"] == "dev-1"
    md = res.markdown
    assert "| id | name | role | person |" in md and "| A | Item A | dev | dev-1 |" in md
    assert "```mermaid\ngantt" in md and "dateFormat YYYY-MM-DD" in md and "section dev" in md
    assert "Item A (dev-1) :crit, A, 2026-01-05, 2026-01-08" in md
    assert ":B, " in md  # B is not critical: no crit tag
    assert "![Gantt chart of the levelled schedule](gantt.png)" in md
    assert res.artifacts["gantt.png"].startswith(b"\x89PNG")


def test_schedule_from_params_and_default_team():
    res = run_tool("schedule", tin(work_items=HAND))
    assert res.data["team"] == {"dev": 1} and "one person" in res.markdown
    with pytest.raises(ToolError, match="no work breakdown"):
        run_tool("schedule", tin())
    with pytest.raises(ToolError, match="params.start"):
        run_tool("schedule", tin(work_items=HAND, start="next monday"))
