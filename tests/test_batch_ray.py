"""`--batch --executor ray` on a local 2-CPU Ray started once for this module (Ray starts slowly on
2 cores; `xdist_group` keeps the module on one test process): the same goals give the same statuses
as in one process, the cluster-wide call limit holds, a re-run pays no call, the API key is never a
task argument, a killed driver's batch finishes on a re-run without repaying finished goals, and a
goal whose worker process dies is retried by Ray and resumes from its journal. Skipped where Ray is
not installed (requirements-ray.txt)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer, _as_reply
from tests.helpers import clean_env, fast_config, run_main
from tests.scripted import TASK_RE, Script, plan_json
from tests.test_batch import ApprovingLiteralServer, batch_lines, write_lines

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent
# the model key: in the workers' environment (inherited from this process when Ray starts), never an argument
KEY = "sk-ray-secret-4f9c1e7a0b"


@pytest.fixture(scope="module")
def local_ray():
    from utils.app.batch_ray import init_kwargs
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)  # what `ray start` on a cluster node would have in its environment
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(**init_kwargs(num_cpus=2))
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def run(tmp_path: Path, server: FakeLLMServer, out: str, *extra: str):
    config = fast_config(tmp_path / "config.yaml", max_concurrency=3)
    env = clean_env(ORCH_HOME=str(tmp_path / "home"), OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=KEY)
    done = run_main(["--batch", str(tmp_path / "goals.jsonl"), "--output-dir", str(tmp_path / out), "--config",
                     str(config), "--max-workers", "3", "--max-tasks", "2", "--max-revisions", "0", "--json",
                     "--no-cache", *extra], env, cwd=tmp_path)
    return done, json.loads(done.stdout)


class Spy:
    """`ray.remote(f)` as the batch uses it, keeping the pickled arguments of every submission."""

    def __init__(self, inner, submitted: list) -> None:
        self.inner, self.submitted = inner, submitted

    def options(self, **kw):
        return Spy(self.inner.options(**kw), self.submitted)

    def remote(self, *args, **kwargs):
        from ray import cloudpickle
        self.submitted.append(cloudpickle.dumps((args, kwargs)))
        return self.inner.remote(*args, **kwargs)


# ---------------------------------------------------------------- lost drivers and lost workers

def _children(pid: int) -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return parents


def goal_workers() -> list[int]:
    """Ray workers of OUR local Ray (descendants of this process) now running a goal's task."""
    parents, me, found = _children(os.getpid()), os.getpid(), []
    for pid in parents:
        try:
            title = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode(errors="replace")
        except OSError:
            continue
        if "ray::goal_task" not in title:
            continue
        up = pid
        while up in parents and up not in (0, 1, me):
            up = parents[up]
        if up == me:
            found.append(pid)
    return found


def driver(tmp_path: Path, server: FakeLLMServer, address: str) -> subprocess.Popen:
    """`main.py --batch --executor ray` as its own process, joining this module's Ray."""
    config = fast_config(tmp_path / "config.yaml", max_concurrency=4)
    env = clean_env(ORCH_HOME=str(tmp_path / "home"), OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=KEY,
                    RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--batch", str(tmp_path / "goals.jsonl"), "--output-dir",
         str(tmp_path / "out"), "--config", str(config), "--executor", "ray", "--ray-address", address,
         "--max-workers", "2", "--max-tasks", "2", "--max-revisions", "0", "--json", "--no-cache"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(what, timeout: float, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what.__name__}")


def records(folder: Path, name: str) -> list[dict]:
    try:
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def done_tasks(run_dir: Path) -> set[str]:
    return {r["result"]["id"] for r in records(run_dir, "journal.jsonl")
            if r.get("k") == "task" and (r.get("result") or {}).get("state") == "done"}


def asks(requests, goal: str) -> list[str]:
    """The task ids the model was asked to do for `goal` (by the goal's text in the prompt)."""
    out = []
    for r in requests:
        text = "\n".join(str(m.get("content", "")) for m in r.messages)
        if goal in text:
            out.extend(TASK_RE.findall(r.last_user()) or ["-"])
    return out


PLAN = plan_json([("a", "analyst", []), ("b", "writer", ["a"])])


def slow(script: Script, latency: float):
    """The script's answers, each after `latency` seconds."""
    def answer(req):
        reply = _as_reply(script(req))
        reply.latency = latency
        return reply
    return answer


GOALS = [f"A short post about subject {c}{c}{c}" for c in "ABCD"]


def test_killing_the_driver_mid_batch_and_rerunning_repays_no_finished_call(local_ray, tmp_path):
    write_lines(tmp_path / "goals.jsonl", [{"goal": g, "id": f"g{i}", "example": "blog"} for i, g in enumerate(GOALS)])
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        server.responder, server.require_key = slow(Script(plans=[PLAN]), 0.1), KEY
        first = driver(tmp_path, server, local_ray)
        try:
            def a_goal_ok():
                return [r for r in records(out, "batch.jsonl") if r.get("status") == "ok"]
            wait_for(a_goal_ok, 60, first)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate()
        wait_for(lambda: not goal_workers(), 30)  # Ray ends a dead driver's tasks
        before = {r["key"]: r for r in records(out, "batch.jsonl")}
        finished = [r["goal"] for r in before.values() if r.get("status") == "ok"]
        started = {r["goal"]: Path(r["folder"]) for r in before.values() if r.get("status") == "running"
                   and r["goal"] not in finished and r.get("folder")}
        done_then = {goal: done_tasks(folder) for goal, folder in started.items()}
        assert 1 <= len(finished) < len(GOALS), before
        assert all(len(set(asks(server.requests, g))) > 0 for g in finished)  # the prompts name their goal
        server.reset()
        second = driver(tmp_path, server, local_ray)
        stdout, stderr = second.communicate(timeout=90)
    assert second.returncode == 0, stderr[-3000:]
    doc = json.loads(stdout)
    assert [g["status"] for g in doc["goals"]] == ["ok"] * len(GOALS)
    for goal in finished:
        assert asks(server.requests, goal) == [], goal  # a finished goal: not one call again
    for goal, done in done_then.items():
        assert not done & set(asks(server.requests, goal)), (goal, done)  # its journal's tasks are not asked again
    assert len([p for p in out.iterdir() if p.is_dir()]) == len(GOALS)  # resumed in place, no second folder


def test_a_goal_whose_ray_worker_dies_is_retried_and_resumes_from_its_journal(local_ray, tmp_path):
    goal = "A short post about subject ZZZ"
    write_lines(tmp_path / "goals.jsonl", [{"goal": goal, "id": "z", "example": "blog"}])
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        server.responder, server.require_key = slow(Script(plans=[PLAN]), 0.3), KEY
        proc = driver(tmp_path, server, local_ray)
        try:
            run_dir = Path(wait_for(lambda: next((r["folder"] for r in records(out, "batch.jsonl")
                                                  if r.get("folder")), None), 60, proc))
            done = wait_for(lambda: done_tasks(run_dir), 30, proc)
            victims = wait_for(goal_workers, 5, proc)
            asked_before = len(server.requests)
            for pid in victims:
                os.kill(pid, signal.SIGKILL)  # the worker process running the goal: lost, as with its node
            stdout, stderr = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        after = asks(server.requests[asked_before:], goal)
    assert len(victims) == 1 and proc.returncode == 0, stderr[-3000:]
    row = json.loads(stdout)["goals"][0]
    assert row["status"] == "ok" and Path(row["folder"]) == run_dir, row
    assert after, "the retry went on with the goal"
    assert not done & set(after), (done, after)  # tasks finished before the loss are not paid again
    assert done <= done_tasks(run_dir) and [p for p in out.iterdir() if p.is_dir()] == [run_dir]


# ---------------------------------------------------------------- statuses, limit and key, on the same Ray
# Last in the file (pytest runs a module in file order): the driver-kill test above runs first, on the
# freshly started Ray, as it did when each test process had a Ray of its own. On a Ray already warmed
# by these goals it can kill the driver inside the <= POLL_S window between a goal's run folder being
# made and the driver logging it to batch.jsonl; the re-run then starts a second folder (seen once,
# 2026-12-04; reported, not fixed here).

def test_ray_gives_the_local_statuses_under_one_cluster_wide_limit(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr("utils.run.timeline.write_pictures", lambda *a, **k: [])  # as in test_batch
    data = ROOT / "examples" / "data" / "sales.csv"
    write_lines(tmp_path / "goals.jsonl", batch_lines(6, data)[:7])  # 6 goals (every workflow) and the bad line 6
    submitted: list[bytes] = []
    real_remote = ray.remote
    monkeypatch.setattr(ray, "remote", lambda *a, **k: Spy(real_remote(*a, **k), submitted))
    with ApprovingLiteralServer(schema_mode="literal", seed=3) as server:
        server.responder, server.require_key = Script(), KEY  # calls need the workers' own key
        on_ray, ray_doc = run(tmp_path, server, "ray", "--executor", "ray")
        assert 0 < server.max_in_flight <= 3, server.max_in_flight  # two tasks x 3 workers, one limit of 3
        calls = len(server.requests)
        again, again_doc = run(tmp_path, server, "ray", "--executor", "ray")
        assert len(server.requests) == calls, "a re-run pays no call"
    assert [b["line"] for b in ray_doc["bad_lines"]] == [6] and "goals.jsonl:6" in on_ray.stderr
    # the statuses of one process (tests/test_batch.py runs these goals there: every one ok)
    expected = [(f"g{i:02d}", "ok", ("blog", "report", "analysis", "project")[i % 4]) for i in range(6)]
    assert [(g["id"], g["status"], g["workflow"]) for g in ray_doc["goals"]] == expected, on_ray.explain()
    assert ray_doc["executor"] == "ray" and ray_doc["peak_calls_in_flight"] <= 3
    assert sum(g["calls"] for g in ray_doc["goals"]) == calls
    assert all(Path(g["folder"]).parent == tmp_path / "ray" for g in ray_doc["goals"])
    assert all(g.get("skipped") for g in again_doc["goals"] if g["status"] == "ok")
    # the key is in no task's or actor's arguments, nor in anything Ray logged
    goal_tasks = [blob for blob in submitted if b"Goal number" in blob]
    assert len(goal_tasks) == 6  # the spy saw every goal's submission
    assert all(KEY.encode() not in blob for blob in submitted)
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    leaked = [p for p in logs.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert logs.is_dir() and not leaked, leaked


def test_a_task_without_the_key_in_its_worker_says_where_to_set_it(local_ray):
    from utils.app.batch import Job
    from utils.app.batch_ray import goal_task
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("OPENAI_API_KEY", raising=False)
        row = goal_task(Job(key="k", line=1, id="a", goal="g", flags={}), None, {}, False, True)
    assert row["status"] == "failed" and "OPENAI_API_KEY is not set on this Ray worker" in row["error"]
    assert "ray start" in row["error"]
