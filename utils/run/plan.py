"""The plan: the contract between the orchestrator model, the workers and saved runs.

Field names (`id`, `title`, `role`, `instructions`, `depends_on`, `priority`) are part of that
contract: the model is asked for them, `run.json` stores them, `--resume` reads them back.
Validation is a pure function returning *all* problems at once, because the orchestrator sends
that exact list back to the model in its single repair round-trip.
"""
from __future__ import annotations

import re
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from utils.toposort import find_cycle  # noqa: F401 - re-exported: the one cycle finder


class Task(BaseModel):
    # Models often number tasks (`"id": 1`, `"depends_on": [1]`): accept that rather than spend a
    # repair round-trip on it.
    model_config = ConfigDict(coerce_numbers_to_str=True)

    id: str = Field(description="short unique id, e.g. t1")
    title: str
    role: str = Field(description="one of the workflow's worker roles")
    instructions: str = ""
    depends_on: list[str] = Field(default_factory=list, description="ids of tasks whose output this task needs")
    priority: int = Field(default=3, description="1 = highest .. 5 = lowest")
    inputs: list[str] = Field(default_factory=list, description="source files a tool task works on")

    @field_validator("priority")
    @classmethod
    def _clamp_priority(cls, value: int) -> int:
        # Models often answer 0 or 10; clamping keeps the plan usable without a repair trip.
        return min(5, max(1, int(value)))

    @field_validator("id", "title", "role")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class Plan(BaseModel):
    goal: str
    notes: str = Field(default="", description="audience, tone and style notes every worker shares")
    tasks: list[Task] = Field(default_factory=list)
    done: bool = Field(default=False, description="dynamic strategy: true when the goal is met")

    _positions: dict[str, int] = PrivateAttr(default_factory=dict)
    _indexed: int = PrivateAttr(default=-1)

    def position(self, task_id: str) -> int | None:
        """Index of a task in plan order, via an id map built once per plan object: workers look
        tasks up once each, and a scan per lookup would make a long run quadratic."""
        at = self._positions.get(task_id)
        hit = at is not None and at < len(self.tasks) and self.tasks[at].id == task_id
        if not hit and (at is not None or self._indexed != len(self.tasks)):  # tasks changed: re-index
            self._positions = {}
            for i, t in enumerate(self.tasks):
                self._positions.setdefault(t.id, i)
            self._indexed = len(self.tasks)
            at = self._positions.get(task_id)
        return at

    def task(self, task_id: str) -> Task:
        at = self.position(task_id)
        if at is None or self.tasks[at].id != task_id:
            raise KeyError(task_id)
        return self.tasks[at]

    def ids(self) -> list[str]:
        return [t.id for t in self.tasks]


def plan_problems(plan: Plan, roles: Iterable[str], max_tasks: int | None = None,
                  *, allow_empty: bool = False, known_ids: Iterable[str] = ()) -> list[str]:
    """Everything wrong with a plan, as sentences a model (or a user) can act on.

    `known_ids` are tasks finished in earlier rounds (dynamic/hybrid): new tasks may depend on them.
    """
    problems: list[str] = []
    roles = list(roles)
    if not plan.tasks and not allow_empty:
        problems.append("the plan has no tasks")
    if max_tasks is not None and len(plan.tasks) > max_tasks:
        problems.append(f"the plan has {len(plan.tasks)} tasks; at most {max_tasks} are allowed")
    seen: set[str] = set()
    for t in plan.tasks:
        if not t.id:
            problems.append(f"task '{t.title}' has an empty id")
        elif not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", t.id):
            problems.append(f"task id '{t.id}' must be 1-40 letters, digits, '_', '-' or '.'")
        if t.id in seen:
            problems.append(f"task id '{t.id}' is used more than once")
        seen.add(t.id)
        if t.role not in roles:
            problems.append(f"task '{t.id}' has unknown role '{t.role}' (known roles: {', '.join(roles)})")
        if not t.title:
            problems.append(f"task '{t.id}' has an empty title")
    available = seen | set(known_ids)
    for t in plan.tasks:
        for dep in t.depends_on:
            if dep == t.id:
                problems.append(f"task '{t.id}' depends on itself")
            elif dep not in available:
                problems.append(f"task '{t.id}' depends on unknown task '{dep}'")
    cycle = find_cycle({t.id: [d for d in t.depends_on if d != t.id] for t in plan.tasks})
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
    return problems


def dependents_closure(plan: Plan, ids: Iterable[str]) -> list[str]:
    """The given tasks plus every task that (transitively) depends on them, in plan order.

    Used by revision: a revised section invalidates whatever was built on it.
    """
    marked = set(ids)
    changed = True
    while changed:
        changed = False
        for t in plan.tasks:
            if t.id not in marked and marked.intersection(t.depends_on):
                marked.add(t.id)
                changed = True
    return [t.id for t in plan.tasks if t.id in marked]


def outline(plan: Plan, current: str | None = None, *, limit: int = 40) -> str:
    """The plan as a numbered list; the current task is marked so sections know each other.

    Past `limit` tasks only a window around the current task is listed, so a worker's prompt stays
    bounded however large the plan grows (the whole outline would make total prompt size quadratic).
    """
    tasks = plan.tasks
    lo, hi = 0, len(tasks)
    if len(tasks) > limit:
        at = (plan.position(current) if current is not None else None) or 0
        lo = max(0, min(at - limit // 2, len(tasks) - limit))
        hi = lo + limit
    lines = [f"(... {lo} earlier tasks not listed)"] if lo else []
    for i, t in enumerate(tasks[lo:hi], lo + 1):
        mark = "  <- your task" if t.id == current else ""
        lines.append(f"{i}. [{t.id}] {t.title} ({t.role}){mark}")
    if hi < len(tasks):
        lines.append(f"(... {len(tasks) - hi} later tasks not listed)")
    return "\n".join(lines)
