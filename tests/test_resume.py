"""Durable runs and the response cache: `run.json` after the plan and after every task, `kill -9` and
Ctrl-C in the middle of a run, `--resume` by folder or id, and an identical second run served from
`$ORCH_HOME/cache`.

`main.py` runs in-process (`tests.helpers.run_main`), or as a subprocess where kill -9 and Ctrl-C are
the point, against the fake server. Slow workers are held on a `threading.Event`
(`Reply(wait_for=...)`), never on sleeps; the tests poll `run.json` (bounded) to know when to strike,
and read the server's request record to prove what was (not) sent to the model twice.
"""
from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer, RecordedRequest, Reply
from tests.helpers import (cli_env, done_ids, fast_config, only_run, read_state, run_dirs, run_main, start_main,
                           state_when, wait_until, worker_counts)
from tests.scripted import Script, plan_json, request_kind, task_id

ROOT = Path(__file__).resolve().parent.parent
WRITERS = ("t2", "t3", "t4", "t5", "t6", "t7")
# t1 analyses; t2..t4 need it; t5 builds on t2, t6 on t4, t7 on t3 (blog: only writers are sections).
SIX_SECTIONS = plan_json([("t1", "analyst", [], 1), ("t2", "writer", ["t1"], 2), ("t3", "writer", ["t1"], 2),
                          ("t4", "writer", ["t1"], 2), ("t5", "writer", ["t2"]), ("t6", "writer", ["t4"]),
                          ("t7", "writer", ["t3"])], goal="Write about durable runs")


# ---------------------------------------------------------------- helpers (the shared ones live in tests/helpers.py)

def section_text(tid: str) -> str:
    return f"Text for {tid}."


class Gate:
    """Worker replies for `slow` tasks wait on an event until `open()`; the others answer at once."""

    def __init__(self, slow: set[str]) -> None:
        self.slow, self.event = slow, threading.Event()

    def worker(self, tid: str, req: RecordedRequest) -> Reply:
        text = f"## Section {tid}\n\n{section_text(tid)}"
        if tid in self.slow and not self.event.is_set():
            return Reply(text=text, wait_for=self.event)
        return Reply(text=text)

    def open(self) -> None:
        self.event.set()


def assert_complete_document(run_dir: Path, sections=WRITERS) -> str:
    doc = (run_dir / "output.md").read_text(encoding="utf-8")
    for tid in sections:
        assert doc.count(section_text(tid)) == 1, f"section {tid} not exactly once in output.md:\n{doc}"
    assert "Missing section" not in doc
    return doc


# ---------------------------------------------------------------- run.json is written as the run goes

def test_the_run_state_is_on_disk_after_the_plan_and_after_every_task(fake_llm, tmp_path):
    """The store listens to events: once each task ends (and the journal writer has caught up), its
    result is part of the state a resume reads."""
    from flows import build_flow
    from utils.model.client import LLMClient, LLMSettings
    from utils.app.run import execute, fanout, new_shared
    from utils.options import DEFAULT_OPTIONS
    from utils.run.runstore import RunStore, new_run_dir
    from utils.run.spec import load_spec

    fake_llm.responder = Script(plans=[SIX_SECTIONS], worker=Gate(set()).worker)
    run_dir = new_run_dir(tmp_path / "runs", "durable", "blog")
    store = RunStore(run_dir)
    seen: list[str] = []

    def check_disk(event) -> None:  # runs right after the store saw the same event
        if event.kind in ("plan", "task"):
            store.flush()
        if event.kind == "plan":
            assert read_state(run_dir)["plan"]["tasks"] == event.data["plan"]["tasks"]
            seen.append("plan")
        elif event.kind == "task" and event.data["state"] in ("done", "failed", "skipped"):
            on_disk = read_state(run_dir)["results"][event.data["id"]]
            assert on_disk["state"] == event.data["state"] and on_disk["output"] == event.data["result"]["output"]
            seen.append(event.data["id"])

    llm = LLMClient(LLMSettings(provider="openai", base_url=fake_llm.base_url, api_key="sk-x", cache=False))
    opts = {**DEFAULT_OPTIONS, "max_workers": 2}
    shared = new_shared(goal="Write about durable runs", spec=load_spec("blog"), options=opts,
                        inputs={"inputs": [], "data": None}, llm=llm, emit=fanout(store, check_disk))
    outcome = execute(shared, build_flow("dependency"), store, meta={})
    assert outcome.status == "ok"
    assert seen[0] == "plan" and sorted(seen[1:]) == ["t1", *WRITERS]
    assert not list(run_dir.glob(".*.tmp")), "a temporary file was left behind"


def test_atomic_write_never_leaves_a_half_written_run_json(tmp_path, monkeypatch):
    from utils.run import runstore

    target = tmp_path / "run.json"
    runstore.atomic_write(target, '{"old": true}')

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runstore.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        runstore.atomic_write(target, '{"new": true, "padding": "' + "x" * 100_000 + '"}')
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_review_rounds_and_planning_rounds_are_saved_as_they_happen(tmp_path):
    """A run killed during a revision pass resumes with its revision count (the bound holds across
    resumes) and a dynamic run with its planning rounds."""
    from utils.events import Event
    from utils.run.runstore import RunStore

    store = RunStore(tmp_path)
    store(Event("plan", {"plan": SIX_SECTIONS, "round": 2, "source": "replan"}))
    store(Event("review", {"round": 1, "score": 4, "revise": [{"id": "t2", "feedback": "more"}],
                           "rerun": ["t2", "t5"]}))
    store.flush()
    state = read_state(tmp_path)
    assert state["rounds"] == 2 and state["revisions_done"] == 1 and state["reviews"][0]["rerun"] == ["t2", "t5"]
    store(Event("review", {"round": 2, "score": 9, "revise": [], "rerun": []}))
    store.flush()
    assert read_state(tmp_path)["revisions_done"] == 1 and len(read_state(tmp_path)["reviews"]) == 2


# ---------------------------------------------------------------- kill -9 and Ctrl-C mid-run

def _start_blocked_run(server: FakeLLMServer, tmp_path: Path) -> tuple[subprocess.Popen, Gate, Path, dict]:
    """Start a run whose t4 and t5 hang until the gate opens; return once t1-t3 are saved as done
    and t4, t5 are in flight at the server."""
    gate = Gate({"t4", "t5"})
    server.responder = Script(plans=[SIX_SECTIONS], worker=gate.worker)
    out = tmp_path / "runs"
    env = cli_env(tmp_path / "home", server.base_url)
    proc = start_main(["--example", "blog", "--no-cache", "--output-dir", str(out), "--max-workers", "3",
                       "--config", str(fast_config(tmp_path / "fast.yaml"))], env)

    def ready(state: dict) -> bool:
        in_flight = {task_id(r) for r in list(server.requests) if r.status is None}
        return {"t1", "t2", "t3"} <= done_ids(state) and {"t4", "t5"} <= in_flight

    try:
        run_dir, state = state_when(out, ready, proc)
    except BaseException:
        proc.kill()
        proc.communicate()
        gate.open()
        raise
    return proc, gate, run_dir, state


def _resume_and_check(server: FakeLLMServer, tmp_path: Path, run_ref: str, finished: set[str],
                      before: int) -> None:
    """Resume; no task that had finished is sent again; the run completes with the full document."""
    out = tmp_path / "runs"
    env = cli_env(tmp_path / "home", server.base_url)
    done = run_main(["--resume", run_ref, "--no-cache", "--output-dir", str(out),
                     "--config", str(fast_config(tmp_path / "fast.yaml"))], env)
    assert done.code == 0, done.explain()
    run_dir = only_run(out)
    state = read_state(run_dir)
    assert state["status"] == "ok" and state["meta"]["resumed"] is True
    assert done_ids(state) == {"t1", *WRITERS}
    counts = worker_counts(server)
    for tid in finished:
        assert counts[tid] == 1, f"{tid} had finished before the interruption but was requested {counts[tid]}x"
    resumed = server.requests[before:]
    assert not [r for r in resumed if request_kind(r) == "plan"], "the saved plan must be reused"
    again = Counter(task_id(r) for r in resumed if request_kind(r) == "worker" and r.status == 200)
    assert set(again) == {"t1", *WRITERS} - finished and set(again.values()) == {1}
    assert_complete_document(run_dir)


def test_kill_9_mid_run_leaves_a_resumable_run(fake_llm, tmp_path):
    proc, gate, run_dir, _ = _start_blocked_run(fake_llm, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    gate.open()
    assert proc.returncode == -signal.SIGKILL
    state = read_state(run_dir)  # whatever was on disk at the kill: complete JSON, a run we can resume
    assert state["workflow"] == "blog" and state["goal"] and state["options"]["max_workers"] == 3
    assert state["status"] == "running" and len(state["plan"]["tasks"]) == 7
    finished = done_ids(state)
    assert {"t1", "t2", "t3"} <= finished and not {"t4", "t5"} & finished
    wait_until(lambda: all(r.status is not None for r in list(fake_llm.requests)), timeout=10,
               what="the killed run's requests to be closed")
    _resume_and_check(fake_llm, tmp_path, str(run_dir), finished, len(fake_llm.requests))


def test_ctrl_c_cancels_calls_saves_and_says_how_to_resume(fake_llm, tmp_path):
    proc, gate, run_dir, _ = _start_blocked_run(fake_llm, tmp_path)
    proc.send_signal(signal.SIGINT)
    try:
        # t4 and t5 are still held at the server: the process can only end this soon by cancelling them.
        stdout, stderr = proc.communicate(timeout=8)
    finally:
        gate.open()
    assert proc.returncode == 130, stdout + stderr
    assert "--resume" in stdout + stderr and str(run_dir) in stdout + stderr
    assert "Traceback" not in stdout + stderr
    state = read_state(run_dir)
    assert state["status"] == "interrupted"
    finished = done_ids(state)
    assert {"t1", "t2", "t3"} <= finished and not {"t4", "t5"} & finished
    assert {state["results"][t]["state"] for t in ("t4", "t5")} <= {"pending"}
    wait_until(lambda: all(r.status is not None for r in list(fake_llm.requests)), timeout=10,
               what="the interrupted run's requests to be closed")
    assert not [r for r in fake_llm.requests if task_id(r) in ("t4", "t5") and r.status == 200]
    # resume by id (the folder's name, looked up in --output-dir), not by path
    _resume_and_check(fake_llm, tmp_path, run_dir.name, finished, len(fake_llm.requests))


def test_failed_tasks_run_again_on_resume_and_finished_ones_do_not(fake_llm, tmp_path):
    """A run that ended partial (a task failed after retries, its dependent skipped) is resumable."""
    broken = {"on": True}

    def worker(tid, req):
        if tid == "t4" and broken["on"]:
            return Reply(status=500)
        return Reply(text=f"## Section {tid}\n\n{section_text(tid)}")

    fake_llm.responder = Script(plans=[SIX_SECTIONS], worker=worker)
    out = tmp_path / "runs"
    env = cli_env(tmp_path / "home", fake_llm.base_url)
    args = ["--no-cache", "--output-dir", str(out), "--config", str(fast_config(tmp_path / "fast.yaml"))]
    first = run_main(["--example", "blog", *args], env)
    assert first.code == 1, first.explain()
    run_dir = only_run(out)
    state = read_state(run_dir)
    assert state["status"] == "partial"
    assert state["results"]["t4"]["state"] == "failed" and state["results"]["t6"]["state"] == "skipped"
    assert worker_counts(fake_llm)["t4"] == 3  # 1 + max_retries
    broken["on"] = False
    before = len(fake_llm.requests)
    second = run_main(["--resume", str(run_dir), *args], env)
    assert second.code == 0, second.explain()
    again = Counter(task_id(r) for r in fake_llm.requests[before:] if request_kind(r) == "worker")
    assert again == Counter({"t4": 1, "t6": 1})
    assert_complete_document(run_dir)


def test_resume_of_a_finished_run_says_it_is_complete_and_makes_no_call(fake_llm, tmp_path):
    fake_llm.responder = Script(plans=[SIX_SECTIONS], worker=Gate(set()).worker)
    out = tmp_path / "runs"
    env = cli_env(tmp_path / "home", fake_llm.base_url)
    args = ["--no-cache", "--output-dir", str(out), "--config", str(fast_config(tmp_path / "fast.yaml"))]
    first = run_main(["--example", "blog", *args], env)
    assert first.code == 0, first.explain()
    run_dir = only_run(out)
    doc, state_before = (run_dir / "output.md").read_text(encoding="utf-8"), read_state(run_dir)
    before = len(fake_llm.requests)
    again = run_main(["--resume", str(run_dir), *args], env)
    assert again.code == 0, again.explain()
    assert "already complete" in again.output
    assert len(fake_llm.requests) == before, "resuming a finished run must not call the model"
    assert (run_dir / "output.md").read_text(encoding="utf-8") == doc
    assert read_state(run_dir)["status"] == "ok" and read_state(run_dir)["results"] == state_before["results"]


def _offline_shared(tmp_path, store, plan: dict):
    from utils.app.run import new_shared
    from utils.options import DEFAULT_OPTIONS
    from utils.model.client import LLMSettings, make_model
    from utils.run.spec import load_spec

    llm = make_model(LLMSettings(provider="offline", cache=False))
    shared = new_shared(goal=plan["goal"], spec=load_spec("blog"), options={**DEFAULT_OPTIONS, "max_workers": 2},
                        inputs={"inputs": [], "data": None}, llm=llm, emit=store)
    shared["plan"] = plan
    return shared


@pytest.mark.parametrize("where", ["ReviewerNode", "OrchestratorNode"])
def test_a_crash_in_a_node_is_saved_as_crashed_and_the_done_work_is_assembled(tmp_path, monkeypatch, where):
    """Any exception that is not the app's own error: status `crashed` with the error, the bug still
    surfaces, and when tasks are done output.md holds them."""
    import nodes
    from flows import build_flow
    from utils.app.run import execute
    from utils.run.runstore import RunStore, new_run_dir

    async def boom(self, prep_res):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(getattr(nodes, where), "exec_async", boom)
    run_dir = new_run_dir(tmp_path / "runs", "crash", "blog")
    store = RunStore(run_dir)
    shared = _offline_shared(tmp_path, store, SIX_SECTIONS)
    with pytest.raises(RuntimeError, match="injected fault"):
        execute(shared, build_flow("dependency"), store, meta={})
    state = read_state(run_dir)
    assert state["status"] == "crashed" and state["stopped"] == "RuntimeError: injected fault"
    if where == "ReviewerNode":  # all tasks were done before the crash
        assert done_ids(state) == {"t1", *WRITERS}
        doc = (run_dir / "output.md").read_text(encoding="utf-8")
        assert "crashed" in doc and doc.count("## ") >= len(WRITERS)
    else:  # nothing done: no document pretending otherwise
        assert not done_ids(state) and not (run_dir / "output.md").exists()


def _hand_made_run(tmp_path, tasks: list[tuple[str, list[str]]]) -> Path:
    from utils.options import DEFAULT_OPTIONS

    run_dir = tmp_path / "runs" / "20260101-000000-blog-edited"
    run_dir.mkdir(parents=True)
    plan = {"goal": "Edited by hand", "tasks": [{"id": tid, "title": f"Task {tid}", "role": "writer",
                                                 "depends_on": deps} for tid, deps in tasks]}
    state = {"format": "orchestrator-run/1", "goal": "Edited by hand", "workflow": "blog",
             "options": DEFAULT_OPTIONS, "inputs": {"inputs": [], "data": None}, "plan": plan,
             "results": {}, "status": "interrupted"}
    (run_dir / "run.json").write_text(json.dumps(state), encoding="utf-8")
    return run_dir


@pytest.mark.parametrize("tasks, problem", [
    ([("a", ["b"]), ("b", ["a"])], "dependency cycle"),
    ([("a", []), ("b", ["b"])], "depends on itself"),
    ([("a", []), ("a", [])], "used more than once"),
])
def test_resume_of_an_invalid_saved_plan_is_a_one_line_error(fake_llm, tmp_path, tasks, problem):
    run_dir = _hand_made_run(tmp_path, tasks)
    done = run_main(["--resume", str(run_dir), "--no-cache"], cli_env(tmp_path / "home", fake_llm.base_url),
                    timeout=30)
    assert done.code == 2, done.explain()
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and problem in lines[0] and "Traceback" not in done.output
    assert not fake_llm.requests


def test_saved_base_url_has_no_credentials_or_query(tmp_path):
    from flows import build_flow
    from utils.app.run import execute
    from utils.model.settings import safe_base_url
    from utils.run.runstore import RunStore, new_run_dir

    assert safe_base_url("https://bob:sk-SECRET@api.example.com:8443/v1?api-key=sk-Q#frag") == \
        "https://api.example.com:8443/v1"
    run_dir = new_run_dir(tmp_path / "runs", "url", "blog")
    store = RunStore(run_dir)
    shared = _offline_shared(tmp_path, store, SIX_SECTIONS)
    execute(shared, build_flow("dependency"), store,
            meta={"base_url": "http://user:sk-SECRET@[::1]:9/v1?api-key=sk-QUERY"})
    text = (run_dir / "run.json").read_text(encoding="utf-8")
    assert "sk-SECRET" not in text and "sk-QUERY" not in text
    assert read_state(run_dir)["meta"]["base_url"] == "http://[::1]:9/v1"


# ---------------------------------------------------------------- the response cache

def _shuffled_latency_script() -> Script:
    """Worker replies arrive in a different order on every run (random latency), so only prompts
    built independently of completion order can hit the cache."""
    import random

    rng, lock = random.Random(), threading.Lock()

    def worker(tid, req):
        with lock:
            delay = rng.random() * 0.03
        return Reply(text=f"## Section {tid}\n\n{section_text(tid)}", latency=delay)

    return Script(plans=[SIX_SECTIONS], worker=worker)


def _prompts(requests: list[RecordedRequest]) -> Counter:
    return Counter(json.dumps([r.model, r.messages, r.body.get("temperature"), r.response_format], sort_keys=True)
                   for r in requests)


def test_identical_second_run_is_served_from_the_cache_and_prompts_are_deterministic(fake_llm, tmp_path):
    fake_llm.responder = _shuffled_latency_script()
    home = tmp_path / "home"
    env = cli_env(home, fake_llm.base_url)
    args = ["--example", "blog", "--output-dir", str(tmp_path / "runs"), "--max-workers", "4"]
    first = run_main(args, env)
    assert first.code == 0, first.explain()
    calls = len(fake_llm.requests)
    assert calls == 1 + 7 + 2  # plan, 7 tasks, review, cohesion
    entries = list((home / "cache").rglob("*.json"))
    assert len(entries) == calls, "one cache entry per model call, under $ORCH_HOME/cache"
    second = run_main(args, env)
    assert second.code == 0, second.explain()
    assert len(fake_llm.requests) == calls, "the identical second run made model calls"
    assert "(10 cached)" in second.stdout
    docs = [(d / "output.md").read_text(encoding="utf-8") for d in run_dirs(tmp_path / "runs")]
    assert len(docs) == 2 and docs[0] == docs[1]
    # --no-cache bypasses it: every call goes to the model again, and nothing new is written
    third = run_main([*args, "--no-cache"], env)
    assert third.code == 0, third.explain()
    assert len(fake_llm.requests) == 2 * calls
    assert len(list((home / "cache").rglob("*.json"))) == calls
    # Workers answer in a different order each time, yet every prompt was the same both times:
    # that is what makes a parallel run cacheable at all.
    assert _prompts(fake_llm.requests[:calls]) == _prompts(fake_llm.requests[calls:])


def test_cache_key_covers_model_messages_and_parameters():
    from utils.model.cache import cache_key

    base = dict(model="m", messages=[{"role": "user", "content": "hi"}], temperature=0.3, max_tokens=None)
    key = cache_key(**base)
    assert key == cache_key(**{**base, "messages": [{"content": "hi", "role": "user"}]})  # canonical
    for change in ({"model": "m2"}, {"messages": [{"role": "user", "content": "hi!"}]}, {"temperature": 0.2},
                   {"max_tokens": 100}):
        assert cache_key(**{**base, **change}) != key, change
    from utils.run.outputs import Cohesion, ReviewResult
    assert cache_key(**base, schema=Cohesion) not in (key, cache_key(**base, schema=ReviewResult))
