"""What the next worker pass runs and what a re-planning round is told, from the plan and the
results so far.

Pure functions the orchestrator, re-plan and worker-pass nodes call (nodes.py keeps only reading and
writing the shared store): which tasks count as done or ended is asked of `utils/run/results.py`, so
"what is left" follows the one done/pending rule wherever a pass is planned.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from utils.run.plan import Plan, Task
from utils.run.results import ENDED, TaskState, ids_with

DONE = TaskState.DONE


def frontier(plan: Plan, results: Mapping[str, Any]) -> list[str]:
    """Pending tasks whose dependencies have all ended (hybrid runs one frontier per batch)."""
    ended = set(ids_with(results, *ENDED))
    return [t.id for t in plan.tasks if t.id not in ended and set(t.depends_on) <= ended]


def queue_for(plan: Plan, results: Mapping[str, Any], strategy: str) -> list[str]:
    """The tasks of the pass after a (re-)plan: hybrid runs one frontier, the others every task
    not done yet (a resumed run's finished work is not run again)."""
    if strategy == "hybrid":
        return frontier(plan, results)
    done = set(ids_with(results, DONE))
    return [t.id for t in plan.tasks if t.id not in done]


def satisfied(results: Mapping[str, Any], queue: list[str]) -> set[str]:
    """Done tasks the pass does not run again: dependencies its tasks can count on at once."""
    return set(ids_with(results, DONE)) - set(queue)


def still_queued(queue: list[str], ran: Mapping[str, Any]) -> list[str]:
    """The queue without the tasks that ended while the plan streamed in (`ran`: their results)."""
    ended = set(ids_with(ran, *ENDED))
    return [tid for tid in queue if tid not in ended]


def not_started(plan: Plan, results: Mapping[str, Any]) -> list[str]:
    """Planned tasks with no result at all, in plan order."""
    return [t.id for t in plan.tasks if t.id not in results]


@dataclass(frozen=True)
class Replanning:
    """What one re-planning round is told: the tasks with a result (kept as they are, first in the
    merged plan: `utils.run.planning.planner`), what each of them produced, the tasks not started,
    and the room left under --max-tasks."""

    mode: str                   # dynamic: plan the "next" step; hybrid: "revise" the pending tasks
    finished: list[Task]
    known: dict[str, dict]      # task id -> its result and title
    pending: list[dict]         # the tasks not started, as the prompt shows them
    options: dict               # the run's options with max_tasks lowered to the room left


def replanning(plan: Plan, results: Mapping[str, Any], options: dict, rounds: int) -> Replanning | None:
    """The next re-planning round after `rounds` of them, or None when --max-rounds allows no more."""
    if rounds + 1 >= options["max_rounds"]:
        return None
    finished = [t for t in plan.tasks if t.id in results]
    return Replanning(mode="next" if options["strategy"] == "dynamic" else "revise", finished=finished,
                      known={t.id: {**results[t.id], "title": t.title} for t in finished},
                      pending=[t.model_dump() for t in plan.tasks if t.id not in results],
                      options=dict(options, max_tasks=max(options["max_tasks"] - len(finished), 0)))
