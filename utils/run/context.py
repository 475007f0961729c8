"""Prompt assembly: what each model call sees, and how it stays inside the context budget.

A worker sees its role's system prompt, the goal and shared notes, the plan outline (its own task
marked), the full outputs of its *direct* dependencies, and the reviewer's feedback when revising.
Nothing else: unrelated tasks' outputs never reach it, which keeps prompts linear in plan size.
"""
from __future__ import annotations

import json
from typing import Any

from utils.model.tokens import estimate_tokens  # noqa: F401 - the one estimator; re-exported
from utils.run.plan import Plan, Task, outline
from utils.run.results import TaskState, ids_with

SHORTENED = "\n\n[... shortened to fit the context budget ...]"


def fit_outputs(outputs: dict[str, str], budget_tokens: int) -> tuple[dict[str, str], bool]:
    """Shorten dependency outputs so their total fits `budget_tokens`.

    Water-filling: small outputs stay whole, the large ones share what is left equally, so one
    huge dependency cannot crowd out the others.
    """
    sizes = {k: estimate_tokens(v) for k, v in outputs.items()}
    if sum(sizes.values()) <= budget_tokens:
        return dict(outputs), False
    remaining, pending = max(budget_tokens, 0), sorted(sizes, key=sizes.get)
    caps: dict[str, int] = {}
    while pending:
        share = remaining // len(pending)
        key = pending[0]
        if sizes[key] <= share:
            caps[key] = sizes[key]
            remaining -= sizes[key]
            pending.pop(0)
        else:
            for k in pending:
                caps[k] = share
            break
    fitted = {}
    for k, text in outputs.items():
        if caps[k] >= sizes[k]:
            fitted[k] = text
        else:
            cut = text[: max(caps[k] * 4 - len(SHORTENED), 0)]
            opened = cut.rfind("<<<BEGIN QUOTED PAGE")  # issue 12: never cut a quoted web page open
            if opened > cut.rfind("<<<END QUOTED PAGE"):
                cut = cut[:opened]
            fitted[k] = cut + SHORTENED
    return fitted, True


def worker_messages(*, system: str, plan: Plan, task: Task, dep_outputs: dict[str, str],
                    budget_tokens: int, feedback: str = "", previous: str = "") -> tuple[list[dict], bool]:
    """Messages for one worker call, and whether dependency outputs had to be shortened.

    Laid out for prompt caching: everything every worker of the run sees alike comes first (the
    role's system prompt, the goal, the notes, the whole outline unmarked), and only then the
    task's own part (its dependencies' outputs, its place in the outline, its instructions,
    feedback). Providers that discount a repeated prompt prefix (OpenAI prompt caching, vLLM
    prefix caching) then bill the shared part once per role instead of once per task. Dependency
    outputs come next, in plan order, before the task's own part: sections that all build on one
    analysis share its text as well.
    """
    shared = [f"# Goal\n{plan.goal}"]
    if plan.notes:
        shared.append(f"# Notes for every worker\n{plan.notes}")
    shared.append(f"# Plan outline (the whole team's tasks)\n{outline(plan)}")
    own = [f"# Where you are in the outline\n{_outline_line(plan, task)}  <- your task",
           f"# Your task [{task.id}]: {task.title}\n{task.instructions or task.title}"]
    tail = []
    if feedback:
        tail.append(f"# Reviewer feedback on your previous version\n{feedback}")
        if previous:
            tail.append(f"# Your previous version\n{previous}")
    tail.append("# Now\nWrite your part, in Markdown.")
    fixed = estimate_tokens(system + "\n".join(shared + own + tail)) + 50
    known = {d: plan.tasks[i].title for d in dep_outputs if (i := plan.position(d)) is not None}
    titles = {d: known.get(d, d) for d in dep_outputs}
    fitted, shortened = fit_outputs(dep_outputs, budget_tokens - fixed)
    end = len(plan.tasks)
    in_plan_order = sorted(fitted, key=lambda d: p if (p := plan.position(d)) is not None else end)
    deps = [f"## [{d}] {titles[d]}\n{fitted[d]}" for d in in_plan_order]
    body = list(shared)
    if deps:  # before the task's own part: workers that share a dependency share its text too
        note = ("\n(Note: these outputs were shortened to fit the context budget.)" if shortened else "")
        body.append("# Outputs of the tasks you depend on" + note + "\n\n" + "\n\n".join(deps))
    body += own + tail
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(body)}], shortened


def _outline_line(plan: Plan, task: Task) -> str:
    """The task's own line as the outline numbers it (it may lie past a long outline's window)."""
    number = next((i for i, t in enumerate(plan.tasks, 1) if t.id == task.id), 0)
    return f"{number}. [{task.id}] {task.title} ({task.role})"


def shared_prefix_chars(prompts: list[str]) -> int:
    """Characters of `prompts` a prefix cache could reuse: each prompt's longest common prefix with
    any earlier one (the first prompt of each prefix pays in full)."""
    total = 0
    for i, text in enumerate(prompts):
        best = 0
        for other in prompts[:i]:
            n = min(len(text), len(other))
            if n <= best:
                continue
            lo, hi = best, n  # binary search on prefix equality: O(n log n) per pair, no Python loop per char
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if text[:mid] == other[:mid]:
                    lo = mid
                else:
                    hi = mid - 1
            best = lo
        total += best
    return total


def _roles_text(roles: dict[str, Any]) -> str:
    lines = []
    for name, role in roles.items():
        kind = " (deterministic tool, no model: computes real figures)" if role.kind == "tool" else ""
        lines.append(f"- `{name}`{kind}: {role.description}")
    return "\n".join(lines)


def planner_messages(*, spec, goal: str, max_tasks: int, inputs: list[str], feedback: str = "",
                     results: dict[str, dict] | None = None, pending: list[dict] | None = None,
                     mode: str = "full") -> list[dict]:
    """Messages asking the orchestrator for a plan.

    mode "full": a whole plan. "next": only the next step(s) given results so far (dynamic).
    "revise": add, drop or rewrite pending tasks given results so far (hybrid).
    """
    parts = [f"# Goal\n{goal}", f"# Worker roles\n{_roles_text(spec.roles)}",
             f"# Planning guidance\n{spec.planner.guidance}".rstrip()]
    if inputs:
        parts.append("# Input files available to tool tasks (name them in a task's `inputs`)\n"
                     + "\n".join(f"- {name}" for name in inputs))
    if spec.offline_plan.get("tasks"):
        parts.append("# Example of a good plan for this kind of work\n```json\n"
                     + json.dumps(spec.offline_plan["tasks"][:8], indent=1) + "\n```")
    if results:
        done = "\n".join(f"- [{tid}] ({r.get('state')}) {r.get('title', '')}: {(r.get('output') or '')[:300]}"
                         for tid, r in results.items())
        parts.append(f"# Results so far\n{done}")
    if mode == "next":
        parts.append("Plan only the next step(s): new tasks with new ids that may depend on finished "
                     "tasks. If the goal is fully met, return no tasks and `done: true`.")
    elif mode == "revise":
        parts.append("# Pending tasks\n```json\n" + json.dumps(pending or [], indent=1) + "\n```\n"
                     "Return the pending part of the plan again: keep, rewrite, drop or add tasks. "
                     "Tasks may depend on finished tasks. Return `done: true` with no tasks if nothing is left to do.")
    parts.append(f"Constraints: at most {max_tasks} tasks; unique ids; roles from the list above; "
                 "`depends_on` only names existing task ids; no cycles; priority 1 (highest) to 5. "
                 "Answer with JSON matching the schema: {goal, notes, tasks:[{id,title,role,instructions,"
                 "depends_on,priority,inputs}], done}.")
    if feedback:
        parts.append(f"# Problems with your previous answer (fix all of them)\n{feedback}")
    return [{"role": "system", "content": spec.planner.system}, {"role": "user", "content": "\n\n".join(parts)}]


def review_messages(*, spec, plan: Plan, results: dict[str, dict], round_no: int,
                    budget_tokens: int) -> list[dict]:
    outputs = {tid: results[tid]["output"] for tid in ids_with(results, TaskState.DONE)}
    fitted, _ = fit_outputs(outputs, budget_tokens)
    sections = "\n\n".join(f"## [{tid}] {plan.task(tid).title} ({plan.task(tid).role})\n{text}"
                           for tid, text in fitted.items())
    criteria = "\n".join(f"- {c}" for c in spec.review.criteria)
    user = (f"# Goal\n{plan.goal}\n\n# Review criteria\n{criteria}\n\n# Review round {round_no}\n\n"
            f"{sections}\n\nAnswer with JSON: {{score (0-10), summary, tasks: [{{id, verdict: "
            f"approve|revise, feedback}}]}}. Only send back tasks that clearly need work.")
    return [{"role": "system", "content": spec.review.system}, {"role": "user", "content": user}]


def cohesion_messages(*, spec, plan: Plan, sections: list[tuple[str, str, str]],
                      budget_tokens: int) -> list[dict]:
    """`sections`: (task id, title, text) in document order."""
    fitted, _ = fit_outputs({tid: text for tid, _, text in sections}, budget_tokens)
    body = "\n\n".join(f"## [{tid}] {title}\n{fitted[tid]}" for tid, title, _ in sections)
    user = (f"# Goal\n{plan.goal}\n\n# Notes\n{plan.notes}\n\n# Assembled sections\n{body}\n\n"
            "Answer with JSON: {title, meta_description, introduction, transitions: {task id: sentence}}.")
    return [{"role": "system", "content": spec.assembly.system or "You are the editor."},
            {"role": "user", "content": user}]
