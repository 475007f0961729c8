"""Whole graphs against the fake server: scheduling, context, failures, planning, revision, strategies.

Order and overlap are read from the server's request record (times in and out), never from sleeps.
"""
from __future__ import annotations

import asyncio
import threading

import pytest

from flows import build_flow
from fakes.fake_llm import Reply
from tests.scripted import Script, plan_json, request_kind, task_id, worker_requests
from utils.errors import BudgetExceeded
from utils.events import Collector
from utils.model.client import LLMClient, LLMSettings
from utils.app.run import new_shared
from utils.options import DEFAULT_OPTIONS
from utils.run.spec import load_spec

BLOG = load_spec("blog")


class BudgetAt:
    """The run's client, except that calls whose purpose starts with `prefix` hit the token budget."""

    def __init__(self, llm, prefix: str, skip: int = 0) -> None:
        self._llm, self._prefix, self._skip = llm, prefix, skip

    def __getattr__(self, name):
        return getattr(self._llm, name)

    async def complete(self, messages, **kw):
        if kw.get("purpose", "").startswith(self._prefix):
            self._skip -= 1
            if self._skip < 0:
                raise BudgetExceeded("token budget of 1000 reached (used 990)")
        return await self._llm.complete(messages, **kw)


def run(server, script, *, preset_plan=None, budget_at=None, budget_skip=0, **options):
    server.responder = script
    llm = LLMClient(LLMSettings(provider="openai", base_url=server.base_url, api_key="sk-test", cache=False,
                                max_retries=1, backoff_base_s=0.001, backoff_max_s=0.01, max_concurrency=32))
    if budget_at:
        llm = BudgetAt(llm, budget_at, budget_skip)
    events = Collector()
    opts = {**DEFAULT_OPTIONS, **options}
    shared = new_shared(goal="Write about testing", spec=BLOG, options=opts, inputs={"inputs": [], "data": None},
                        llm=llm, emit=events)
    if preset_plan:
        shared["plan"] = preset_plan
    asyncio.run(build_flow(opts["strategy"]).run_async(shared))
    return shared, events


def only(server, tid):
    reqs = worker_requests(server, tid)
    assert len(reqs) == 1, f"{tid} requested {len(reqs)} times"
    return reqs[0]


DIAMOND = plan_json([("a", "analyst", []), ("b", "writer", ["a"]), ("c", "writer", ["a"]),
                     ("d", "writer", ["b", "c"])])


def test_tasks_wait_for_dependencies_and_independent_tasks_overlap(fake_llm):
    c_arrived, b_arrived = threading.Event(), threading.Event()

    def worker(tid, req):
        # b answers only once c has arrived and vice versa: passes only if they overlap.
        if tid == "b":
            b_arrived.set()
            return Reply(text="## B\n\nb text", wait_for=c_arrived)
        if tid == "c":
            c_arrived.set()
            return Reply(text="## C\n\nc text", wait_for=b_arrived)
        return f"## {tid}\n\n{tid} text"

    shared, _ = run(fake_llm, Script(plans=[DIAMOND], worker=worker), max_workers=4)
    a, b, c, d = (only(fake_llm, t) for t in "abcd")
    assert b.t_in >= a.t_out and c.t_in >= a.t_out
    assert d.t_in >= max(b.t_out, c.t_out)
    assert b.t_in < c.t_out and c.t_in < b.t_out  # overlap
    assert shared["status"] == "ok"


def test_worker_limit_is_never_exceeded(fake_llm):
    plan = plan_json([(f"t{i}", "writer", []) for i in range(9)])
    script = Script(plans=[plan], worker=lambda tid, req: Reply(text=f"## {tid}\n\nx", latency=0.05))
    shared, events = run(fake_llm, script, max_workers=3)
    # worker requests in flight at once, from the server's record (the planning call may stream beside them)
    edges = sorted((t, d) for r in fake_llm.requests if request_kind(r) == "worker" for t, d in ((r.t_in, 1), (r.t_out, -1)))
    in_flight = [sum(d for _, d in edges[:i + 1]) for i in range(len(edges))]
    assert max(in_flight) <= 3
    running = max_running = 0
    for e in events.of("task"):
        if e["state"] == "running":
            running += 1
        elif e["state"] in ("done", "failed"):
            running -= 1
        max_running = max(max_running, running)
    assert max_running == 3
    assert {e["worker"] for e in events.of("task") if e["state"] == "running"} == {1, 2, 3}


@pytest.mark.parametrize("strategy", ["dependency", "priority"])
def test_priority_order_among_ready_tasks(fake_llm, strategy):
    # Whole plan first: while a plan streams in (overlap), a task that arrives when a slot is free
    # starts at once, whatever its priority, so the order would depend on timing.
    plan = plan_json([("root", "analyst", [], 1), ("p5", "writer", ["root"], 5), ("p1", "writer", ["root"], 1),
                      ("p4", "writer", ["root"], 4), ("p2", "writer", ["root"], 2)])
    run(fake_llm, Script(plans=[plan]), max_workers=1, strategy=strategy, overlap=False)
    order = [task_id(r) for r in sorted(fake_llm.requests, key=lambda r: r.t_in) if request_kind(r) == "worker"]
    assert order == ["root", "p1", "p2", "p4", "p5"]


@pytest.mark.parametrize("overlap", [False, True])
def test_dependency_outputs_reach_exactly_the_dependent_tasks(fake_llm, overlap):
    plan = plan_json([("a", "analyst", []), ("b", "writer", ["a"]), ("c", "writer", [])])
    worker = lambda tid, req: f"## {tid}\n\nUNIQUE-OUTPUT-OF-{tid}"  # noqa: E731
    run(fake_llm, Script(plans=[plan], worker=worker), overlap=overlap)
    prompt = {t: only(fake_llm, t).last_user() for t in "abc"}
    assert "UNIQUE-OUTPUT-OF-a" in prompt["b"]
    assert "UNIQUE-OUTPUT-OF-a" not in prompt["c"]
    assert not any("UNIQUE-OUTPUT-OF-b" in p or "UNIQUE-OUTPUT-OF-c" in p for p in prompt.values())
    for i, (t, p) in enumerate(prompt.items()):  # the outline reaches everyone, with their own task marked
        # plan, then run: the whole outline; started while the plan streams: the outline up to its task
        listed = "abc" if not overlap else "abc"[:i + 1]
        assert all(f"Title {x}" in p for x in listed) and not any(f"Title {x}" in p for x in "abc" if x not in listed)
        assert f"[{t}] Title {t}" in p and "<- your task" in p


def test_context_budget_shortens_dependency_outputs_and_says_so(fake_llm):
    plan = plan_json([("a", "analyst", []), ("b", "writer", ["a"])])
    worker = lambda tid, req: "## A\n\n" + "long words " * 3000 if tid == "a" else "## B\n\nok"  # noqa: E731
    run(fake_llm, Script(plans=[plan], worker=worker), context_budget=800)
    prompt = only(fake_llm, "b").last_user()
    assert "shortened to fit the context budget" in prompt
    assert len(prompt) < 800 * 4 + 400


def test_failed_task_skips_dependents_and_the_rest_completes(fake_llm):
    plan = plan_json([("a", "analyst", []), ("b", "writer", ["a"]), ("c", "writer", ["b"]), ("e", "writer", [])])

    def worker(tid, req):
        return Reply(status=500, error_message="boom") if tid == "b" else f"## {tid}\n\nfine"

    shared, _ = run(fake_llm, Script(plans=[plan], worker=worker))
    res = shared["results"]
    assert res["b"]["state"] == "failed" and "task b (writer)" in res["b"]["error"]
    assert res["c"]["state"] == "skipped" and worker_requests(fake_llm, "c") == []
    assert res["a"]["state"] == "done" and res["e"]["state"] == "done"
    assert shared["status"] == "partial"
    assert "Missing section" in shared["document"] and "task `c` was skipped" in shared["document"]
    assert len(worker_requests(fake_llm, "b")) == 2  # one try + max_retries=1, then it gives up


@pytest.mark.parametrize("bad, problem, fixed", [
    (plan_json([("a", "writer", ["c"]), ("b", "writer", ["a"]), ("c", "writer", ["b"])]), "dependency cycle",
     {"a": ["c"], "b": [], "c": ["b"]}),
    (plan_json([("a", "writer", ["nope"]), ("b", "writer", ["a", "b"])]), "unknown task 'nope'",
     {"a": [], "b": ["a"]}),
])
def test_invalid_plan_gets_one_repair_then_is_salvaged_and_said(fake_llm, bad, problem, fixed):
    """References are what a schema cannot say: after the one repair, bad edges are dropped (and
    announced) instead of throwing away the run at planning."""
    shared, events = run(fake_llm, Script(plans=[bad, bad]))
    plans = [r for r in fake_llm.requests if request_kind(r) == "plan"]
    assert len(plans) == 2
    assert problem in plans[1].last_user() and problem not in plans[0].last_user()
    assert {t["id"]: t["depends_on"] for t in shared["plan"]["tasks"]} == fixed
    assert shared["status"] == "ok"
    notices = [e.data["message"] for e in events.events if e.kind == "notice"]
    assert any("plan repaired" in n for n in notices), notices


def test_invalid_plan_repaired_on_second_try(fake_llm):
    bad = plan_json([("a", "writer", ["nope"])])
    shared, _ = run(fake_llm, Script(plans=[bad, DIAMOND]))
    assert shared["status"] == "ok" and [t["id"] for t in shared["plan"]["tasks"]] == list("abcd")


def test_revision_reruns_flagged_tasks_and_dependents_up_to_the_bound(fake_llm):
    revise_b = {"score": 4, "summary": "b is thin", "tasks": [{"id": "b", "verdict": "revise",
                                                               "feedback": "ADD-MORE-EXAMPLES"}]}
    shared, events = run(fake_llm, Script(plans=[DIAMOND], reviews=[revise_b]), max_revisions=1)
    assert len(worker_requests(fake_llm, "a")) == 1 and len(worker_requests(fake_llm, "c")) == 1
    b_reqs, d_reqs = worker_requests(fake_llm, "b"), worker_requests(fake_llm, "d")
    assert len(b_reqs) == 2 and len(d_reqs) == 2  # flagged task and its dependent, once more each
    assert "ADD-MORE-EXAMPLES" in b_reqs[1].last_user() and "Your previous version" in b_reqs[1].last_user()
    assert "ADD-MORE-EXAMPLES" not in b_reqs[0].last_user()
    assert d_reqs[1].t_in >= b_reqs[1].t_out
    reviews = shared["reviews"]
    assert len(reviews) == 2 and reviews[0]["rerun"] == ["b", "d"] and reviews[1]["bounded"] is True
    assert shared["results"]["b"]["revision"] == 1 and len(events.of("review")) == 2


def test_zero_revisions_means_review_only(fake_llm):
    revise_b = {"score": 4, "tasks": [{"id": "b", "verdict": "revise", "feedback": "x"}]}
    shared, _ = run(fake_llm, Script(plans=[DIAMOND], reviews=[revise_b]), max_revisions=0)
    assert len(worker_requests(fake_llm, "b")) == 1 and len(shared["reviews"]) == 1


def test_dynamic_plans_step_by_step_until_done(fake_llm):
    steps = [plan_json([("a", "analyst", [])]), plan_json([("b", "writer", ["a"]), ("c", "writer", ["a"])]),
             plan_json([], done=True)]
    shared, events = run(fake_llm, Script(plans=steps), strategy="dynamic")
    assert [t["id"] for t in shared["plan"]["tasks"]] == ["a", "b", "c"]
    assert shared["status"] == "ok" and len(events.of("plan")) == 3
    plan_reqs = [r for r in fake_llm.requests if request_kind(r) == "plan"]
    assert "Results so far" in plan_reqs[1].last_user() and "[a]" in plan_reqs[1].last_user()


def test_dynamic_stops_at_max_rounds(fake_llm):
    counter = iter(range(100))

    def endless(req):  # a model that never says done: always one more task
        if request_kind(req) != "plan":
            return Script()(req)
        n = next(counter)
        return Reply(json=plan_json([(f"s{n}", "writer", [])]))

    shared, _ = run(fake_llm, endless, strategy="dynamic", max_rounds=3)
    assert len([r for r in fake_llm.requests if request_kind(r) == "plan"]) == 3
    assert shared["status"] == "ok" and len(shared["plan"]["tasks"]) == 3


def test_hybrid_rewrites_pending_tasks_and_stays_valid(fake_llm):
    first = plan_json([("a", "analyst", []), ("b", "writer", ["a"]), ("c", "writer", ["b"])])
    rewritten = plan_json([("b", "writer", ["a"]), ("x", "writer", ["a"])])  # c dropped, x added
    shared, _ = run(fake_llm, Script(plans=[first, rewritten, plan_json([], done=True)]), strategy="hybrid")
    ids = [t["id"] for t in shared["plan"]["tasks"]]
    assert ids == ["a", "b", "x"] and shared["status"] == "ok"
    assert worker_requests(fake_llm, "c") == []
    assert only(fake_llm, "a").t_out <= only(fake_llm, "b").t_in


def test_static_runs_in_plan_order_with_one_worker(fake_llm):
    plan = plan_json([("a", "writer", [], 5), ("b", "writer", [], 1), ("c", "writer", [], 3)])
    run(fake_llm, Script(plans=[plan]), strategy="static", max_workers=1)
    order = [task_id(r) for r in sorted(fake_llm.requests, key=lambda r: r.t_in) if request_kind(r) == "worker"]
    assert order == ["a", "b", "c"]


def test_preset_plan_makes_no_planning_call(fake_llm):
    shared, _ = run(fake_llm, Script(plans=[DIAMOND]), preset_plan=DIAMOND)
    assert not [r for r in fake_llm.requests if request_kind(r) == "plan"]
    assert shared["status"] == "ok"


def test_document_assembled_in_plan_order_with_cohesion(fake_llm):
    cohesion = {"title": "Testing, properly", "meta_description": "m", "introduction": "INTRO",
                "transitions": {"c": "TRANSITION-TO-C"}}
    shared, _ = run(fake_llm, Script(plans=[DIAMOND], cohesion=cohesion))
    doc = shared["document"]
    assert doc.startswith("# Testing, properly")
    positions = [doc.index(f"{t} text") if f"{t} text" in doc else doc.index(f"Text for {t}") for t in "bcd"]
    assert positions == sorted(positions)
    assert "Text for a" not in doc  # the blog's analysis stays in run.json, not the post
    assert doc.index("TRANSITION-TO-C") < doc.index("Text for c")


BAD_PLAN = {"notes": "", "tasks": [{"id": "z", "title": "Z", "role": "poet"}]}   # unknown role, twice


@pytest.mark.parametrize("strategy", ["dynamic", "hybrid"])
def test_failed_replan_keeps_the_plan_runs_what_is_pending_and_says_partial(fake_llm, strategy):
    first = plan_json([("a", "analyst", []), ("b", "writer", ["a"])])
    shared, events = run(fake_llm, Script(plans=[first, BAD_PLAN]), strategy=strategy)
    states = {tid: r["state"] for tid, r in shared["results"].items()}
    assert states == {"a": "done", "b": "done"}  # hybrid: b was still pending when re-planning failed
    assert shared["status"] == "partial" and "re-planning failed" in shared["status_reason"]
    assert shared["document"] and shared["reviews"][-1]["score"] is not None
    assert any("re-planning failed" in n["message"] for n in events.of("notice"))


def test_failed_review_is_not_an_approval(fake_llm):
    bad = {"score": 99, "summary": "x", "tasks": []}
    shared, events = run(fake_llm, Script(plans=[DIAMOND], reviews=[bad, bad]))
    assert all(r["state"] == "done" for r in shared["results"].values())
    assert shared["status"] == "unreviewed" and "review round 1 failed" in shared["status_reason"]
    assert shared["reviews"][-1]["failed"] and shared["reviews"][-1]["score"] is None
    assert "Text for b" in shared["document"]


def test_failed_cohesion_pass_warns_and_keeps_the_sections(fake_llm):
    shared, events = run(fake_llm, Script(plans=[DIAMOND], cohesion={"title": "", "transitions": "nope"}))
    assert shared["status"] == "ok" and "Text for d" in shared["document"]
    assert any(n["level"] == "warn" and "cohesion pass skipped" in n["message"] for n in events.of("notice"))


@pytest.mark.parametrize("strategy, where, skip", [("dependency", "review", 0), ("dynamic", "planning the next", 1),
                                                   ("hybrid", "re-planning", 0)])
def test_budget_stop_during_review_or_replanning_still_assembles(fake_llm, strategy, where, skip):
    first = plan_json([("a", "analyst", []), ("b", "writer", ["a"])])
    shared, _ = run(fake_llm, Script(plans=[first]), strategy=strategy, budget_at=where, budget_skip=skip)
    assert shared["stopped"].startswith("token budget") and shared["document"]
    assert shared["status"] == "stopped"          # resumable: the review or next round is still owed
    assert shared["results"]["a"]["state"] == "done"
    assert "Resume with --resume" in shared["document"]
    assert ("Text for b" in shared["document"]) == (strategy != "hybrid")  # hybrid: b was still pending


def test_revise_without_feedback_is_not_a_revision(fake_llm):
    empty = {"score": 5, "summary": "s", "tasks": [{"id": "b", "verdict": "revise", "feedback": "  "}]}
    shared, events = run(fake_llm, Script(plans=[DIAMOND], reviews=[empty]))
    assert len(worker_requests(fake_llm, "b")) == 1 and len(shared["reviews"]) == 1
    assert shared["reviews"][0]["revise"] == [] and shared["reviews"][0]["rerun"] == []


def test_revision_rerun_set_is_bounded_and_announced(fake_llm):
    chain = plan_json([("r", "analyst", [])] + [(f"s{i}", "writer", ["r"]) for i in range(20)])
    revise_root = {"score": 3, "tasks": [{"id": "r", "verdict": "revise", "feedback": "Rethink the angle."}]}
    shared, events = run(fake_llm, Script(plans=[chain], reviews=[revise_root]), max_tasks=30, max_rerun=5)
    review = shared["reviews"][0]
    assert review["rerun"] == ["r", "s0", "s1", "s2", "s3"] and len(review["held"]) == 16
    assert sum(len(worker_requests(fake_llm, f"s{i}")) for i in range(20)) == 20 + 4
    assert any("5 task(s) will re-run" in n["message"] and "16 further" in n["message"] for n in events.of("notice"))


def test_worker_headings_are_demoted_under_the_planned_title(fake_llm):
    def worker(tid, req):
        return {"b": "# My Own Title\n\nb text\n\n## Detail\n\n```python\n# not a heading\n```",
                "c": "## Title c\n\nc text", "d": "d text"}.get(tid, "analysis")
    shared, _ = run(fake_llm, Script(plans=[DIAMOND], worker=worker))
    doc = shared["document"]
    lines = doc.splitlines()
    assert [line for line in lines if line.startswith("# ")] == ["# Scripted title", "# not a heading"]
    assert "## Title b" in lines and "### My Own Title" in lines and "#### Detail" in lines
    assert "# not a heading" in lines                      # code is left alone
    assert lines.count("## Title c") == 1                  # a heading repeating the title is not doubled


def test_deeply_nested_replies_are_bad_replies_never_a_crash(fake_llm):
    """A reply nested thousands deep fails parsing like any bad reply: repaired once, then the step's
    fallback (the review is unreviewed, the cohesion pass skipped): the finished work is kept."""
    deep = '{"score": 5, "tasks": ' + "[" * 20000 + "]" * 20000 + "}"
    script = Script(plans=[DIAMOND])

    def responder(req):
        return Reply(text=deep) if request_kind(req) in ("review", "cohesion") else script(req)

    shared, events = run(fake_llm, responder)
    assert shared["status"] == "unreviewed" and all(r["state"] == "done" for r in shared["results"].values())
    assert "Text for d" in shared["document"]
    assert any("cohesion pass skipped" in n["message"] for n in events.of("notice"))


