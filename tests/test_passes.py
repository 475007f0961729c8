"""What the next worker pass runs, what a re-planning round is told (utils/run/passes.py), and the
planner both planning nodes use (utils/run/planning.py): pure functions, no model, no graph."""
import asyncio
from types import SimpleNamespace

from utils.run.passes import frontier, not_started, queue_for, replanning, satisfied, still_queued
from utils.run.plan import Plan, Task
from utils.run.planning import planner
from utils.run.spec import load_spec

PLAN = Plan(goal="g", tasks=[Task(id="a", title="A", role="writer"),
                             Task(id="b", title="B", role="writer", depends_on=["a"]),
                             Task(id="c", title="C", role="writer", depends_on=["a", "b"]),
                             Task(id="d", title="D", role="writer")])
OPTIONS = {"strategy": "hybrid", "max_rounds": 3, "max_tasks": 10}


def res(**states: str) -> dict:
    return {tid: {"id": tid, "state": state, "output": tid.upper()} for tid, state in states.items()}


def test_frontier_is_the_pending_tasks_whose_dependencies_all_ended():
    assert frontier(PLAN, {}) == ["a", "d"]
    assert frontier(PLAN, res(a="failed")) == ["b", "d"]                  # failed ends a task too
    assert frontier(PLAN, res(a="done", b="skipped", d="pending")) == ["c", "d"]  # pending has not ended


def test_queue_after_a_plan_hybrid_one_frontier_others_everything_not_done():
    results = res(a="done", b="failed")
    assert queue_for(PLAN, results, "hybrid") == ["c", "d"]
    assert queue_for(PLAN, results, "dependency") == ["b", "c", "d"]      # failed work runs again
    assert queue_for(PLAN, {"a": {"id": "a"}}, "static") == ["a", "b", "c", "d"]  # no state: not started


def test_satisfied_still_queued_and_not_started():
    results = res(a="done", b="done", c="failed")
    assert satisfied(results, ["b", "c"]) == {"a"}
    assert still_queued(["a", "b", "c", "d"], res(a="done", b="skipped", c="pending")) == ["c", "d"]
    assert not_started(PLAN, res(a="done", c="failed")) == ["b", "d"]


def test_replanning_round_keeps_finished_tasks_and_the_room_left():
    results = res(a="done", b="failed")
    round_ = replanning(PLAN, results, OPTIONS, rounds=1)
    assert round_.mode == "revise" and [t.id for t in round_.finished] == ["a", "b"]
    assert round_.known["a"] == {**results["a"], "title": "A"}
    assert [t["id"] for t in round_.pending] == ["c", "d"] and round_.options["max_tasks"] == 8
    assert OPTIONS["max_tasks"] == 10                                    # the run's options untouched
    assert replanning(PLAN, results, {**OPTIONS, "strategy": "dynamic"}, rounds=0).mode == "next"
    assert replanning(PLAN, results, OPTIONS, rounds=2) is None          # --max-rounds 3: no fourth round


class PlanLLM:
    """Answers every planning call with the same tasks (ask_for_plan validates them against the spec)."""

    offline = False

    def __init__(self, tasks: list[dict]) -> None:
        self.reply = SimpleNamespace(data=SimpleNamespace(model_dump=lambda: {"tasks": tasks, "notes": ""}))

    async def complete(self, messages, **kw):
        return self.reply


def test_planner_merges_a_replan_after_the_finished_tasks():
    spec = load_spec("blog")
    llm = PlanLLM([{"id": "e", "title": "E", "role": "writer", "depends_on": ["a"]}])
    base = PLAN.model_copy(update={"notes": "keep these"})
    round_ = replanning(base, res(a="done"), OPTIONS, rounds=0)
    ask = planner(llm, spec=spec, goal="g", options=round_.options, inputs=[], mode=round_.mode, base=base,
                  finished=round_.finished, known=round_.known, pending=round_.pending)
    merged, notes = asyncio.run(ask())
    assert [t.id for t in merged.tasks] == ["a", "e"] and merged.notes == "keep these" and notes == []
    first = PlanLLM([{"id": "e", "title": "E", "role": "writer"}])
    fresh, _ = asyncio.run(planner(first, spec=spec, goal="g", options=OPTIONS, inputs=[], mode="full")())
    assert [t.id for t in fresh.tasks] == ["e"] and fresh.goal == "g"
