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

from utils.dag import find_cycle, free_id  # noqa: F401 - find_cycle re-exported: the one cycle finder
from utils.run.results import TaskState, state_of


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


DEFAULT_MAX_RERUN = 12


def bounded_rerun(plan: Plan, flagged: Iterable[str], results: dict[str, dict],
                  cap: int | None = None) -> tuple[list[str], list[str]]:
    """(tasks a revision re-runs, dependents left as they are) for the tasks a reviewer sent back.

    Every flagged task re-runs; its finished dependents follow in plan order up to `cap` tasks in all,
    so one flagged root task cannot silently re-run a 220-task plan. The rest keep their version."""
    flagged = [t for t in flagged if state_of(results.get(t)) == TaskState.DONE]
    cap = max(cap or DEFAULT_MAX_RERUN, len(flagged))
    closure = [t for t in dependents_closure(plan, flagged) if state_of(results.get(t)) == TaskState.DONE]
    extra = [t for t in closure if t not in flagged]
    room = cap - len(flagged)
    keep = set(flagged) | set(extra[:room])
    return [t for t in closure if t in keep], extra[room:]


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


# -- the planner's reply contract, built per run ---------------------------------------------------
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,40}$"


class _TaskReply(BaseModel):
    """Tolerances shared by every per-run task model (numbers as ids, stray spaces, priority 0/10):
    a server that ignores the schema still gets these for free instead of a repair round-trip."""

    model_config = ConfigDict(coerce_numbers_to_str=True, extra="ignore")

    @field_validator("id", "title", "role", mode="before", check_fields=False)
    @classmethod
    def _strip_text(cls, value):
        return value.strip() if isinstance(value, str) else value

    @field_validator("priority", mode="before", check_fields=False)
    @classmethod
    def _clamp(cls, value):
        try:
            return min(5, max(1, int(value)))
        except (TypeError, ValueError):
            return value


def plan_reply_model(roles: Iterable[str], inputs: Iterable[str], max_tasks: int, *,
                     allow_empty: bool = False) -> type[BaseModel]:
    """The pydantic model of one planning reply for this run: it is both the JSON schema sent to the
    server (`structured.strict_schema`) and the validation of what comes back, so the two cannot
    drift apart. Roles and input files are enums; a plan with no input files has no `inputs` field.
    Dependency references and cycles cannot be said in a schema: `plan_problems` checks those."""
    from typing import Annotated, Literal

    from pydantic import create_model

    role_names = tuple(roles)
    files = input_choices(inputs)
    task_id = Annotated[str, Field(pattern=ID_PATTERN)]
    fields: dict = {
        "id": (task_id, Field(description="unique task id: 1-40 letters, digits, '_', '-' or '.', e.g. t1")),
        "title": (str, Field(min_length=1, description="section or task title")),
        "role": (Literal[role_names], Field(description="the worker role that does this task")),
        "instructions": (str, Field(default="", description="what the worker must do")),
        "depends_on": (list[task_id], Field(default_factory=list,
                                            description="ids of tasks (in this plan or finished) whose output this "
                                                        "task needs; never its own id; no cycles")),
        "priority": (int, Field(default=3, ge=1, le=5, description="1 = highest .. 5 = lowest")),
    }
    validators = {}
    if files:
        fields["inputs"] = (list[Literal[files]], Field(default_factory=list,
                                                        description="input files a tool task works on"))
        validators["_file_names"] = field_validator("inputs", mode="before")(
            lambda cls, value: [_as_choice(v, files) for v in value] if isinstance(value, list) else value)
    task_model = create_model("PlanTask", __base__=_TaskReply, __validators__=validators, **fields)
    top: dict = {
        "notes": (str, Field(default="", description="audience, tone and style notes every worker shares")),
        "tasks": (list[task_model], Field(min_length=0 if allow_empty else min(1, max_tasks),
                                          max_length=max_tasks,
                                          description=f"at most {max_tasks} tasks, ids unique")),
    }
    if allow_empty:
        top["done"] = (bool, Field(default=False, description="true when the goal is met and no task is left"))
    return create_model("Plan", **top)


def input_choices(inputs: Iterable[str]) -> tuple[str, ...]:
    """The file names a plan may put in `inputs`: base names when they are unique (short, and no
    directory layout is sent), else the paths as given."""
    paths = list(dict.fromkeys(inputs))
    names = [p.replace("\\", "/").rsplit("/", 1)[-1] for p in paths]
    return tuple(names) if len(set(names)) == len(names) else tuple(paths)


def _as_choice(value, choices: tuple[str, ...]):
    """A path whose base name is one of the choices counts as that choice (models copy full paths)."""
    if isinstance(value, str) and value not in choices:
        base = value.replace("\\", "/").rsplit("/", 1)[-1]
        if base in choices:
            return base
    return value


def plan_from_reply(reply: BaseModel, goal: str) -> Plan:
    """The run's `Plan` from a validated planning reply (fields the reply model lacks take defaults)."""
    return Plan.model_validate({**reply.model_dump(), "goal": goal})


def salvage_plan(plan: Plan, known_ids: Iterable[str] = ()) -> tuple[Plan, list[str]]:
    """A usable plan from one whose only faults are in its references, and what was changed.

    Used after the one repair round-trip failed: a duplicate id (or one taken by a finished task) is
    renamed, a dependency on an unknown task or on itself is dropped, and a cycle is broken by
    dropping the edge that closes it. Roles, inputs and sizes are the schema's business and are
    left alone, so `plan_problems` still has the last word."""
    known = set(known_ids)
    taken = set(known)
    fixes: list[str] = []
    tasks = [t.model_copy(deep=True) for t in plan.tasks]
    for t in tasks:
        if t.id in taken:
            new = free_id(t.id, taken, keep=34)
            fixes.append(f"renamed duplicate id '{t.id}' to '{new}'")
            t.id = new
        taken.add(t.id)
    available = {t.id for t in tasks} | known
    for t in tasks:
        bad = [d for d in t.depends_on if d == t.id or d not in available]
        if bad:
            fixes.append(f"dropped unknown dependencies of '{t.id}': {', '.join(bad)}")
            t.depends_on = [d for d in dict.fromkeys(t.depends_on) if d not in bad]
    by_id = {t.id: t for t in tasks}
    while True:
        cycle = find_cycle({t.id: list(t.depends_on) for t in tasks})
        if not cycle:
            break
        last, first = cycle[-2], cycle[-1]
        by_id[last].depends_on.remove(first)
        fixes.append(f"broke the dependency cycle {' -> '.join(cycle)} at '{last}' -> '{first}'")
    return plan.model_copy(update={"tasks": tasks}), fixes


def wire_needs(plan: Plan, needs: dict[str, list[str]], frozen: Iterable[str] = (),
               titles: dict[str, str] | None = None) -> list[str]:
    """Give each task whose role declares `needs` a dependency on the plan's tasks of those roles.

    A schema-valid plan can still leave a tool task without its material (a schedule with no
    breakdown to schedule; 3 of 5 model-made project plans did). A producer the plan forgot is
    added: it takes the consumer's dependencies (so it runs after the requirements) and the consumer
    waits for it, instead of the tool failing its task. Edges are only added when they make no
    cycle. `titles`: the run's roles (name -> title of an added task); a needed role outside them is
    only reported. Returns one sentence per change worth a notice. `frozen` tasks (finished in an
    earlier round) are left as they ran."""
    notes: list[str] = []
    frozen = set(frozen)
    for t in list(plan.tasks):
        if t.id in frozen:
            continue
        for role in needs.get(t.role, []):
            providers = [p.id for p in plan.tasks if p.role == role and p.id != t.id]
            if not providers and role not in (titles or {}):  # not a role of this run: say so
                notes.append(f"task '{t.id}' ({t.role}) needs a '{role}' task and the plan has none")
                continue
            if not providers:
                taken = set(plan.ids())
                new_id = role if role not in taken else free_id(role, taken)
                added = Task(id=new_id, title=(titles or {})[role], role=role,
                             depends_on=list(t.depends_on), priority=t.priority)
                plan.tasks.insert(plan.tasks.index(t), added)
                t.depends_on.append(new_id)
                notes.append(f"added task '{new_id}' ({role}): task '{t.id}' ({t.role}) needs one and the plan "
                             "had none")
                continue
            if set(providers) & set(t.depends_on):
                continue  # the plan already wired one of them
            for pid in providers:
                t.depends_on.append(pid)
                if find_cycle({x.id: list(x.depends_on) for x in plan.tasks}):
                    t.depends_on.remove(pid)
    return notes
