"""`main.py --interactive` driven as a user would type: plan, edit, replan, run, save.

In-process (`tests.helpers.run_main` with stdin text) except where a signal or raw bytes on stdin are
the point. Offline tests need no server; the others point the app at the fake OpenAI-compatible
server and read its request record.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from dataclasses import dataclass

from fakes.fake_llm import RecordedRequest, Reply
from tests.helpers import cli_env, run_main, start_main

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Session:
    returncode: int
    stdout: str
    stderr: str


def drive(lines: list[str], home: Path, out: Path, *extra: str, env: dict | None = None) -> Session:
    done = run_main(["--interactive", "--output-dir", str(out), *extra], cli_env(home, None, None, **(env or {})),
                    stdin="\n".join(lines) + "\n")
    return Session(done.code, done.stdout, done.stderr)


def test_offline_session_plans_edits_runs_and_saves(tmp_path: Path):
    home, out = tmp_path / "home", tmp_path / "runs"
    saved = tmp_path / "saved" / "out.md"
    proc = drive(["/example blog", "Write a guide to Python context managers", "/show", "/drop t4",
                  "/rename t2 A better intro", "/deps t6 t3,t5", "/replan make it shorter", "/plan",
                  "/rename t2 A better intro", "/run", f"/save {saved}", "/history", "/bogus", "/quit",
                  "/help"], home, out, "--provider", "offline")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    assert "unknown command /bogus — type /help" in proc.stdout
    assert "/drop ID" not in proc.stdout  # /quit ended the session before /help
    assert "t2 · A better intro [writer]" in proc.stdout
    assert "source: replan" in proc.stdout and "make it shorter" in proc.stdout
    assert saved.is_file()
    doc = saved.read_text(encoding="utf-8")
    assert "A better intro" in doc and "context managers" in doc.lower()
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1
    state = json.loads((runs[0] / "run.json").read_text(encoding="utf-8"))
    assert state["status"] == "ok"
    assert state["meta"]["interactive"] is True and state["meta"]["plan_source"] == "user"
    assert [t["title"] for t in state["plan"]["tasks"] if t["id"] == "t2"] == ["A better intro"]
    assert (runs[0] / "output.md").read_text(encoding="utf-8") == doc
    assert f"Saved: {saved}" in proc.stdout
    assert f"ok          {runs[0]}" in proc.stdout  # /history
    history = (home / "history").read_text(encoding="utf-8").splitlines()
    assert history[0] == "/example blog" and history[-1] == "/quit"


def test_edits_after_drop_clean_dependencies(tmp_path: Path):
    proc = drive(["/example blog", "Write a guide to Python decorators", "/drop t4"], tmp_path / "h",
                 tmp_path / "runs", "--provider", "offline")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # Ctrl-D (end of input) leaves with 0
    after = proc.stdout.split("/drop")[-1] if "/drop" in proc.stdout else proc.stdout
    assert "t4 ·" not in after.split("Plan:")[-1]
    assert "t6 · Conclusion and next steps [writer] p3 ← t3, t5" in proc.stdout


def test_invalid_edit_is_refused_and_plan_unchanged(tmp_path: Path):
    proc = drive(["/example blog", "Write a guide to Python decorators", "/deps t2 t9", "/deps t9 t1",
                  "/priority t2 9", "/add t7 poet Verse", "/deps t1 t6", "/drop", "/show"],
                 tmp_path / "h", tmp_path / "runs", "--provider", "offline")
    out = proc.stdout
    assert proc.returncode == 0 and "Traceback" not in out + proc.stderr
    assert "edit refused, the plan is unchanged:" in out
    assert "task 't2' depends on unknown task 't9'" in out
    assert "no task 't9' in the plan" in out
    assert "priority must be a whole number from 1" in out
    assert "task 't7' has unknown role 'poet'" in out
    assert "dependency cycle:" in out
    assert "usage: /drop ID" in out
    # the last /show prints the plan exactly as it was planned
    last = out.rsplit("Plan: ", 1)[1]
    assert "t2 · Python decorators: the core idea and why it matters [writer] p2 ← t1\n" in last
    assert "t7" not in last and "t1 · Analysis and outline: Python decorators [analyst] p1\n" in last


def test_bad_arguments_and_commands_before_a_plan_give_hints(tmp_path: Path):
    proc = drive(["/run", "/show", "/save", "/example nope", "/workers zero", "/strategy fastest",
                  "/replan", "/strategy hybrid", "/workers 2", "/model other-model"],
                 tmp_path / "h", tmp_path / "runs", "--provider", "offline")
    out = proc.stdout
    assert proc.returncode == 0 and "Traceback" not in out + proc.stderr
    for hint in ("no plan yet — type a topic, or /plan", "nothing to save yet", "unknown workflow 'nope'",
                 "usage: /workers N", "usage: /strategy NAME", "Strategy: hybrid", "Workers: 2",
                 "Model: other-model"):
        assert hint in out, hint


def test_topic_without_workflow_picks_one_and_says_which(tmp_path: Path):
    proc = drive(["Break down the project to build a mobile app into work items"], tmp_path / "h",
                 tmp_path / "runs", "--provider", "offline")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Workflow: project (keyword match: project" in proc.stdout  # routed like the command line
    assert "Plan: Break down the project" in proc.stdout


# ---------------------------------------------------------------- against the fake server

PLAN = {"goal": "x", "notes": "Audience: developers.", "tasks": [
    {"id": "t1", "title": "Analysis", "role": "analyst", "instructions": "Analyse.", "depends_on": [], "priority": 1},
    {"id": "t2", "title": "Basics", "role": "writer", "instructions": "Basics.", "depends_on": ["t1"], "priority": 2},
    {"id": "t3", "title": "Wrap-up", "role": "writer", "instructions": "End.", "depends_on": ["t2"], "priority": 3},
], "done": False}


def responder(request: RecordedRequest):
    user = request.last_user()
    if "# Worker roles" in user and "Answer with JSON matching the schema" in user:
        return PLAN
    if "# Review criteria" in user:
        return {"score": 8.5, "summary": "Good.", "tasks": []}
    if "# Assembled sections" in user:
        return {"title": "Context managers, plainly", "meta_description": "A guide.", "introduction": "Hello.",
                "transitions": {}}
    return "## A section\n\nWritten by the fake model."


def test_replan_sends_the_feedback_to_the_model(tmp_path: Path, fake_llm):
    fake_llm.responder = responder
    out = tmp_path / "runs"
    proc = drive(["/example blog", "Write a guide to Python context managers",
                  "/replan please add zebra feedback words", "/run", "/quit"], tmp_path / "h", out,
                 env={"OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "sk-test"})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in text, text
    planning = [r for r in fake_llm.requests if "# Worker roles" in r.last_user()]
    assert len(planning) == 2
    assert "zebra feedback words" not in planning[0].last_user()
    replan = planning[1].last_user()
    assert "User feedback on the previous plan:\nplease add zebra feedback words" in replan
    assert "[t2] Basics (writer)" in replan  # the model sees the plan the feedback is about
    assert "source: replan" in proc.stdout
    runs = [p for p in out.iterdir() if p.is_dir()]
    state = json.loads((runs[0] / "run.json").read_text(encoding="utf-8"))
    assert state["status"] == "ok"
    assert state["goal"] == "Write a guide to Python context managers"  # the request is not the goal
    assert state["meta"]["plan_source"] == "replan"
    assert "zebra" in state["meta"]["plan_note"]
    # the run used the preset plan: no third planning call
    assert len([r for r in fake_llm.requests if "# Worker roles" in r.last_user()]) == 2
    assert "Written by the fake model." in (runs[0] / "output.md").read_text(encoding="utf-8")


def test_ctrl_c_during_run_stops_it_and_returns_to_the_prompt(tmp_path: Path, fake_llm):
    """SIGINT while a worker call is in flight: the run is saved as interrupted, the session goes on."""
    arrived, release = threading.Event(), threading.Event()

    def slow_workers(request: RecordedRequest):
        if "# Your task [" in request.last_user():
            arrived.set()
            return Reply(text="## Late\n\ntoo late", wait_for=release)
        return responder(request)

    fake_llm.responder = slow_workers
    home, out = tmp_path / "h", tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ORCH_"))}
    env.update({"ORCH_HOME": str(home), "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8",
                "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "sk-test"})
    proc = start_main(["--interactive", "--output-dir", str(out)], env, stdin=subprocess.PIPE)
    try:
        proc.stdin.write("/example blog\nWrite a guide to Python context managers\n/run\n/history\n/quit\n")
        proc.stdin.flush()  # communicate() closes it
        assert arrived.wait(60), "no worker request reached the server"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    assert f"resume: python main.py --resume {run_dir}" in stdout
    assert "Run interrupted; its state is saved" in stdout
    assert f"1. interrupted {run_dir}" in stdout  # /history ran after the run: the session went on
    state = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert state["status"] == "interrupted"
    assert state["plan"]["tasks"][0]["id"] == "t1"
