"""One typed run state: the plan, the task results, the reviews and why the run stopped.

Why one class: the rules about a run's state used to be written where each was needed. "A task
that never started does not overwrite finished work" stood in the nodes, the run store and the
summary; the run's status was decided in the aggregator, the runner and the resume check; the
revisions done were counted up in the reviewer and counted again from the reviews in the store.
Each rule is written here once: `keeps(old, new)` / `record_result` (the done/pending rule, also for
the plain dicts of the shared store and of a journal replay), `RunState.status()` (the only status
logic), `revisions_done` (counted from the reviews, the one record of them).

The shared store and `run.json` keep their plain-dict form (events, prompts and saved runs read
it); `RunState.of(...)` reads either into this model, validating the plan once.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from utils.run.plan import Plan
from utils.run.results import ENDED, TaskResult, TaskState, ids_with, review_shortfall, state_of  # noqa: F401 - re-exported

DONE, PENDING = TaskState.DONE, TaskState.PENDING


def keeps(old: Mapping | None, new: Mapping) -> bool:
    """Whether `old` stays in place of `new`: finished work is never replaced by a task that did
    not start (a revision stopped by the token budget before it ran keeps the approved version)."""
    return bool(old) and old.get("state") == DONE and new.get("state") == PENDING


def record_result(results: dict[str, Any], result: Mapping) -> bool:
    """Put `result` in `results` (task id -> result) unless finished work stays; True when recorded."""
    if keeps(results.get(result["id"]), result):
        return False
    results[result["id"]] = result
    return True


def count_revisions(reviews: list[dict] | None) -> int:
    """Revision passes so far: the reviews that sent work back (re-ran tasks)."""
    return sum(1 for r in reviews or [] if isinstance(r, Mapping) and r.get("rerun"))


def plan_of(shared: dict) -> Plan:
    """The run's plan as a `Plan`. The shared store keeps its saved (dict) form; the typed plan is
    validated once per plan (when `shared["plan"]` is a new object) and kept in `runtime`, never saved."""
    cached = shared["runtime"].get("plan")
    if cached is None or cached[0] is not shared["plan"]:
        cached = shared["runtime"]["plan"] = (shared["plan"], Plan.model_validate(shared["plan"]))
    return cached[1]


def set_plan(shared: dict, plan: Plan) -> None:
    """Make `plan` the run's plan: its saved form in the store, the typed one beside it in `runtime`."""
    shared["plan"] = plan.model_dump()
    shared["runtime"]["plan"] = (shared["plan"], plan)


class RunState(BaseModel):
    """A run's state as typed values: what `run.json`, the shared store and the summary describe."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    plan: Plan | None = None
    results: dict[str, TaskResult] = Field(default_factory=dict)
    reviews: list[dict] = Field(default_factory=list)
    rounds: int = 0
    stopped: str | None = None        # why the run stopped scheduling (token budget, Ctrl-C...)
    status_reason: str | None = None  # e.g. a failed re-plan: the plan was kept
    unreviewed: str | None = None     # why the last review failed (the work is kept)
    saved_status: str | None = None   # the status a saved run ended with

    @classmethod
    def of(cls, data: Mapping) -> "RunState":
        """The state in a shared store or a loaded `run.json` (plan and results validated once)."""
        plan = data.get("plan")
        results = data.get("results") or {}
        return cls(plan=plan if isinstance(plan, Plan) or plan is None else Plan.model_validate(plan),
                   results={k: TaskResult.model_validate(v) for k, v in results.items() if isinstance(v, Mapping)},
                   reviews=list(data.get("reviews") or []), rounds=int(data.get("rounds") or 0),
                   stopped=data.get("stopped"), status_reason=data.get("status_reason"),
                   unreviewed=data.get("unreviewed"), saved_status=data.get("status"))

    # -- the done/pending rule -----------------------------------------------------------------
    def record(self, result: TaskResult | Mapping) -> bool:
        """Record a task's result unless it would replace finished work with unstarted work."""
        typed = result if isinstance(result, TaskResult) else TaskResult.model_validate(result)
        if keeps({"state": state_of(self.results.get(typed.id))}, {"state": typed.state}):
            return False
        self.results[typed.id] = typed
        return True

    # -- derived counters ----------------------------------------------------------------------
    @property
    def revisions_done(self) -> int:
        return count_revisions(self.reviews)

    def task_ids(self) -> list[str]:
        return self.plan.ids() if self.plan else []

    def states(self) -> list[str]:
        """Each planned task's state, in plan order (not started: pending)."""
        return [state_of(self.results.get(tid)) for tid in self.task_ids()]

    def ids_in(self, *states: str) -> list[str]:
        """Planned task ids whose state is one of `states`, in plan order."""
        return [tid for tid in self.task_ids() if state_of(self.results.get(tid)) in states]

    def left(self) -> list[str]:
        """Planned tasks not done yet (failed, skipped or not started), in plan order."""
        return [tid for tid in self.task_ids() if state_of(self.results.get(tid)) != DONE]

    def any_done(self) -> bool:
        return bool(ids_with(self.results, DONE))

    def ended(self) -> set[str]:
        return set(ids_with(self.results, *ENDED))

    # -- the run's status ----------------------------------------------------------------------
    def status(self, min_score: float | None = None) -> tuple[str, str | None]:
        """The run's status and why when it is not ok; the only place a status is decided.

        ok: every task done and (with `min_score`) the last scored review reached it;
        stopped: the budget or Ctrl-C left tasks unrun, or the review or the next planning round
        is owed; partial: some tasks failed, or a failed re-plan kept the old plan; unreviewed: the
        review failed; needs-work: the final review scored below `min_score`; failed: nothing done.
        """
        states = self.states()
        if self.stopped:  # even with every task done: the review or the next planning round is still owed
            status = "stopped"
        elif states and all(s == DONE for s in states):
            status = "ok"
        elif PENDING in states:
            status = "stopped"
        else:
            status = "partial" if DONE in states else "failed"
        reason = self.status_reason
        if status == "ok" and reason:
            status = "partial"  # a failed re-plan: every task of the kept plan ran, the plan is not what was asked
        elif status == "ok" and self.unreviewed:
            status, reason = "unreviewed", self.unreviewed
        elif status == "ok" and min_score is not None:  # the reviewer's verdict counts: 0.7/10 is not ok
            shortfall = review_shortfall(self.reviews, min_score)
            if shortfall:
                status, reason = "needs-work", shortfall
        return status, reason or self.unreviewed or self.stopped

    def is_complete(self, document: Any = None) -> bool:
        """A finished saved run: it ended ok, has a document and every planned task is done."""
        states = self.states()
        return self.saved_status == "ok" and bool(document) and bool(states) and all(s == DONE for s in states)


def ended_status(shared: Mapping) -> str:
    """The status of a graph run that returned without an exception: what the aggregator decided;
    without one, a `--plan-only` run (a plan, no document) is `planned`, anything else `failed`."""
    return shared.get("status") or ("planned" if shared.get("plan") else "failed")
