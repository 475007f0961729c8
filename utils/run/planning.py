"""One planning step as the orchestrator and re-planner take it: ask, validate, repair once, salvage.

Kept apart from the nodes so they stay thin: a node's `exec` calls `ask_for_plan` and gets a plan
(plus the sentences to show about what was salvaged) or a `PlanError`.
"""
from __future__ import annotations

from typing import Awaitable, Callable, Iterable

from utils.errors import PlanError
from utils.run.context import planner_messages
from utils.run.plan import Plan, Task, plan_from_reply, plan_problems, plan_reply_model, salvage_plan, wire_needs

PLANNING = {"full": "planning", "next": "planning the next step", "revise": "re-planning"}  # error prefixes


def _problems(plan: Plan, spec, options: dict, allow_empty: bool, known: dict) -> list[str]:
    problems = plan_problems(plan, spec.roles, options["max_tasks"], allow_empty=allow_empty, known_ids=known)
    return problems + [f"task id '{t.id}' is already used by a finished task" for t in plan.tasks if t.id in known]


async def ask_for_plan(llm, *, spec, goal: str, options: dict, inputs: list[str],
                       known: dict[str, dict] | None = None, pending: list[dict] | None = None,
                       mode: str = "full", allow_empty: bool = False,
                       on_text: Callable[[str], None] | None = None) -> tuple[Plan, list[str]]:
    """One planning call plus at most one repair round-trip with the exact problems; then the plan
    and what was salvaged. The reply model (roles, input files, sizes as enums and bounds) is built
    for this run, so a schema-following server can only answer what the validators accept; what a
    schema cannot say (references, cycles) is salvaged after the repair rather than failing the run.
    `on_text`: the calls stream their text to it (utils/run/plan_stream.py starts work from it)."""
    known = known or {}
    schema = plan_reply_model(spec.roles, inputs, options["max_tasks"], allow_empty=allow_empty)
    feedback, notes = "", []
    for attempt in (1, 2):
        messages = planner_messages(spec=spec, goal=goal, max_tasks=options["max_tasks"], inputs=inputs,
                                    feedback=feedback, results=known, pending=pending, mode=mode)
        streaming = {"on_text": on_text} if on_text is not None else {}
        reply = await llm.complete(messages, model=options.get("planner_model"), schema=schema,
                                   temperature=0.2, purpose=PLANNING[mode], **streaming)
        plan = plan_from_reply(reply.data, goal)
        problems = _problems(plan, spec, options, allow_empty, known)
        if not problems:
            break
        feedback = "\n".join(f"- {p}" for p in problems)
    else:
        plan, fixes = salvage_plan(plan, known)
        problems = _problems(plan, spec, options, allow_empty, known)
        if problems:
            raise PlanError("the orchestrator's plan is still invalid after one repair: " + "; ".join(problems[:3]))
        notes.append("plan repaired after the model's repair failed: " + "; ".join(fixes[:5])
                     + (f" (+{len(fixes) - 5} more)" if len(fixes) > 5 else ""))
    return plan, notes


def planner(llm, *, spec, goal: str, options: dict, inputs: list[str], mode: str, base: Plan | None = None,
            finished: Iterable[Task] = (), known: dict[str, dict] | None = None, pending: list[dict] | None = None
            ) -> Callable[..., Awaitable[tuple[Plan, list[str]]]]:
    """`ask(on_text=None)`: one planning step as a node takes it, in the shape a plain call and
    `plan_overlapped` both use: `ask_for_plan`, then the dependencies the spec declares wired in.
    A re-planning round (`base`: the run's plan) keeps its `finished` tasks first, unchanged, and
    the new plan's after them, under the run's goal (and its notes where the new plan has none)."""
    finished = list(finished)
    context = {} if base is None else {"known": known, "pending": pending, "allow_empty": True}

    async def ask(on_text: Callable[[str], None] | None = None) -> tuple[Plan, list[str]]:
        plan, notes = await ask_for_plan(llm, spec=spec, goal=goal, options=options, on_text=on_text, inputs=inputs,
                                         mode=mode, **context)
        if base is not None:
            plan = Plan(goal=base.goal, notes=plan.notes or base.notes, tasks=finished + plan.tasks, done=plan.done)
        return plan, notes + wire_spec_needs(plan, spec, {t.id for t in finished})

    return ask


def wire_spec_needs(plan: Plan, spec, frozen: Iterable[str] = ()) -> list[str]:
    """Dependencies the spec declares (`needs`) that the plan left out; sentences for what is missing."""
    needs = {name: list(role.needs) for name, role in spec.roles.items() if role.needs}
    titles = {name: _title(role.description or name) for name, role in spec.roles.items()}
    return wire_needs(plan, needs, frozen, titles) if needs else []


def _title(description: str) -> str:
    """A task title from a role's description: its first clause, capitalised."""
    head = description.split(":")[0].split(";")[0].strip() or description
    return head[:1].upper() + head[1:80]
