"""Budgets and runaway loops: `--max-tokens-total` stops scheduling model calls, saves, reports and can
be resumed with a bigger budget; revisions, dynamic/hybrid planning rounds and plan repairs are bounded
whatever the model says. Every bound is read from the fake server's request record.
"""
from __future__ import annotations

import itertools
import json
import threading

import pytest

from fakes.fake_llm import Reply
from tests.scripted import Script, request_kind
from tests.helpers import cli_env, done_ids, fast_config, only_run, read_state, run_main, worker_counts
from tests.test_resume import SIX_SECTIONS, WRITERS, assert_complete_document, section_text

UNIT = {"prompt_tokens": 500, "completion_tokens": 500, "total_tokens": 1000}


def metered(script: Script):
    """Every reply reports 1,000 tokens of usage, so the budget arithmetic does not depend on prompt sizes."""
    def responder(req):
        reply = script(req)
        reply = reply if isinstance(reply, Reply) else Reply(text=reply)
        reply.usage = dict(UNIT)
        return reply
    return responder


def server_tokens(requests) -> int:
    return sum(UNIT["total_tokens"] for r in requests if r.status == 200)


# ---------------------------------------------------------------- --max-tokens-total

def test_token_budget_stops_saves_reports_and_resumes_with_a_bigger_budget(fake_llm, tmp_path):
    """Budget 3,500 with 1,000 tokens a call: plan, t1, t2 fit; the next call would not (its estimate
    is over 500 tokens), so the run stops there. One worker keeps the order deterministic."""
    fake_llm.responder = metered(Script(plans=[SIX_SECTIONS],
                                        worker=lambda tid, req: f"## Section {tid}\n\n{section_text(tid)}"))
    out = tmp_path / "runs"
    env = cli_env(tmp_path / "home", fake_llm.base_url)
    common = ["--no-cache", "--output-dir", str(out), "--config", str(fast_config(tmp_path / "fast.yaml"))]
    first = run_main(["--example", "blog", "--max-workers", "1", "--max-tokens-total", "3500", *common], env)
    assert first.code == 1, first.explain()
    assert "stopped" in first.stdout and "--resume" in first.output and "budget" in first.output
    assert "not done yet: t3, t4, t5, t6, t7" in first.output  # what is left
    assert "Traceback" not in first.output
    # no model call past the budget: not even the review or the cohesion pass
    assert [request_kind(r) for r in fake_llm.requests] == ["plan", "worker", "worker"]
    assert server_tokens(fake_llm.requests) <= 3500
    run_dir = only_run(out)
    state = read_state(run_dir)
    assert state["status"] == "stopped" and "budget" in state["stopped"]
    assert state["options"]["max_tokens_total"] == 3500
    assert done_ids(state) == {"t1", "t2"}
    assert all(state["results"][t]["state"] == "pending" for t in ("t3", "t4", "t5", "t6", "t7")
               if t in state["results"])
    doc = (run_dir / "output.md").read_text(encoding="utf-8")
    assert doc.count(section_text("t2")) == 1 and doc.count("Missing section") == len(WRITERS) - 1

    # Resuming with the saved budget: the run has already spent it, so nothing more is sent.
    before = len(fake_llm.requests)
    again = run_main(["--resume", str(run_dir), *common], env)
    assert again.code == 1, again.explain()
    assert len(fake_llm.requests) == before and read_state(run_dir)["status"] == "stopped"

    # A bigger budget on the command line overrides the saved one and the run completes.
    bigger = run_main(["--resume", str(run_dir), "--max-tokens-total", "100000", *common], env)
    assert bigger.code == 0, bigger.explain()
    state = read_state(run_dir)
    assert state["status"] == "ok" and state["options"]["max_tokens_total"] == 100000 and not state["stopped"]
    assert state["options"]["max_workers"] == 1  # the other saved options still stand
    counts = worker_counts(fake_llm)
    assert counts["t1"] == 1 and counts["t2"] == 1, counts
    assert all(counts[t] == 1 for t in WRITERS)
    assert state["totals"]["calls"] == len(fake_llm.requests)  # totals cover the whole run
    assert_complete_document(run_dir)


def test_a_stopped_run_makes_no_cohesion_call_even_with_budget_left(fake_llm):
    """After the budget stopped the workers, assembling the partial document costs nothing: the
    cohesion pass waits for --resume (checked on the node, with an unlimited client)."""
    import asyncio

    from nodes import AggregatorNode
    from utils.model.client import LLMClient, LLMSettings
    from utils.app.run import new_shared
    from utils.options import DEFAULT_OPTIONS
    from utils.run.spec import load_spec

    fake_llm.responder = Script()
    llm = LLMClient(LLMSettings(provider="openai", base_url=fake_llm.base_url, api_key="sk-x", cache=False))
    shared = new_shared(goal="g", spec=load_spec("blog"), options=dict(DEFAULT_OPTIONS),
                        inputs={"inputs": [], "data": None}, llm=llm, emit=lambda event: None)
    shared["plan"] = SIX_SECTIONS
    shared["results"] = {"t1": {"id": "t1", "state": "done", "output": "analysis"},
                         "t2": {"id": "t2", "state": "done", "output": f"## Two\n\n{section_text('t2')}"},
                         "t3": {"id": "t3", "state": "pending", "error": "token budget of 10 reached"}}
    shared["stopped"] = "token budget of 10 reached (used 9)"
    asyncio.run(AggregatorNode().run_async(shared))
    assert fake_llm.requests == []
    assert shared["status"] == "stopped"
    assert shared["document"].count(section_text("t2")) == 1 and "--resume" in shared["document"]


def test_budget_too_small_to_plan_stops_cleanly(fake_llm, tmp_path):
    fake_llm.responder = metered(Script(plans=[SIX_SECTIONS]))
    out = tmp_path / "runs"
    done = run_main(["--example", "blog", "--no-cache", "--output-dir", str(out), "--max-tokens-total", "10"],
                    cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 1, done.explain()
    assert fake_llm.requests == []
    assert "--resume" in done.output and "Traceback" not in done.output
    assert read_state(only_run(out))["status"] == "stopped"


# ---------------------------------------------------------------- runaway loops are impossible

def test_revisions_are_bounded_even_if_the_reviewer_always_asks_for_more(fake_llm, tmp_path):
    always = {"score": 2, "summary": "never good enough",
              "tasks": [{"id": "t2", "verdict": "revise", "feedback": "again, better"}]}
    fake_llm.responder = Script(plans=[SIX_SECTIONS], reviews=[always],
                                worker=lambda tid, req: f"## Section {tid}\n\n{section_text(tid)}")
    out = tmp_path / "runs"
    done = run_main(["--example", "blog", "--no-cache", "--output-dir", str(out), "--max-revisions", "2"],
                    cli_env(tmp_path / "home", fake_llm.base_url))
    # the rounds end; the final score (2/10) is below the workflow's minimum, so the run says it needs work
    assert done.code == 1 and "needs-work" in done.stdout and "never good enough" in done.stdout, done.explain()
    kinds = [request_kind(r) for r in fake_llm.requests]
    assert kinds.count("review") == 3  # the first review and one after each of the 2 revisions
    counts = worker_counts(fake_llm)
    assert counts["t2"] == 3 and counts["t5"] == 3  # t5 builds on t2, so it follows it
    assert counts["t3"] == 1 and counts["t1"] == 1
    state = read_state(only_run(out))
    assert state["revisions_done"] == 2 and state["reviews"][-1]["bounded"] is True
    assert_complete_document(only_run(out))


@pytest.mark.parametrize("bad_plan", [  # (a cycle that survives the repair is salvaged: test_flows)
    {"goal": "g", "notes": "", "tasks": [{"id": "a", "title": "A", "role": "astronaut"}]},
    "this is not a plan at all",
], ids=["unknown-role", "not-json"])
def test_plan_repair_is_bounded_when_the_plan_stays_invalid(fake_llm, tmp_path, bad_plan):
    fake_llm.responder = lambda req: Reply(text=bad_plan if isinstance(bad_plan, str) else json.dumps(bad_plan))
    out = tmp_path / "runs"
    done = run_main(["--example", "blog", "--no-cache", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 1, done.explain()
    assert len(fake_llm.requests) == 2  # one plan, one repair with the exact problems, then stop
    assert all(request_kind(r) == "plan" for r in fake_llm.requests)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.output
    assert read_state(only_run(out))["status"] == "failed"


@pytest.mark.parametrize("strategy", ["dynamic", "hybrid"])
def test_planning_rounds_are_bounded_when_the_planner_never_says_done(fake_llm, tmp_path, strategy):
    fresh, lock = itertools.count(1), threading.Lock()
    script = Script(worker=lambda tid, req: f"## Section {tid}\n\n{section_text(tid)}")

    def responder(req):
        if request_kind(req) != "plan":
            return script(req)
        with lock:
            n = next(fresh)
        # always one more step, never done (each with a new id, so the plan itself stays valid)
        return Reply(text=json.dumps({"goal": "g", "notes": "", "done": False, "tasks": [
            {"id": f"s{n}", "title": f"Step {n}", "role": "writer", "instructions": "more"}]}))

    fake_llm.responder = responder
    out = tmp_path / "runs"
    done = run_main(["--example", "blog", "--no-cache", "--output-dir", str(out), "--strategy", strategy,
                     "--max-rounds", "3", "--max-revisions", "0"], cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 0, done.explain()
    plans = [r for r in fake_llm.requests if request_kind(r) == "plan"]
    assert len(plans) == 3, f"{len(plans)} planning calls with --max-rounds 3"
    counts = worker_counts(fake_llm)
    assert set(counts.values()) == {1}
    state = read_state(only_run(out))
    assert state["rounds"] <= 3 and done_ids(state) == set(counts)
