"""The run's timeline and plan pictures: pure functions of the plan and the task results."""
from __future__ import annotations

import struct

from utils.run.plan_view import plan_document, plan_mermaid, plan_png
from utils.palette import role_colour, role_colours
from utils.run.timeline import build, timeline_lines, timeline_png, write_pictures

T0 = 1_700_000_000.0


def result(tid: str, role: str, worker: int, start: float, end: float, state: str = "done", **extra) -> dict:
    return {"id": tid, "role": role, "worker": worker, "started": T0 + start, "finished": T0 + end,
            "state": state, **extra}


def plan_of(*tasks: tuple[str, str, list[str]]) -> dict:
    return {"goal": "G", "tasks": [{"id": i, "title": f"Title {i}", "role": r, "depends_on": d, "priority": 3}
                                   for i, r, d in tasks]}


def png_size(blob: bytes) -> tuple[int, int]:
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", blob[16:24])


# a -> b -> d, a -> c (short); on 2 workers: c runs beside b; e waits for a slot behind c
PLAN = plan_of(("a", "analyst", []), ("b", "writer", ["a"]), ("c", "writer", ["a"]),
               ("d", "editor", ["b"]), ("e", "writer", []))
RESULTS = {"a": result("a", "analyst", 1, 0.0, 1.0), "e": result("e", "writer", 2, 0.0, 0.5),
           "b": result("b", "writer", 1, 1.0, 3.0), "c": result("c", "writer", 2, 1.0, 1.5),
           "d": result("d", "editor", 1, 3.0, 4.0, state="failed", retries=2)}


def test_critical_path_follows_the_dependencies_that_set_the_end():
    tl = build(PLAN, RESULTS, workers=2)
    assert [b.id for b in tl.critical] == ["a", "b", "d"]  # lane order, start order
    assert abs(tl.span - 4.0) < 1e-6 and abs(tl.chain - 4.0) < 1e-6
    assert abs(tl.bound - max(4.0, 5.0 / 2)) < 1e-6
    assert "would not help" in tl.verdict()


def test_slot_waits_count_and_point_at_more_workers():
    plan = plan_of(("x", "w", []), ("y", "w", []), ("z", "w", []))
    res = {"x": result("x", "w", 1, 0, 1), "y": result("y", "w", 1, 1, 2), "z": result("z", "w", 1, 2, 3)}
    tl = build(plan, res, workers=1)
    assert abs(tl.slot_wait - 3.0) < 1e-6  # y waited 1 s, z 2 s
    assert [b.id for b in tl.critical] == ["x", "y", "z"]  # each freed the slot for the next
    assert "more workers would help" in tl.verdict()


def test_terminal_lines_show_lanes_roles_critical_path_and_failures():
    lines = timeline_lines(PLAN, RESULTS, workers=2, width=41)
    assert lines[0].startswith("timeline: 4.0 s on 2 worker lane(s); lower bound 4.0 s (x1.00)")
    lane1, lane2 = lines[1], lines[2]
    assert lane1.strip().startswith("w1 |AAAAAAAAAAWWWWWWWWWWWWWWWWWWWW!!!!!!!!!!")
    assert "w" in lane2 and "W" not in lane2  # lane 2's tasks are off the critical path
    assert all(len(line.split("|")[1]) == 41 for line in lines[1:3])
    assert "a analyst" in lines[-1] and "! failed" in lines[-1]


def test_terminal_lines_cap_the_lanes_and_say_so():
    plan = plan_of(*[(f"t{i}", "w", []) for i in range(20)])
    res = {f"t{i}": result(f"t{i}", "w", i + 1, 0, 1) for i in range(20)}
    lines = timeline_lines(plan, res, max_lanes=5)
    assert sum(1 for line in lines if "|" in line) == 5
    assert any(line.strip() == "(15 more lanes in timeline.png)" for line in lines)


def test_nothing_ran_gives_no_lines():
    assert timeline_lines(PLAN, {"a": {"state": "skipped"}}) == []


def test_timeline_png_is_a_png_and_grows_with_lanes():
    small = png_size(timeline_png(PLAN, RESULTS, workers=2, phases={"run_started": T0 - 2, "run_ended": T0 + 6}))
    plan = plan_of(*[(f"t{i}", "w", []) for i in range(12)])
    big = png_size(timeline_png(plan, {f"t{i}": result(f"t{i}", "w", i + 1, 0, 1) for i in range(12)}))
    assert big[1] > small[1] > 100


def test_role_colours_are_stable_and_distinct_within_a_run():
    roles = ["writer", "analyst", "editor", "researcher"]
    colors = role_colours(roles)
    assert colors == role_colours(list(reversed(roles))) and len(set(colors.values())) == 4
    assert role_colour("writer") == role_colour("writer")


def test_plan_mermaid_and_document_hold_every_task_and_edge():
    text = plan_mermaid(PLAN)
    assert text.startswith("graph LR") and text.count("-->") == 3
    assert 'n1["b: Title b (writer)"]' in text
    doc = plan_document(PLAN)
    assert "```mermaid" in doc and "| d | Title d | editor | b | 3 |" in doc


def test_plan_mermaid_neutralises_quotes_and_brackets():
    plan = plan_of(("q", "w", []))
    plan["tasks"][0]["title"] = 'Say "hi"] --> x[evil'
    line = plan_mermaid(plan).splitlines()[1]
    assert line.count('"') == 2 and "-->" not in line and line.count("[") == 1


def test_plan_png_draws_a_cycle_without_hanging():
    plan = plan_of(("a", "w", ["b"]), ("b", "w", ["a"]))
    assert png_size(plan_png(plan))[0] > 50


def test_write_pictures_for_a_run_and_for_plan_only(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shared = {"plan": PLAN, "results": RESULTS, "options": {"max_workers": 2},
              "meta": {"started": T0 - 1, "elapsed_s": 6.0}, "workflow": "blog"}
    assert write_pictures(shared, run, "ok") == ["timeline.png"]
    png_size((run / "timeline.png").read_bytes())
    planned = tmp_path / "planned"
    planned.mkdir()
    assert write_pictures({"plan": PLAN, "results": {}}, planned, "planned") == ["plan.png", "output.md"]
    assert "```mermaid" in (planned / "output.md").read_text()


def test_a_drawing_failure_never_fails_the_run(tmp_path):
    shared = {"plan": PLAN, "results": {"a": result("a", "w", 1, 0, 1)}, "meta": {}}
    assert write_pictures(shared, tmp_path / "missing-folder", "ok") == []
    assert "pictures_error" in shared["meta"]


def test_a_late_start_with_a_free_slot_is_a_delay_not_a_slot_wait():
    plan = plan_of(("x", "w", []), ("y", "w", ["x"]))
    res = {"x": result("x", "w", 1, 0, 1), "y": result("y", "w", 1, 1.5, 2.5)}  # 0.5 s gap, 4 slots
    tl = build(plan, res, workers=4)
    assert tl.slot_wait == 0 and abs(tl.delay - 0.5) < 1e-6
    assert "late" in tl.verdict()
    assert "-" in timeline_lines(plan, res, workers=4, width=26)[1]


# ---------------------------------------------------------------- issue 24.8: revision passes

def test_first_passes_are_drawn_and_the_review_gap_is_review_not_a_delay():
    plan = plan_of(("x", "w", []), ("y", "w", []))
    final = {"x": result("x", "w", 1, 0, 1), "y": result("y", "w", 1, 3, 4, revision=1)}  # sent back at review
    first = [result("y", "w", 2, 0, 1.2)]  # y's first pass ran on worker 2 beside x
    tl = build(plan, final, workers=2, earlier=first)
    assert sorted(tl.lanes) == [1, 2] and len(tl.bars) == 3  # the first pass is on its lane
    assert tl.delay == 0 and "engine or I/O" not in tl.verdict()
    assert [(round(a, 3), round(b, 3)) for a, b in tl.reviews] == [(1.2, 3.0)]


def test_write_pictures_reads_earlier_passes_from_the_journal_and_offline_has_no_ratio(tmp_path, monkeypatch):
    import json

    from utils.run import timeline

    (tmp_path / "journal.jsonl").write_text(json.dumps({"k": "task", "seq": 1, "result": first_pass()}) + "\n",
                                            encoding="utf-8")
    seen = {}
    monkeypatch.setattr(timeline, "timeline_png", lambda *a, **k: seen.update(k) or b"png")
    shared = {"plan": plan_of(("x", "w", []), ("y", "w", [])), "workflow": "blog", "options": {"max_workers": 2},
              "results": {"x": result("x", "w", 1, 0, 1), "y": result("y", "w", 1, 3, 4, revision=1)},
              "meta": {"provider": "offline"}}
    assert write_pictures(shared, tmp_path, "ok") == ["timeline.png"]
    assert [r["worker"] for r in seen["earlier"]] == [2] and seen["offline"] is True


def first_pass() -> dict:
    return result("y", "w", 2, 0, 1.2)


def test_an_offline_timeline_title_has_no_ratio():
    title = __import__("utils.run.timeline", fromlist=["x"]).timeline_title(
        build(PLAN, RESULTS, workers=2), "blog", offline=True)
    assert "lower bound" not in title and "offline" in title


def test_the_plan_arrows_box_test_answers_as_matplotlibs_own():
    """plan_png's arrows are clipped with a box test that reads the box's outline once
    (`_arc_class`); on a grid around a rounded box it must agree with `Patch.contains` everywhere."""
    from types import SimpleNamespace

    from utils.run.plan_view import _arc_class
    from utils.run.timeline import agg_figure

    fig, ax = agg_figure(3, 2)
    text = ax.text(0.5, 0.5, "w1\nA task title", ha="center", va="center", fontsize=7,
                   bbox={"boxstyle": "round,pad=0.3", "facecolor": "#4C78A8", "alpha": 0.9, "edgecolor": "white"})
    fig.canvas.draw()
    box = text.get_bbox_patch()
    inside = _arc_class()(rad=0.25)._in_patch(box)
    x0, y0, x1, y1 = box.get_window_extent().extents
    grid = [(x0 - 4 + (x1 - x0 + 8) * i / 40, y0 - 4 + (y1 - y0 + 8) * j / 40) for i in range(41) for j in range(41)]
    theirs = [box.contains(SimpleNamespace(x=x, y=y))[0] for x, y in grid]
    assert [inside(xy) for xy in grid] == theirs
    assert any(theirs) and not all(theirs)  # the grid crosses the box's outline
