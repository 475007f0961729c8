"""`plan.yaml`: a plan as a file the user can read, edit and run (`--plan-only`, then `--run-plan`).

Why a file of its own: run.json is the run's state (results, totals, a journal after it) and not
meant for hands; a plan is worth editing before money is spent on it. The file names its workflow
and goal, so it runs from anywhere; next to a run.json it also takes that run's inputs and options.
Whatever it holds is checked like a model's plan (`plan_problems`): an edit that breaks it is one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.errors import UsageError

PLAN_FILE = "plan.yaml"
HEADER = "# Edit this plan (titles, instructions, dependencies, tasks), then run it:\n#   python main.py --run-plan {path}\n"
TASK_KEYS = ("id", "title", "role", "instructions", "depends_on", "priority", "inputs")


def plan_yaml(plan: dict, workflow: str, workflow_file: str | None, path: Path) -> str:
    """The file's text: workflow, goal, notes and tasks (empty fields left out), readable order."""
    tasks = [{k: t[k] for k in TASK_KEYS if t.get(k) not in (None, "", [])} for t in plan.get("tasks") or []]
    doc: dict[str, Any] = {"workflow": workflow}
    if workflow_file:
        doc["workflow_file"] = workflow_file
    doc.update(goal=plan.get("goal") or "", notes=plan.get("notes") or "", tasks=tasks)
    return HEADER.format(path=path) + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def find_plan_file(ref: str) -> Path:
    """A run folder (its plan.yaml) or a plan file; a one-line UsageError otherwise."""
    path = Path(ref)
    if path.is_dir():
        path = path / PLAN_FILE
    if not path.is_file():
        raise UsageError(f"--run-plan: no plan file at {path} (give a --plan-only run folder or its plan.yaml)")
    return path


def read_plan_file(path: Path) -> tuple[str, dict]:
    """(workflow name or spec path, plan dict) from a plan file; the plan is checked by the caller
    against the workflow's roles (`check_plan`)."""
    from utils.run.spec import read_yaml

    raw = read_yaml(path, "plan file")
    workflow = raw.get("workflow_file") or raw.get("workflow")
    if not isinstance(workflow, str) or not workflow.strip():
        raise UsageError(f"--run-plan: {path} names no workflow (add `workflow: blog`, for example)")
    if not isinstance(raw.get("goal"), str) or not raw["goal"].strip():
        raise UsageError(f"--run-plan: {path} has no goal")
    return workflow.strip(), {"goal": raw["goal"], "notes": raw.get("notes") or "", "tasks": raw.get("tasks") or []}


def check_plan(plan: dict, spec, max_tasks: int | None, where: str, *, allow_empty: bool = False) -> dict:
    """A plan a person could have edited (plan.yaml, a saved run.json) validated like a model's:
    schema, unknown roles and ids, self-dependencies, cycles. `where` starts the one-line error,
    so a broken edit is a clear message, not a run that waits forever. Returns the plan dict."""
    from pydantic import ValidationError

    from utils.run.plan import Plan, plan_problems

    try:
        parsed = Plan.model_validate(plan)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise UsageError(f"{where} is malformed: {loc}: {err['msg']}") from None
    problems = plan_problems(parsed, spec.roles, max_tasks, allow_empty=allow_empty)
    if problems:
        raise UsageError(f"{where} is invalid: " + "; ".join(problems[:3]))
    return parsed.model_dump()
