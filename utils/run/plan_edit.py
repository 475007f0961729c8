"""Plan edits a user makes at the interactive prompt (`/drop`, `/add`, `/rename`, ...).

Every function returns a NEW `Plan` and never touches its argument: the session keeps the old plan
until the edited one has passed `plan_problems`, so a refused edit leaves nothing half-changed.
Edits go through a dict and `Plan.model_validate`, so the model's own validators (stripping,
priority range) apply to user edits exactly as they do to a model's plan.

Only what an edit cannot express is rejected here (an unknown task id, an id already taken, an empty
title, a priority outside 1..5), with a `ValueError` whose message is one line. Everything a plan can
be wrong about as a whole (unknown roles, unknown dependencies, cycles, too many tasks) is left to
`utils.run.plan.plan_problems`, which the caller runs after every edit, just as for a model's plan.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from pydantic import ValidationError

from utils.run.plan import Plan

__all__ = ["drop", "add", "rename", "set_instructions", "set_deps", "set_priority", "parse_ids",
           "EDIT_COMMANDS", "from_command"]


def parse_ids(text: str) -> list[str]:
    """`"t3, t5"`, `"t3,t5"` or `"t3 t5"` -> `["t3", "t5"]` (order kept, duplicates dropped)."""
    out: list[str] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if part and part not in out:
            out.append(part)
    return out


def _rebuild(data: dict[str, Any]) -> Plan:
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:  # a ValueError subclass, but many lines: keep one
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"invalid edit: {where}: {err['msg']}") from None


def _index(data: dict[str, Any], task_id: str) -> int:
    for i, t in enumerate(data["tasks"]):
        if t["id"] == task_id:
            return i
    known = ", ".join(t["id"] for t in data["tasks"]) or "none"
    raise ValueError(f"no task '{task_id}' in the plan (tasks: {known})")


def _edit_task(plan: Plan, task_id: str, change: Callable[[dict[str, Any]], None]) -> Plan:
    data = plan.model_dump()
    change(data["tasks"][_index(data, task_id)])
    return _rebuild(data)


def drop(plan: Plan, task_id: str) -> Plan:
    """Remove a task and every reference to it in other tasks' `depends_on`.

    The dependents keep their other dependencies: they simply no longer wait for the dropped task.
    """
    data = plan.model_dump()
    del data["tasks"][_index(data, task_id)]
    for t in data["tasks"]:
        t["depends_on"] = [d for d in t["depends_on"] if d != task_id]
    return _rebuild(data)


def add(plan: Plan, id: str, role: str, title: str, depends_on: list[str] | None = None,
        priority: int = 3, instructions: str = "") -> Plan:
    """Add a task. It goes right after the last of its dependencies in plan order (the document
    is assembled in plan order, so a section added "after t3" reads after t3), or at the end.

    Unknown roles or dependencies are not checked here: `plan_problems` names them.
    """
    task_id, title = id.strip(), title.strip()
    if not task_id:
        raise ValueError("the new task needs an id")
    if not title:
        raise ValueError(f"task '{task_id}' needs a title")
    _check_priority(priority)
    data = plan.model_dump()
    if any(t["id"] == task_id for t in data["tasks"]):
        raise ValueError(f"task id '{task_id}' is already used in the plan")
    deps = list(dict.fromkeys(depends_on or []))
    new = {"id": task_id, "title": title, "role": role.strip(), "instructions": instructions,
           "depends_on": deps, "priority": priority, "inputs": []}
    positions = [i for i, t in enumerate(data["tasks"]) if t["id"] in deps]
    at = max(positions) + 1 if positions else len(data["tasks"])
    data["tasks"].insert(at, new)
    return _rebuild(data)


def rename(plan: Plan, id: str, title: str) -> Plan:
    """Give a task a new title (the section heading and what its worker is asked for)."""
    if not title.strip():
        raise ValueError(f"task '{id}' needs a non-empty title")
    return _edit_task(plan, id, lambda t: t.update(title=title.strip()))


def set_instructions(plan: Plan, id: str, text: str) -> Plan:
    """Replace a task's instructions (empty: the worker works from the title alone)."""
    return _edit_task(plan, id, lambda t: t.update(instructions=text.strip()))


def set_deps(plan: Plan, id: str, deps: list[str]) -> Plan:
    """Replace a task's dependencies; an empty list clears them. Unknown ids and cycles are
    reported by `plan_problems`, so the user sees the same sentences a model would."""
    return _edit_task(plan, id, lambda t: t.update(depends_on=list(dict.fromkeys(d.strip() for d in deps if d.strip()))))


def set_priority(plan: Plan, id: str, p: int) -> Plan:
    """Set a task's priority, 1 (highest) .. 5. Out-of-range values are refused rather than
    clamped (the model's answers are clamped, but a user typing 9 meant something)."""
    _check_priority(p)
    return _edit_task(plan, id, lambda t: t.update(priority=int(p)))


def _check_priority(p: Any) -> None:
    if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 5:
        raise ValueError(f"priority must be a whole number from 1 (highest) to 5, got {p!r}")


# The prompt's edit commands: name -> usage. `from_command` turns their words into one edit.
EDIT_COMMANDS: dict[str, str] = {
    "drop": "/drop ID", "add": "/add ID ROLE TITLE... [--after ID,ID]", "rename": "/rename ID TITLE...",
    "instr": "/instr ID TEXT...", "deps": "/deps ID ID,ID (no ids: clear)", "priority": "/priority ID N (1 highest .. 5)",
}


def from_command(plan: Plan, name: str, rest: str) -> Plan:
    """Apply the edit command `/<name> <rest>` to `plan`; a ValueError carries the usage line.

    Kept next to the edits (not in the prompt loop) so the words-to-edit mapping is tested as a
    pure function too.
    """
    usage = ValueError(f"usage: {EDIT_COMMANDS[name]}")
    words = rest.split()
    head, _, tail = rest.strip().partition(" ")
    if name == "drop":
        if len(words) != 1:
            raise usage
        return drop(plan, words[0])
    if name == "add":
        deps: list[str] = []
        for i, w in enumerate(words):
            if w == "--after" or w.startswith("--after="):
                deps = parse_ids(w.partition("=")[2] if "=" in w else " ".join(words[i + 1:]))
                words = words[:i]
                break
        if len(words) < 3:
            raise usage
        return add(plan, words[0], words[1], " ".join(words[2:]), deps)
    if name in ("rename", "instr"):
        if not head or not tail.strip():
            raise usage
        return (rename if name == "rename" else set_instructions)(plan, head, tail)
    if name == "deps":
        if not head:
            raise usage
        return set_deps(plan, head, [] if tail.strip().lower() in ("", "-", "none") else parse_ids(tail))
    if name == "priority":
        if len(words) != 2 or not words[1].isdigit():
            raise usage
        return set_priority(plan, words[0], int(words[1]))
    raise ValueError(f"unknown edit command /{name}")
