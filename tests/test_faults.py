"""Faults against the fake server, through the whole CLI: 429s with Retry-After, 500s, timeouts, slow
replies, malformed structured output, and a server that goes away mid-run.

Whatever happens, every task ends done, failed-after-retries or skipped; each section appears exactly
once in output.md or is marked missing there; retries are bounded by the configured `max_retries`; the
summary says what failed and why. Backoffs come from a `--config` file, so retries cost milliseconds.
"""
from __future__ import annotations

import threading
from collections import Counter

import pytest

from fakes.fake_llm import Reply
from tests.scripted import Script, request_kind, task_id
from tests.helpers import (cli_env, done_ids, fast_config, only_run, read_state, run_main, state_when, start_main,
                           worker_counts)
from tests.test_resume import SIX_SECTIONS, WRITERS, section_text

MAX_RETRIES = 2
ALL_TASKS = ("t1", *WRITERS)
TERMINAL = {"done", "failed", "skipped"}


def assert_each_section_once_or_missing(run_dir, results: dict) -> str:
    doc = (run_dir / "output.md").read_text(encoding="utf-8")
    for tid in WRITERS:
        present, missing = doc.count(section_text(tid)), doc.count(f"task `{tid}`")
        assert present + missing == 1, f"{tid}: {present} copies, {missing} missing-marks\n{doc}"
        assert (present == 1) == (results[tid]["state"] == "done"), tid
    return doc


class Counted:
    """Counts worker requests per task so a responder can fail the first n attempts of a task."""

    def __init__(self) -> None:
        self.n: Counter = Counter()
        self.lock = threading.Lock()

    def attempt(self, tid: str) -> int:
        with self.lock:
            self.n[tid] += 1
            return self.n[tid]


def test_transient_faults_are_retried_and_every_task_ends_done_or_failed(fake_llm, tmp_path):
    seen, reviews = Counted(), Counted()

    def worker(tid, req):
        n = seen.attempt(tid)
        text = f"## Section {tid}\n\n{section_text(tid)}"
        if tid == "t2" and n == 1:
            return Reply(status=429, headers={"Retry-After": "0.3"})
        if tid == "t3" and n <= 2:
            return Reply(status=500)                       # fails twice, third attempt is the last allowed
        if tid == "t4" and n == 1:
            return Reply(text=text, latency=3.0)           # past timeout_s: the client gives up, retries
        if tid == "t5":
            return Reply(text=text, latency=0.2)           # slow but within the timeout
        if tid == "t7":
            return Reply(status=500, error_message="overloaded, try later")  # never recovers
        return text

    script = Script(plans=[SIX_SECTIONS], worker=worker)

    def responder(req):
        if request_kind(req) == "review" and reviews.attempt("review") == 1:
            return Reply(text='{"score": "great", "summary": ')  # malformed: repaired once
        return script(req)

    fake_llm.responder = responder
    out = tmp_path / "runs"
    cfg = fast_config(tmp_path / "faults.yaml", timeout_s=1.0, backoff_max_s=1.0, max_retries=MAX_RETRIES)
    done = run_main(["--example", "blog", "--no-cache", "--output-dir", str(out), "--config", str(cfg),
                     "--max-workers", "4"], cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 1, done.explain()
    state = read_state(only_run(out))
    results = state["results"]
    assert {tid: r["state"] for tid, r in results.items()} == {**{t: "done" for t in ALL_TASKS}, "t7": "failed"}
    counts = worker_counts(fake_llm)
    assert counts == Counter({"t1": 1, "t2": 2, "t3": 3, "t4": 2, "t5": 1, "t6": 1, "t7": 1 + MAX_RETRIES})
    assert worker_counts(fake_llm, ok_only=True) == Counter({t: 1 for t in ALL_TASKS if t != "t7"})
    # Retry-After is honoured: t2's second attempt came no sooner than the server asked
    t2 = [r for r in fake_llm.requests if task_id(r) == "t2"]
    assert t2[0].status == 429 and t2[1].t_in - t2[0].t_out >= 0.29
    # the timed-out attempt was abandoned by the client, then answered on the retry
    t4 = [r for r in fake_llm.requests if task_id(r) == "t4"]
    assert t4[0].status != 200 and t4[1].status == 200
    assert [request_kind(r) for r in fake_llm.requests].count("review") == 2  # malformed, then the repair
    assert "t7 failed" in done.stdout and "server error 500" in done.stdout and "overloaded" in done.stdout
    assert f"after {1 + MAX_RETRIES} attempts" in results["t7"]["error"]
    assert state["status"] == "partial" and state["totals"]["retries"] == 1 + 2 + 1 + MAX_RETRIES
    assert_each_section_once_or_missing(only_run(out), results)


def test_malformed_structured_output_never_loses_the_work(fake_llm, tmp_path):
    """Review and cohesion answer garbage every time: each is asked twice (one repair), then the run
    goes on without them; every finished section is still in the document, exactly once. A failed
    review is not an approval: the run is `unreviewed` (exit 1) and says why."""
    script = Script(plans=[SIX_SECTIONS], worker=lambda tid, req: f"## Section {tid}\n\n{section_text(tid)}")

    def responder(req):
        if request_kind(req) in ("review", "cohesion"):
            return Reply(text="Sure! Here is my review: it is good.")
        return script(req)

    fake_llm.responder = responder
    out = tmp_path / "runs"
    done = run_main(["--example", "blog", "--no-cache", "--output-dir", str(out),
                     "--config", str(fast_config(tmp_path / "fast.yaml"))],
                    cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 1, done.explain()
    kinds = Counter(request_kind(r) for r in fake_llm.requests)
    assert kinds["review"] == 2 and kinds["cohesion"] == 2
    assert "unreviewed" in done.output and "Traceback" not in done.output
    state = read_state(only_run(out))
    assert state["status"] == "unreviewed" and "review round 1 failed" in state["status_reason"]
    assert done_ids(state) == set(ALL_TASKS)
    doc = assert_each_section_once_or_missing(only_run(out), state["results"])
    assert "Cohesion pass skipped" in doc


@pytest.mark.parametrize("how", ["drop-connections", "server-stopped"])
def test_server_going_away_mid_run_fails_tasks_cleanly(fake_llm, tmp_path, how):
    """t1-t3 finish while t4, t5 and t7 are held at the server; then the server hangs up on every
    request (or is stopped). Nothing is lost or duplicated: done work stays, the rest fails after
    bounded retries or is skipped, and the summary, the document and run.json say so."""
    slow, gate, gone, held = {"t4", "t5", "t7"}, threading.Event(), threading.Event(), []
    script = Script(plans=[SIX_SECTIONS], worker=lambda tid, req: f"## Section {tid}\n\n{section_text(tid)}")

    def responder(req):
        if gone.is_set():
            return Reply(drop_connection=True)
        if request_kind(req) == "worker" and task_id(req) in slow:
            reply = Reply(text="held", wait_for=gate)
            held.append(reply)
            return reply
        return script(req)

    fake_llm.responder = responder
    out = tmp_path / "runs"
    cfg = fast_config(tmp_path / "fast.yaml", timeout_s=1.0)
    proc = start_main(["--example", "blog", "--no-cache", "--output-dir", str(out), "--config", str(cfg),
                       "--max-workers", "4"], cli_env(tmp_path / "home", fake_llm.base_url))
    try:
        in_flight = lambda: {task_id(r) for r in list(fake_llm.requests) if r.status is None}  # noqa: E731
        state_when(out, lambda s: {"t1", "t2", "t3"} <= done_ids(s) and slow <= in_flight(), proc)
        gone.set()
        for reply in held:
            reply.drop_connection = True
        if how == "server-stopped":
            fake_llm.stop()   # the held calls time out; their retries find nobody listening
        else:
            gate.set()        # the held calls are answered by hanging up, and so is everything after
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stdout + stderr
    assert "Traceback" not in stdout + stderr
    run_dir = only_run(out)
    state = read_state(run_dir)
    results = state["results"]
    assert set(results) == set(ALL_TASKS) and {r["state"] for r in results.values()} <= TERMINAL
    assert {t for t, r in results.items() if r["state"] == "done"} == {"t1", "t2", "t3"}
    assert {t for t, r in results.items() if r["state"] == "failed"} == {"t4", "t5", "t7"}
    assert {t for t, r in results.items() if r["state"] == "skipped"} == {"t6"}
    for tid in ("t4", "t5", "t7"):
        assert f"after {1 + MAX_RETRIES} attempts" in results[tid]["error"], results[tid]["error"]
        assert f"{tid} failed" in stdout
    assert "skipped: t6" in stdout
    counts = worker_counts(fake_llm)
    assert all(counts[t] == 1 for t in ("t1", "t2", "t3")) and counts["t6"] == 0
    if how == "drop-connections":  # every attempt reached the server: count them
        assert all(counts[t] == 1 + MAX_RETRIES for t in slow), counts
        later = [r for r in fake_llm.requests if request_kind(r) in ("review", "cohesion")]
        assert len(later) == 2 * (1 + MAX_RETRIES)  # review and cohesion, each bounded, then skipped
    assert state["status"] == "partial"
    assert_each_section_once_or_missing(run_dir, results)
