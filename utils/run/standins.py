"""Deterministic stand-ins that the offline provider returns instead of a model's answer.

They come from the workflow spec (its `offline_plan`, its roles' `offline_data`), so an offline run
exercises the real graph, scheduler, tools and assembly. Text that would be a model's prose is never
invented here: worker text calls get the offline provider's labelled placeholder instead.
"""
from __future__ import annotations

from pathlib import Path

from utils.run.keywords import fill_topic
from utils.run.outputs import Cohesion, ReviewResult, TaskVerdict
from utils.run.plan import Plan, Task


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
