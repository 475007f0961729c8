"""Work starts while the plan streams (issue 23): the incremental reader, the gate, reconciliation after
a repair, and whole graphs against the fake server. Order is read from the server's record and the
event order, never from wall-clock thresholds."""
from __future__ import annotations

import asyncio
import json
import threading

import pytest

from fakes.fake_llm import FakeLLMServer, Reply
from flows import build_flow
from tests.scripted import Script, plan_json, request_kind, worker_requests
from utils.app.run import new_shared
from utils.options import DEFAULT_OPTIONS
from utils.events import Collector
from utils.model.client import LLMClient, LLMSettings
from utils.run.plan import Plan
from utils.run.plan_stream import Gate, TaskObjects, reconcile
from utils.run.spec import load_spec

BLOG = load_spec("blog")


# -- pure parts ------------------------------------------------------------------------------------
def test_task_objects_come_out_once_each_when_their_brace_closes():
    plan = {"notes": 'say "hi" {not a task}', "tasks": [
        {"id": "t1", "title": "a } [ {", "role": "writer", "instructions": "x\\\"]}", "depends_on": []},
        {"id": "t2", "title": "b", "role": "writer", "instructions": "", "depends_on": ["t1"]}]}
    text = "Here you are:\n" + json.dumps(plan)
    reader, seen, when = TaskObjects(), [], {}
    for i in range(1, len(text) + 1):
        for obj in reader.feed(text[:i]):
            seen.append(obj["id"])
            when[obj["id"]] = i
    assert seen == ["t1", "t2"]
    assert reader.head == {"notes": plan["notes"]}
    assert text[when["t1"] - 1] == "}" and json.loads(text[text.index('{"id": "t1"'):when["t1"]]) == plan["tasks"][0]
    assert reader.feed('{"tasks": [{"id": "r"}') == [{"id": "r"}] and reader.restarted == 1  # a new reply


def test_gate_admits_a_task_once_its_dependencies_are_known():
    gate = Gate(["writer", "analyst", "tool"], known={"old"}, hold_roles={"tool"})
    t = lambda tid, deps, role="writer": {"id": tid, "title": tid, "role": role, "depends_on": deps}  # noqa: E731
    assert gate.offer(t("b", ["a"])) == []                      # waits for a
    assert [x.id for x in gate.offer(t("a", ["old"]))] == ["a", "b"]
    assert gate.offer(t("a", [])) == []                         # duplicate id
    assert gate.offer(t("c", [], role="nobody")) == []           # unknown role
    assert gate.offer(t("d", ["d"])) == []                      # depends on itself
    assert gate.offer(t("s", [], role="tool")) == []             # its role's needs are wired at the end
    frontier = Gate(["writer"], known={"old"}, frontier=True)
    assert [x.id for x in frontier.offer(t("a", ["old"]))] == ["a"]
    assert frontier.offer(t("b", ["a"])) == []                  # hybrid: one frontier per batch


def test_reconcile_discards_changed_tasks_and_whatever_was_built_on_them():
    first = Plan.model_validate({"goal": "g", **plan_json([("a", "writer", []), ("b", "writer", ["a"]),
                                                            ("c", "writer", ["b"]), ("d", "writer", [])])})
    final = Plan.model_validate(first.model_dump())
    final.tasks[1].instructions = "Do b differently"
    final.tasks = [x for x in final.tasks if x.id != "d"]
    kept, discarded = reconcile({x.id: x for x in first.tasks}, final)
    assert kept == ["a"] and discarded == ["b", "c", "d"]


# -- whole graphs ----------------------------------------------------------------------------------
def run(server, script, **options):
    server.responder = script
    llm = LLMClient(LLMSettings(provider="openai", base_url=server.base_url, api_key="sk-test", cache=False,
                                max_retries=1, backoff_base_s=0.001, backoff_max_s=0.01, max_concurrency=32))
    events = Collector()
    opts = {**DEFAULT_OPTIONS, "max_revisions": 0, **options}
    shared = new_shared(goal="Write about testing", spec=BLOG, options=opts, inputs={"inputs": [], "data": None},
                        llm=llm, emit=events)
    asyncio.run(build_flow(opts["strategy"]).run_async(shared))
    return shared, events


class Streamed(Script):
    """Plans stream; plan number n pauses before the character `pause[n]` until `resume[n]` is set."""

    def __init__(self, plans, pause, resume, **kw):
        super().__init__(plans=plans, **kw)
        self.pause, self.resume = pause, resume

    def __call__(self, req):
        reply = super().__call__(req)
        if request_kind(req) == "plan":
            n = self.counts["plan"] - 1
            reply = Reply(text=reply.text, chunk_size=16, pause_at=self.pause.get(n), resume_on=self.resume.get(n))
        return reply


def held_at(text: str, tid: str) -> int:
    """A pause point inside task `tid`'s object, in a later 16-character delta than the brace closing
    the task before it (so that task has fully arrived while the stream waits)."""
    return text.index(f'{{"id": "{tid}"') + 16


def _kinds_in_order(events) -> list[str]:
    return [e.kind if e.kind != "task" else f"task:{e.data['id']}:{e.data['state']}" for e in events.events]


def test_first_worker_request_leaves_before_the_plan_has_finished(fake_llm):
    plan = plan_json([("a", "writer", []), ("b", "writer", []), ("c", "writer", ["a", "b"])])
    text = json.dumps(plan)
    a_asked = threading.Event()

    def worker(tid, req):
        if tid == "a":
            a_asked.set()
        return f"## {tid}\n\n{tid} text"

    # The plan's reply stops just before task c until a's worker request has reached the server: the
    # run can only end if work started while the plan was still being written.
    script = Streamed([plan], pause={0: held_at(text, "c")}, resume={0: a_asked}, worker=worker)
    shared, events = run(fake_llm, script)
    planning = next(r for r in fake_llm.requests if request_kind(r) == "plan")
    first = min((r for r in fake_llm.requests if request_kind(r) == "worker"), key=lambda r: r.t_in)
    # a and b need nothing and may arrive in one chunk: either one's request may reach the server first
    assert planning.stream and any(worker_requests(fake_llm, t)[0] is first for t in "ab")
    assert first.t_in < planning.t_out                      # by the server's record
    order = _kinds_in_order(events)
    assert order.index("task:a:running") < order.index("plan")  # by the event order
    assert shared["status"] == "ok" and all(shared["results"][t]["state"] == "done" for t in "abc")
    assert {r.data["name"] for r in events.events if r.kind == "phase"} >= {"planning", "planning + working"}
    assert set(shared["planning"]["streamed"]) == {"a", "b", "c"}
    assert sum(1 for r in fake_llm.requests if request_kind(r) == "worker") == 3  # each task once


def test_repaired_plan_keeps_unchanged_work_and_never_mixes_in_changed_tasks(fake_llm):
    invalid = plan_json([("t1", "writer", []), ("t2", "writer", ["t1"]), ("t3", "writer", ["t2"]),
                         ("t4", "writer", ["ghost"])])
    valid = json.loads(json.dumps(invalid))
    valid["tasks"][1]["instructions"] = "Do t2 the repaired way"
    valid["tasks"][3]["depends_on"] = ["t1"]
    t3_asked = threading.Event()
    versions: dict[str, int] = {}
    lock = threading.Lock()

    def worker(tid, req):
        with lock:
            versions[tid] = versions.get(tid, 0) + 1
            n = versions[tid]
        if tid == "t3":
            t3_asked.set()
        return f"## {tid}\n\n{tid} v{n}"

    # The first (invalid) plan is held open until t3, built on t2, has been asked for: t1, t2 and
    # t3 all started on the plan that the validators then send back for its one repair.
    text = json.dumps(invalid)
    script = Streamed([invalid, valid], pause={0: len(text) - 2}, resume={0: t3_asked}, worker=worker)
    shared, events = run(fake_llm, script)
    results = shared["results"]
    assert len([r for r in fake_llm.requests if request_kind(r) == "plan"]) == 2
    assert len(worker_requests(fake_llm, "t1")) == 1            # unchanged: kept, not run again
    assert results["t1"]["output"].endswith("t1 v1")
    t2s = worker_requests(fake_llm, "t2")
    assert len(t2s) == 2 and "Do t2 the repaired way" in t2s[-1].last_user()
    assert results["t2"]["output"].endswith("t2 v2")
    last_t3 = worker_requests(fake_llm, "t3")[-1]               # unchanged itself, but built on t2
    assert "t2 v2" in last_t3.last_user() and "t2 v1" not in last_t3.last_user()
    assert results["t3"]["output"].endswith(f"t3 v{versions['t3']}") and versions["t3"] >= 1
    assert all("v1" not in results[t]["output"] for t in ("t2",)) and shared["status"] == "ok"
    assert sorted(shared["planning"]["discarded"]) == ["t2", "t3"]
    assert any("discarded" in e.data["message"] for e in events.events if e.kind == "notice")
    order = _kinds_in_order(events)
    assert order.index("task:t2:skipped") < max(i for i, k in enumerate(order) if k == "task:t2:done")


@pytest.mark.parametrize("mode", ["refuse", "ignore"])
def test_a_server_that_cannot_stream_answers_the_plan_whole(mode):
    plan = plan_json([("a", "writer", []), ("b", "writer", ["a"])])
    with FakeLLMServer(streaming=mode) as server:
        shared, events = run(server, Script(plans=[plan]))
        plans = [r for r in server.requests if request_kind(r) == "plan"]
    assert shared["status"] == "ok" and {shared["results"][t]["state"] for t in "ab"} == {"done"}
    assert plans[0].stream
    if mode == "refuse":  # a 400 naming `stream`: asked again for the whole reply
        assert [r.status for r in plans] == [400, 200] and not plans[1].stream


def test_overlap_off_plans_first_without_streaming(fake_llm):
    plan = plan_json([("a", "writer", []), ("b", "writer", [])])
    shared, events = run(fake_llm, Script(plans=[plan]), overlap=False)
    planning = next(r for r in fake_llm.requests if request_kind(r) == "plan")
    assert not planning.stream and "planning" not in shared
    assert min(r.t_in for r in fake_llm.requests if request_kind(r) == "worker") >= planning.t_out


@pytest.mark.parametrize("strategy", ["dynamic", "hybrid"])
def test_a_replan_streams_too_and_its_tasks_start_before_it_ends(fake_llm, strategy):
    first = plan_json([("a", "analyst", [])])
    second = plan_json([("b", "writer", ["a"]), ("c", "writer", ["a"])])
    b_asked = threading.Event()

    def worker(tid, req):
        if tid == "b":
            b_asked.set()
        return f"## {tid}\n\n{tid} text"

    text = json.dumps(second)
    script = Streamed([first, second, plan_json([], done=True)], pause={1: held_at(text, "c")},
                      resume={1: b_asked}, worker=worker)
    shared, events = run(fake_llm, script, strategy=strategy)
    replan = [r for r in fake_llm.requests if request_kind(r) == "plan"][1]
    assert worker_requests(fake_llm, "b")[0].t_in < replan.t_out
    assert [len(worker_requests(fake_llm, t)) for t in "abc"] == [1, 1, 1]
    assert shared["status"] == "ok" and [t["id"] for t in shared["plan"]["tasks"]] == ["a", "b", "c"]


def test_no_overlap_flag_and_config_reach_the_run_options(tmp_path):
    from main import build_parser
    from utils.app.settings import build_settings

    flags = vars(build_parser().parse_args(["--no-overlap", "a topic"]))
    assert build_settings(flags).options["overlap"] is False
    assert "overlap" not in build_settings(vars(build_parser().parse_args(["a topic"]))).options
    config = tmp_path / "config.yaml"
    config.write_text("overlap: false\n", encoding="utf-8")
    flags = vars(build_parser().parse_args(["--config", str(config), "a topic"]))
    assert build_settings(flags).options["overlap"] is False
