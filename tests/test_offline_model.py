"""The offline model: the same `complete()` as the real client, chosen once, answering structured
calls from the workflow spec and the run's state, so no node passes offline stand-ins."""
from __future__ import annotations

import asyncio
import inspect

import pytest

from flows import build_flow
from utils.app.run import new_shared
from utils.options import DEFAULT_OPTIONS
from utils.events import Collector
from utils.model.client import LLMClient, LLMSettings, make_model
from utils.model.offline import LABEL, OfflineModel
from utils.run.outputs import Cohesion, ReviewResult
from utils.run.plan import Plan
from utils.run.spec import load_spec
from utils.run.standins import RunStandIns, offline_plan

GOAL = "Field notes on repairing a 1970s bicycle hub"


def offline_run(workflow: str, strategy: str, **options):
    events = Collector()
    llm = make_model(LLMSettings(provider="offline"), emit=events)
    spec = load_spec(workflow)
    opts = {**DEFAULT_OPTIONS, "strategy": strategy, **options}
    shared = new_shared(goal=GOAL, spec=spec, options=opts, inputs={"inputs": [], "data": None}, llm=llm, emit=events)
    asyncio.run(build_flow(strategy).run_async(shared))
    return shared, events, spec


def test_the_model_is_chosen_once_and_both_kinds_share_complete():
    offline = make_model(LLMSettings(provider="offline"))
    real = make_model(LLMSettings(provider="openai", base_url="http://127.0.0.1:9/v1"))
    assert isinstance(offline, OfflineModel) and offline.offline
    assert isinstance(real, LLMClient) and not real.offline
    assert inspect.signature(OfflineModel.complete).parameters.keys() == \
        inspect.signature(LLMClient.complete).parameters.keys()
    assert "offline_reply" not in inspect.signature(LLMClient.complete).parameters


@pytest.mark.parametrize("strategy", ["dependency", "dynamic", "hybrid"])
def test_an_offline_run_plans_works_reviews_and_assembles_from_the_spec(strategy):
    shared, events, spec = offline_run("blog", strategy)
    example = offline_plan(spec, GOAL, [], DEFAULT_OPTIONS["max_tasks"])
    assert sorted(t["id"] for t in shared["plan"]["tasks"]) == sorted(t.id for t in example.tasks)
    assert all(r["state"] == "done" for r in shared["results"].values())
    assert set(shared["results"]) == {t.id for t in example.tasks}
    review = shared["reviews"][0]
    assert sorted(review["approved"]) == sorted(shared["results"]) and review["score"] is None
    assert LABEL in shared["document"] and shared["title"].startswith("Field notes on repairing")
    calls = events.of("call")
    assert calls and all(c["offline"] and c["error"] is None for c in calls)
    assert {"planning", "cohesion pass"} <= {c["purpose"] for c in calls} or strategy == "dynamic"


def test_structured_worker_roles_get_their_spec_data():
    spec = load_spec("project")
    roles = [name for name, role in spec.roles.items() if getattr(role, "offline_data", None)]
    if not roles:
        pytest.skip("no workflow ships a role with offline_data")
    shared = {"goal": GOAL, "spec": spec, "options": dict(DEFAULT_OPTIONS), "results": {}}
    standins = RunStandIns(shared)
    assert standins(f"task t9 ({roles[0]})", object) == spec.roles[roles[0]].offline_data
    assert standins("task t9 (no-such-role)", object) is None


def test_standins_follow_the_run_state():
    spec = load_spec("blog")
    shared = {"goal": GOAL, "spec": spec, "options": dict(DEFAULT_OPTIONS), "results": {},
              "inputs": {"inputs": [], "data": None}}
    standins = RunStandIns(shared)
    full = standins("planning", Plan)
    first = standins("planning the next step", Plan)
    assert len(first.tasks) < len(full.tasks) and not first.done
    shared["results"] = {t.id: {"state": "done"} for t in first.tasks}
    second = standins("planning the next step", Plan)
    assert not {t.id for t in second.tasks} & set(shared["results"])
    shared["plan"] = full.model_dump()
    pending = standins("re-planning", Plan)
    assert [t.id for t in pending.tasks] == [t.id for t in full.tasks if t.id not in shared["results"]]
    review = standins("review round 1", ReviewResult)
    assert [v.id for v in review.tasks] == [t.id for t in first.tasks]
    assert standins("cohesion pass", Cohesion).title.startswith("Field notes")


def test_one_token_estimator():
    from utils.model import offline, tokens
    from utils.run import context

    assert context.estimate_tokens is tokens.estimate_tokens is offline.estimate_tokens
    assert [tokens.estimate_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
