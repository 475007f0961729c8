"""Project tools: CPM and allocation checked against a small project worked out by hand."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from utils.errors import ToolError
from utils.tools import ToolInput, run_tool
from utils.palette import role_colour
from utils.tools.gantt import MAX_GANTT_ITEMS, finish_date, short_label, workday
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
    # 2026-01-05 is a Monday; 14 working days run to Thursday 2026-01-22 (weekends skipped)
    assert d["end_date"] == "2026-01-22"
    rows = {r["id"]: r for r in d["items"]}
    assert (rows["A"]["start_date"], rows["A"]["end_date"], rows["A"]["person"]) == ("2026-01-05", "2026-01-07", "dev-1")
    # A ends on day 3 (Wed); C runs 5 working days from Thu 8 Jan over the weekend to Wed 14 Jan
    assert (rows["C"]["start_date"], rows["C"]["end_date"]) == ("2026-01-08", "2026-01-14")
    md = res.markdown
    assert "| id | name | role | person | start | end | days | slack | critical |" in md
    assert "| A | Item A | dev | dev-1 | 2026-01-05 | 2026-01-07 | 3 | 0 | ✓ |" in md
    assert "```mermaid\ngantt" in md and "dateFormat YYYY-MM-DD" in md and "section dev" in md
    assert "Item A (dev-1) :crit, A, 2026-01-05, 2026-01-08" in md
    assert ":B, " in md  # B is not critical: no crit tag
    assert "![Gantt chart of the levelled schedule](gantt.png)" in md
    assert res.artifacts["gantt.png"].startswith(b"\x89PNG")


# A CI migration, not the shipped sample: devops-heavy, no designer, no frontend.
CI = [item("c1", 2, role="pm"), item("c2", 5, ["c1"], "devops"), item("c3", 4, ["c1"], "devops"),
      item("c4", 6, ["c2"], "devops"), item("c5", 3, ["c3", "c4"], "qa"), item("c6", 1, ["c5"], "pm")]


def test_start_date_defaults_to_today_on_a_working_day():
    res = run_tool("schedule", tin(work_items=CI, team={"pm": 1, "devops": 2, "qa": 1}))
    start = dt.date.fromisoformat(res.data["start_date"])
    today = dt.date.today()
    assert start.weekday() < 5 and 0 <= (start - today).days <= 2
    for r in res.data["items"]:
        for key in ("start_date", "end_date"):
            assert dt.date.fromisoformat(r[key]).weekday() < 5  # nothing scheduled on a weekend
    saturday = run_tool("schedule", tin(work_items=CI, team={"devops": 2}, start="2026-03-07"))
    assert saturday.data["start_date"] == "2026-03-09"  # moved to the Monday
    with pytest.raises(ToolError, match="params.start"):
        run_tool("schedule", tin(work_items=HAND, start="next monday"))


def test_default_team_follows_the_breakdown_and_nobody_idles():
    res = run_tool("schedule", tin(work_items=CI))
    # devops has 15 days of work in a 17-day critical path: one person; every role has work
    assert res.data["team"] == {"pm": 1, "devops": 1, "qa": 1}
    assert all(u > 0 for u in res.data["utilisation"].values())
    assert "critical-path length of its work" in res.markdown and "designer" not in res.markdown
    heavy = run_tool("schedule", tin(work_items=[item("a", 4), item("b", 4), item("c", 4)]))
    assert heavy.data["team"] == {"dev": 3}  # 12 days of parallel work in a 4-day critical path
    with pytest.raises(ToolError, match="no work breakdown"):
        run_tool("schedule", tin())


def test_given_team_says_why_a_role_is_idle_and_staffs_missing_roles():
    res = run_tool("schedule", tin(work_items=CI, team={"devops": 2, "designer": 1, "qa": 1}, team_source="--team"))
    assert res.data["team"] == {"devops": 2, "designer": 1, "qa": 1, "pm": 1}
    assert res.data["utilisation"]["designer"] == 0
    assert "designer: 0 % because no work item in the breakdown needs this role" in res.markdown
    assert "pm: the breakdown has work for this role but the team had nobody; one person added" in res.markdown
    proposed = run_tool("schedule", tin(work_items=CI, team={"devops": 2, "designer": 1, "pm": 1, "qa": 1},
                                        team_source="proposed by the model: small infra team"))
    assert "designer" not in proposed.data["team"] and all(u > 0 for u in proposed.data["utilisation"].values())
    assert "designer: proposed but no work item needs it" in proposed.markdown


def test_big_breakdown_is_fast_and_charts_are_capped():
    items = [item(f"w{i}", 1 + i % 4, [f"w{i - 1}"] if i % 3 else [], role=("dev", "qa", "ops")[i % 3])
             for i in range(3000)]
    res = run_tool("schedule", tin(work_items=items, team={"dev": 4, "qa": 2, "ops": 2}, start="2026-01-05"))
    assert len(res.data["items"]) == 3000 and res.markdown.count("\n| w") == 3000  # the table lists every item
    mermaid = res.markdown.split("```mermaid", 1)[1].split("```", 1)[0]
    assert sum(" :" in line for line in mermaid.splitlines()) == MAX_GANTT_ITEMS
    assert f"{3000 - MAX_GANTT_ITEMS} more are in the table" in res.markdown


def test_gantt_labels_and_role_colours():
    assert short_label("Migrate the integration test suites to hosted runners", 34) == "Migrate the integration test …"
    assert all(len(w) == len(w.strip()) for w in short_label("Migrate the integration test suites", 20).split())
    assert role_colour("devops") == role_colour("DevOps ") and role_colour("backend") != role_colour("frontend")
    assert role_colour("ml-platform") == role_colour("ml-platform")  # unknown roles: derived from the name


def test_workday_arithmetic():
    monday = dt.date(2026, 1, 5)
    assert workday(monday, 0) == monday and workday(monday, 4) == dt.date(2026, 1, 9)
    assert workday(monday, 5) == dt.date(2026, 1, 12) and workday(monday, 23) == dt.date(2026, 2, 5)
    assert finish_date(monday, 1) == monday and finish_date(monday, 5.5) == dt.date(2026, 1, 12)
