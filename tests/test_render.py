from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
from pathlib import Path

from utils.events import Event
from utils.app.render import Display, choose_mode, plan_lines, summary_line

STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ")

PLAN = {
    "goal": "Write a blog post about tide pools",
    "notes": "friendly tone",
    "tasks": [
        {"id": "t1", "title": "Outline", "role": "planner", "depends_on": [], "priority": 1},
        {"id": "t2", "title": "Draft intro", "role": "writer", "depends_on": ["t1"], "priority": 2},
        {"id": "t3", "title": "Draft body", "role": "writer", "depends_on": ["t1"], "priority": 3},
        {"id": "t4", "title": "Edit", "role": "editor", "depends_on": ["t2", "t3"], "priority": 4},
    ],
}


def _task(tid, state, **kw):
    role = {"t1": "planner", "t4": "editor"}.get(tid, "writer")
    data = {"id": tid, "title": f"title {tid}", "role": role, "state": state, "worker": None, "elapsed_s": 0.0,
            "tokens": 0, "error": None, "revision": 0}
    data.update(kw)
    return Event("task", data)


def scripted_events() -> list[Event]:
    return [
        Event("phase", {"name": "planning"}),
        Event("llm", {"calls": 1, "prompt_tokens": 100, "completion_tokens": 50, "cached": 0, "retries": 0,
                      "seconds": 0.5}),
        Event("plan", {"plan": PLAN, "round": 0, "source": "model"}),
        Event("phase", {"name": "working"}),
        _task("t1", "waiting"), _task("t1", "ready"),
        _task("t1", "running", worker=1),
        Event("retry", {"purpose": "task t1 (planner)", "attempt": 1, "wait_s": 0.5, "reason": "429 rate limited"}),
        Event("llm", {"calls": 2, "prompt_tokens": 300, "completion_tokens": 40, "cached": 0, "retries": 1,
                      "seconds": 1.0}),
        _task("t1", "done", worker=1, elapsed_s=1.23, tokens=340),
        _task("t2", "running", worker=1),
        _task("t3", "running", worker=2),
        _task("t2", "done", worker=1, elapsed_s=0.5, tokens=1200),
        _task("t3", "failed", worker=2, elapsed_s=0.2, error="LLM call failed: boom"),
        _task("t4", "skipped", error="dependency did not finish: t3"),
        Event("phase", {"name": "reviewing"}),
        Event("review", {"round": 1, "score": 7.5, "revise": [{"id": "t2", "feedback": "too short"}],
                         "approved": ["t1"]}),
        Event("notice", {"level": "warn", "message": "budget nearly spent"}),
        Event("phase", {"name": "done"}),
    ]


INFO = {"status": "partial", "elapsed_s": 12.34, "calls": 14, "prompt_tokens": 5000, "completion_tokens": 210,
        "cached": 0, "cost_usd": 0.0123, "output_dir": "runs/20260101-blog", "failed": [{"id": "t3", "error": "boom"}],
        "skipped": ["t4"], "offline": False, "resume_hint": "python main.py --resume runs/20260101-blog"}


# ---------------------------------------------------------------- pure helpers

def test_summary_line_with_cost():
    info = dict(INFO, status="ok", failed=[], skipped=[])
    assert summary_line(info) == "ok · 12.3 s · 14 calls · 5,210 tokens · $0.0123 · runs/20260101-blog"


def test_summary_line_without_cost_and_partial():
    line = summary_line(dict(INFO, cost_usd=None))
    assert line.startswith("partial (1 failed, 1 skipped) · 12.3 s · 14 calls · 5,210 tokens · runs/")
    assert "$" not in line


def test_summary_line_offline_label():
    info = dict(INFO, status="ok", failed=[], skipped=[], offline=True, cost_usd=0.0, output_dir=None)
    line = summary_line(info)
    assert line == "ok · 12.3 s · offline: no model called"  # no calls or tokens as if a model ran
    assert "$" not in line


def test_summary_line_cached_and_minutes():
    line = summary_line(dict(INFO, status="failed", cached=3, elapsed_s=125, calls=1))
    assert "1 call (3 cached)" in line and "2 min 05 s" in line and line.startswith("failed")


def test_plan_lines_has_ids_roles_and_deps():
    lines = plan_lines(PLAN)
    assert lines[0] == "Plan: Write a blog post about tide pools"
    text = "\n".join(lines)
    for t in PLAN["tasks"]:
        assert t["id"] in text and f"[{t['role']}]" in text
    assert any(line.strip().startswith("t4") and "← t2, t3" in line for line in lines)
    assert all(line.startswith("  ") for line in lines[1:])


# ---------------------------------------------------------------- choose_mode

class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_choose_mode():
    assert choose_mode(quiet=False, json_out=False, stream=io.StringIO(), env={}) == "plain"
    assert choose_mode(quiet=False, json_out=False, stream=_Tty(), env={}) == "rich"
    assert choose_mode(quiet=False, json_out=False, stream=_Tty(), env={"NO_COLOR": "1"}) == "rich"  # no colour
    assert choose_mode(quiet=False, json_out=False, stream=_Tty(), env={"TERM": "dumb"}) == "plain"
    assert choose_mode(quiet=True, json_out=True, stream=_Tty(), env={}) == "json"
    assert choose_mode(quiet=True, json_out=False, stream=_Tty(), env={}) == "quiet"


# ---------------------------------------------------------------- plain / quiet / json

def _plain_run() -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    d = Display("plain", file=out, err_file=err)
    with d:
        d.show_plan(PLAN)
        for ev in scripted_events():
            d(ev)
        d.notice("saved run state")
    d.show_document("# Doc\n\nhello", "runs/x/document.md")
    d.summary(INFO)
    return out.getvalue(), err.getvalue()


def test_plain_mode_lines():
    out, err = _plain_run()
    assert "\x1b" not in out and err == ""
    lines = [STAMP.sub("", line) for line in out.splitlines()]
    expected = [
        "t1 running (planner, worker 1)",
        "retry 1 for task t1 (planner) in 0.5 s: 429 rate limited",
        "t1 done in 1.2 s, 340 tokens",
        "t2 running (writer, worker 1)",
        "t3 running (writer, worker 2)",
        "t2 done in 0.5 s, 1,200 tokens",
        "t3 failed: LLM call failed: boom",
        "t4 skipped: dependency did not finish: t3",
        "phase: reviewing",
        "Review round 1: score 7.5/10 — 1 sent back: t2 (too short)",
        "warning: budget nearly spent",
        "note: saved run state",
        "Document: runs/x/document.md",
        summary_line(INFO),
        "  t3 failed: boom",
        "  skipped: t4",
        "  resume: python main.py --resume runs/20260101-blog",
    ]
    positions = [lines.index(e) for e in expected]
    assert positions == sorted(positions)
    assert lines[:len(plan_lines(PLAN))] == plan_lines(PLAN)
    # chatty states and per-call llm events are not printed
    assert not any("waiting" in line or "ready" in line or "calls" in line for line in lines[:-5])
    # event lines carry a timestamp, the plan and summary do not
    raw = out.splitlines()
    assert STAMP.match(raw[raw.index(next(r for r in raw if r.endswith("t1 running (planner, worker 1)")))])
    assert not STAMP.match(raw[0])


def test_quiet_mode_the_summary_line_on_stdout_warnings_and_failures_on_stderr():
    out, err = io.StringIO(), io.StringIO()
    d = Display("quiet", file=out, err_file=err)
    with d:
        d.show_plan(PLAN)
        for ev in scripted_events():
            d(ev)
        d.notice("just info")
    d.show_document("# Doc", "runs/x/document.md")
    d.summary(dict(INFO, status="ok", failed=[], skipped=[]))
    assert out.getvalue() == summary_line(dict(INFO, status="ok", failed=[], skipped=[])) + "\n"
    assert err.getvalue().splitlines() == ["t3 failed: LLM call failed: boom", "warning: budget nearly spent"]


def test_json_mode_prints_nothing_on_stdout():
    out, err = io.StringIO(), io.StringIO()
    d = Display("json", file=out, err_file=err)
    with d:
        d.show_plan(PLAN)
        for ev in scripted_events():
            d(ev)
    d.show_document("# Doc", "runs/x/document.md")
    d.summary(INFO)
    assert out.getvalue() == ""


def test_plain_thread_safety():
    out = io.StringIO()
    d = Display("plain", file=out)
    n_threads, per_thread = 4, 200
    barrier = threading.Barrier(n_threads)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            tid = f"w{k}-{i}"
            d(_task(tid, "running", worker=k))
            d(_task(tid, "ready"))      # not printed
            d(Event("llm", {"calls": i}))  # not printed

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == n_threads * per_thread
    assert all(STAMP.match(line) and line.endswith(")") for line in lines)
    assert len(d.board.rows) == n_threads * per_thread


# ---------------------------------------------------------------- rich

def test_rich_mode_full_sequence():
    buf = io.StringIO()
    d = Display("rich", file=buf, width=120)
    d.show_plan(PLAN)
    with d:
        for ev in scripted_events():
            d(ev)
        d(Event("plan", {"plan": {**PLAN, "tasks": PLAN["tasks"] + [
            {"id": "t5", "title": "Fix [bold]", "role": "writer", "depends_on": ["t4"]}]},
            "round": 1, "source": "replan"}))
        d(_task("t5", "running", worker=1))
        d._renderable()  # a frame with a running (spinner) row renders without error
    d.show_document("# Title\n\n" + "line\n\n" * 300, "runs/x/document.md", max_lines=20)
    d.summary(INFO)
    text = buf.getvalue()
    for tid in ("t1", "t2", "t3", "t4", "t5"):
        assert tid in text
    assert "Review round 1: score 7.5/10" in text
    assert "full document" in text and "runs/x/document.md" in text
    assert "1 retry" in text and "4/5 tasks" in text
    assert summary_line(INFO) in text
    # the replan kept earlier states
    assert d.board.rows["t1"].state == "done" and d.board.rows["t5"].state == "running"


def test_rich_short_document_and_no_live():
    buf = io.StringIO()
    d = Display("rich", file=buf, width=80)
    d.show_document("# Hello\n\nworld", "runs/y/document.md")
    d.notice("careful", level="warn")
    text = buf.getvalue()
    assert "Hello" in text and "world" in text and "warning: careful" in text


def test_plain_path_does_not_import_rich():
    code = ("import io, sys; from utils.app.render import Display; from utils.events import Event; "
            "d = Display('plain', file=io.StringIO()); d(Event('phase', {'name': 'x'})); "
            "d.summary({'status': 'ok'}); print('rich' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.stdout.strip() == "False"
