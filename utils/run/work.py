"""One task's work as pure steps: what a worker call sends and keeps, what a tool task is given
and returns, and the progress event a task's state change becomes.

The worker-pass node (nodes.py) only schedules and awaits: it asks these functions what to send and
what to record, so the node stays thin and each step is tested without a model.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping

from utils.run.context import worker_messages
from utils.run.outputs import output_model
from utils.run.plan import Plan, Task
from utils.run.results import SAVED_STATES
from utils.tools import RUN_FILES, ToolInput, ToolResult, run_tool

EVENT_KEYS = ("id", "title", "role", "worker", "elapsed_s", "error", "revision")


def task_event(result: Mapping[str, Any], state: str) -> dict:
    """The `task` event for a result in `state`: what the displays show; a saved state carries the
    whole result, which the run store records."""
    data = {k: result[k] for k in EVENT_KEYS}
    data.update(state=state, tokens=result["prompt_tokens"] + result["completion_tokens"])
    if state in SAVED_STATES:
        data["result"] = result
    return data


def worker_call(*, task: Task, role: Any, roles: dict, plan: Plan, options: dict, deps: Mapping[str, dict],
                feedback: str, previous: str) -> tuple[list[dict], dict, bool]:
    """The model call of a task of an `llm` role: (messages, the other arguments of `llm.complete`,
    whether the dependencies' outputs had to be shortened to fit --context-budget). A revision sees
    its feedback and its previous version; a work breakdown's schema is staffed by the run's team."""
    messages, shortened = worker_messages(
        system=role.system, plan=plan, task=task, budget_tokens=options["context_budget"],
        dep_outputs={d: r.get("output", "") for d, r in deps.items()}, feedback=feedback,
        previous=previous if feedback else "")
    team = (options.get("tool_params") or {}).get("team")  # --team or proposed: what staffs it
    return messages, {"schema": output_model(role.output, roles, team),
                      "model": role.model or options.get("role_models", {}).get(task.role) or options.get("model"),
                      "purpose": f"task {task.id} ({task.role})"}, shortened


def reply_result(reply: Any, structured: bool, shortened: bool) -> dict:
    """What a worker's reply adds to its task's result: usage, model and the text (a structured
    reply: its data and the markdown it renders)."""
    out = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
           "model": reply.model, "context_shortened": shortened}
    if structured:
        out.update(data=reply.data.model_dump(), output=reply.data.markdown())
    else:
        out.update(output=reply.text)
    return out


def tool_input(*, task: Task, role: Any, inputs: Mapping[str, Any], options: dict, goal: str,
               deps: Mapping[str, dict]) -> ToolInput:
    """A tool task's input: the run's files, its dependencies' data and output, the role's
    parameters with the run's own on top (--team etc.)."""
    data_path = inputs.get("data")
    return ToolInput(task=task.model_dump(), data_path=Path(data_path) if data_path else None,
                     input_paths=[Path(p) for p in inputs.get("inputs", [])],
                     deps={d: {"data": r.get("data"), "output": r.get("output", "")} for d, r in deps.items()},
                     params={**role.params, **options.get("tool_params", {})},
                     goal=goal, target=inputs.get("target"), web=inputs.get("web"))


def tool_result(task_id: str, tool: str, res: ToolResult) -> dict:
    """A tool's result as its task's: one folder per run, so artifact names are prefixed by the task
    id (and the links to them in its markdown), except a run's own result file (analysis.json)."""
    markdown, artifacts = res.markdown, {}
    for name, blob in res.artifacts.items():
        if name in RUN_FILES:
            artifacts[name] = blob
            continue
        unique = f"{task_id}-{name}"
        markdown = markdown.replace(f"]({name})", f"]({unique})")
        artifacts[unique] = blob
    return {"output": markdown, "data": res.data, "artifacts": artifacts, "model": f"tool:{tool}"}


async def do_task(*, task: Task, spec: Any, plan: Plan, options: dict, llm: Any, inputs: Mapping[str, Any],
                  deps: Mapping[str, dict], feedback: str, previous: str) -> dict:
    """One task's work, what its result gains: a tool role runs its tool (in a thread: tools are
    synchronous), an llm role makes its one model call."""
    role = spec.roles[task.role]
    if role.kind == "tool":
        tool_in = tool_input(task=task, role=role, inputs=inputs, options=options, goal=plan.goal, deps=deps)
        return tool_result(task.id, role.tool, await asyncio.to_thread(run_tool, role.tool, tool_in))
    messages, call, shortened = worker_call(task=task, role=role, roles=spec.roles, plan=plan, options=options,
                                            deps=deps, feedback=feedback, previous=previous)
    reply = await llm.complete(messages, **call)
    return reply_result(reply, call["schema"] is not None, shortened)
