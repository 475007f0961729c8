"""Deterministic stand-ins that the offline provider returns instead of a model's answer.

They come from the workflow spec (its `offline_plan`, its roles' `offline_data`), so an offline run
exercises the real graph, scheduler, tools and assembly. Text that would be a model's prose is never
invented here: worker text calls get the offline provider's labelled placeholder instead.

`RunStandIns` is what the offline model (`utils.model.offline.OfflineModel`) is given: it answers a
structured call by its schema and purpose from the run's shared store, so nodes call the offline
model exactly as they call a real one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from utils.run.keywords import fill_topic
from utils.run.outputs import Cohesion, ReviewResult, TaskVerdict
from utils.run.plan import Plan, Task
from utils.run.results import TaskState, ids_with


class RunStandIns:
    """`standins(purpose, schema)` for one run: reads the spec, goal, plan and results from the
    run's shared store at the moment of the call (the store is the one source of run state)."""

    def __init__(self, shared: dict) -> None:
        self.shared = shared

    def __call__(self, purpose: str, schema: Any) -> Any:
        """Dispatch on the call's purpose, not its schema: schemas are built per run (enums of this
        run's roles, tasks and sections), so the purpose strings of `utils.run.planning.PLANNING`,
        the reviewer, the cohesion pass and the workers ("task t1 (role)") are the stable key."""
        sh = self.shared
        results = sh.get("results") or {}
        if purpose in ("planning", "planning the next step", "re-planning"):
            return self._plan(purpose, results)
        if purpose.startswith("review round"):
            return offline_review(ids_with(results, TaskState.DONE))
        if purpose == "cohesion pass":
            return offline_cohesion((sh.get("plan") or {}).get("goal") or sh["goal"])
        role = re.search(r"\(([^()]+)\)\s*$", purpose)  # worker purposes read "task t1 (role)"
        spec_role = sh["spec"].roles.get(role.group(1)) if role else None
        return getattr(spec_role, "offline_data", None) or None

    def _plan(self, purpose: str, results: dict) -> Plan:
        sh = self.shared
        if purpose.startswith("re-plan"):  # hybrid: the pending part of the plan, unchanged
            plan = Plan.model_validate(sh["plan"])
            pending = [t for t in plan.tasks if t.id not in results]
            return Plan(goal=sh["goal"], notes=plan.notes, tasks=pending, done=not pending)
        example = offline_plan(sh["spec"], sh["goal"], list((sh.get("inputs") or {}).get("inputs", [])),
                               sh["options"]["max_tasks"])
        return offline_next_step(example, set(results)) if "next step" in purpose else example


def offline_plan(spec, goal: str, inputs: list[str], max_tasks: int) -> Plan:
    """The spec's example plan; tasks marked `per_input` are repeated once per input file."""
    tasks: list[Task] = []
    for raw in spec.offline_plan.get("tasks", []):
        raw = {k: fill_topic(v, goal) if isinstance(v, str) else v for k, v in raw.items()}  # issue 11: {topic}
        if raw.pop("per_input", False):
            ids = []
            for i, name in enumerate(inputs, 1):
                tid = f"{raw['id']}_{i}"
                ids.append(tid)
                tasks.append(Task(**{**raw, "id": tid, "title": f"{raw['title']}: {Path(name).name}",
                                     "inputs": [name]}))
            _expand_deps(tasks, raw["id"], ids)
        else:
            tasks.append(Task(**raw))
    # Later tasks may name the per-input group by its template id: expand it to every copy.
    groups = {t["id"]: [x.id for x in tasks if x.id.startswith(t["id"] + "_")]
              for t in spec.offline_plan.get("tasks", []) if t.get("per_input")}
    for t in tasks:
        t.depends_on = [d for dep in t.depends_on for d in groups.get(dep, [dep])]
    return Plan(goal=goal, notes=fill_topic(spec.offline_plan.get("notes", ""), goal), tasks=tasks[:max_tasks])


def _expand_deps(tasks: list[Task], template_id: str, ids: list[str]) -> None:
    for t in tasks:
        if template_id in t.depends_on:
            t.depends_on = [d for dep in t.depends_on for d in (ids if dep == template_id else [dep])]


def offline_next_step(plan: Plan, finished: set[str]) -> Plan:
    """Dynamic strategy offline: release the example plan one dependency level at a time."""
    remaining = [t for t in plan.tasks if t.id not in finished]
    ready = [t for t in remaining if set(t.depends_on) <= finished]
    return Plan(goal=plan.goal, notes=plan.notes, tasks=ready, done=not remaining)


def offline_review(task_ids: list[str]) -> ReviewResult:
    """Offline there is no judge: approve everything and say so, rather than invent a score."""
    return ReviewResult(score=None, summary="Offline provider: no review was made; all tasks approved.",
                        tasks=[TaskVerdict(id=t, verdict="approve") for t in task_ids])


def offline_cohesion(goal: str) -> Cohesion:
    title = goal.strip().rstrip(".")
    title = title[:1].upper() + title[1:]
    return Cohesion(title=title, meta_description=f"Offline draft: {title}"[:155],
                    introduction="", transitions={})
