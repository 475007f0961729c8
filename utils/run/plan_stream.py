"""Work starts while the plan is still being written: the planning reply streams, and each task
goes to the worker pass as soon as its JSON object is complete and every task it depends on is known.

Why: with a real model a 12-task plan is 800-1,500 output tokens, 10-30 s of decoding, and a task
listed early can run long before the last task is written (LLMCompiler's observation). Three parts:

- `TaskObjects` reads the reply's text as it grows and returns each task object of the top-level
  `tasks` array once its closing brace has arrived (a scan that tracks strings and nesting; nothing
  before the brace is trusted, so a half-written instruction never reaches a worker).
- `Gate` admits a parsed task when it is well formed (id, known role, not a duplicate) and all its
  dependencies are admitted or finished earlier; tasks of roles that declare `needs` wait for the
  whole plan (wiring may still add their edges). `frontier=True` (hybrid) admits only tasks whose
  dependencies finished in earlier rounds.
- `PlanWhileWorking` drives one planning call with the worker pass: it adds each admitted task to
  the pass's `Schedule` and starts it; when the plan is final (validated, repaired once if needed,
  salvaged, wired) it keeps what the final plan kept unchanged (`reconcile`) and cancels the rest,
  with a notice, so results of a plan that failed validation are never mixed with tasks the
  repaired plan changed.

Nothing here knows the model or the graph: the node hands in `ask(on_text)` (the planning call)
and `work(task, plan, schedule)` (one worker-pass item), so the one LLM boundary and the one
worker path stay where they are.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from pydantic import ValidationError

from utils.events import Event
from utils.run.plan import ID_PATTERN, Plan, Task
from utils.run.results import ENDED, TaskState, ids_with
from utils.run.scheduler import Schedule

_ID = re.compile(ID_PATTERN)
_TASKS_KEY = re.compile(r',?\s*"[^"]*"\s*:\s*\[\s*$')  # the key that opens the tasks array


class TaskObjects:
    """The complete task objects of a growing planning reply, each returned once, in order.

    `feed(text)` takes the whole reply so far. A text that does not extend the last one is a new
    reply (a retry or the repair round-trip): the scan starts over and `restarted` counts it."""

    def __init__(self) -> None:
        self.restarted = 0
        self._reset()

    def _reset(self) -> None:
        self._text, self._pos = "", 0
        self._stack: list[str] = []          # open containers: '{' or '['
        self._in_string = self._escaped = False
        self._start: int | None = None        # where the task object being read began
        self._root = 0
        self.head: dict | None = None         # the root's fields before `tasks` (notes), once known

    def feed(self, text: str) -> list[dict]:
        if not text.startswith(self._text):
            self._reset()
            self.restarted += 1
        self._text = text
        found: list[dict] = []
        stack = self._stack
        for i in range(self._pos, len(text)):
            ch = text[i]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = bool(stack)  # prose before the root object is not JSON
            elif ch in "{[":
                if ch == "{" and stack == ["{", "["]:
                    self._start = i           # an object in the root's array: a task
                    if self.head is None:     # what came before the first task: the notes
                        self.head = _loads(_TASKS_KEY.sub("", text[self._root:i]) + "}") or {}
                if not stack and ch == "{":
                    self._root = i
                if stack or ch == "{":
                    stack.append(ch)
            elif ch in "}]" and stack:
                stack.pop()
                if ch == "}" and stack == ["{", "["] and self._start is not None:
                    obj = _loads(text[self._start:i + 1])
                    if isinstance(obj, dict):
                        found.append(obj)
                    self._start = None
        self._pos = len(text)
        return found


def _loads(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


class Gate:
    """Which streamed tasks may start now (see the module docstring)."""

    def __init__(self, roles: Iterable[str], *, known: Iterable[str] = (), hold_roles: Iterable[str] = (),
                 max_tasks: int | None = None, frontier: bool = False) -> None:
        self.roles, self.hold = set(roles), set(hold_roles)
        self.known, self.frontier, self.max_tasks = set(known), frontier, max_tasks
        self.admitted: dict[str, Task] = {}
        self._seen: set[str] = set()
        self._waiting: list[Task] = []
        self.order: list[Task] = []  # every well-formed task of the current reply, in its order

    def offer(self, raw: dict) -> list[Task]:
        """Tasks that may start now that `raw` arrived (it, and any that waited for it)."""
        try:
            task = Task.model_validate(raw)
        except ValidationError:
            return []
        fresh = task.id not in self._seen and task.id not in self.known
        self._seen.add(task.id)
        self.order.append(task)
        if (not fresh or not _ID.match(task.id) or task.role not in self.roles or task.role in self.hold
                or task.id in task.depends_on or (self.max_tasks is not None and len(self._seen) > self.max_tasks)):
            return []  # the final validation will name it; it never starts early
        self._waiting.append(task)
        return self._release()

    def restart(self) -> None:
        """A new reply began (retry, repair): what waited in the old one is void; its ids may come again."""
        self._waiting.clear()
        self._seen = set(self.admitted)
        self.order = []

    def _release(self) -> list[Task]:
        out: list[Task] = []
        moved = True
        while moved:
            moved = False
            for task in list(self._waiting):
                ok = self.known if self.frontier else self.known | set(self.admitted)
                if set(task.depends_on) <= ok:
                    self._waiting.remove(task)
                    self.admitted[task.id] = task
                    out.append(task)
                    moved = True
        return out


def same_task(a: Task, b: Task) -> bool:
    """What a worker's result depends on: id, role, instructions, dependencies (and tool inputs)."""
    return (a.id, a.role, a.instructions.strip(), sorted(a.depends_on), sorted(a.inputs)) == \
        (b.id, b.role, b.instructions.strip(), sorted(b.depends_on), sorted(b.inputs))


def reconcile(started: dict[str, Task], final: Plan) -> tuple[list[str], list[str]]:
    """(kept, discarded) among the tasks started early: kept when the final plan has the same task
    and everything it depends on is kept too, since a result built on a discarded one is discarded."""
    final_by_id = {t.id: t for t in final.tasks}
    discarded = {tid for tid, t in started.items() if tid not in final_by_id or not same_task(t, final_by_id[tid])}
    changed = True
    while changed:
        changed = False
        for tid, t in started.items():
            if tid not in discarded and discarded.intersection(t.depends_on):
                discarded.add(tid)
                changed = True
    return [t for t in started if t not in discarded], [t for t in started if t in discarded]


@dataclass
class Overlap:
    """What one overlapped planning call produced, beside the plan itself."""
    results: dict[str, dict] = field(default_factory=dict)   # tasks that ran and were kept
    discarded: list[str] = field(default_factory=list)
    streamed: dict[str, float] = field(default_factory=dict)  # task id -> epoch second it could start
    planning: dict[str, float] = field(default_factory=dict)  # started, ended (epoch seconds)


Work = Callable[[Task, Plan, Schedule], Awaitable[dict]]


class PlanWhileWorking:
    """One planning call with the worker pass running beside it (the orchestrator's and the re-planner's)."""

    def __init__(self, *, goal: str, gate: Gate, work: Work, emit: Callable[[Event], None],
                 max_workers: int, strategy: str, satisfied: Iterable[str] = ()) -> None:
        self.gate, self.work, self.emit = gate, work, emit
        self.objects = TaskObjects()
        self.live = Plan(goal=goal)  # what early workers see as the outline: the plan so far
        self.sched = Schedule([], max_workers=max_workers, strategy=strategy, satisfied=satisfied)
        self.running: dict[str, asyncio.Task] = {}
        self.out = Overlap()

    def on_text(self, text: str) -> None:
        """The planning reply so far (the client's `on_text`): start what became startable."""
        restarts = self.objects.restarted
        found = self.objects.feed(text)
        if self.objects.restarted != restarts:
            self.gate.restart()
        for raw in found:
            for task in self.gate.offer(raw):
                if task.id not in self.running:
                    self._start(task)

    def _start(self, task: Task, listed: list[Task] | None = None) -> None:
        """Start `task`; its worker sees the outline up to its own task (`listed`, default: the
        reply so far). Only that much is sure when it starts early, and the same prefix whatever
        the timing keeps prompts deterministic (an identical run is served from the cache)."""
        if self.objects.head is not None and "ended" not in self.out.planning:  # the notes came first
            self.live.notes = str(self.objects.head.get("notes") or "")
        if not self.running:
            self.emit(Event("phase", {"name": "planning + working"}))
        listed = self.gate.order if listed is None else listed
        ids = [t.id for t in listed]
        upto = listed[:ids.index(task.id) + 1] if task.id in ids else [*listed, task]
        outline = Plan.model_construct(goal=self.live.goal, notes=self.live.notes, tasks=upto, done=False)
        self.sched.add(task)
        self.live.tasks.append(task)
        self.out.streamed[task.id] = time.time()
        self.running[task.id] = asyncio.ensure_future(self.work(task, outline, self.sched))

    async def run(self, ask: Callable[[Callable[[str], None]], Awaitable[tuple[Plan, list[str]]]],
                  on_plan: Callable[[Plan, list[str]], None]) -> tuple[Plan, list[str], Overlap]:
        """Plan (streaming into `on_text`), then finish the pass: kept tasks run on, changed ones are
        cancelled, and the final plan's remaining tasks join the pass when nothing was discarded
        (else they are left to the next worker pass, which sees only the kept results as done)."""
        self.out.planning["started"] = time.time()
        try:
            plan, notes = await ask(self.on_text)
            self.out.planning["ended"] = time.time()
            _, discarded = reconcile(self.gate.admitted, plan)
            if discarded:
                await self._discard(discarded, plan)
            on_plan(plan, notes)
            self.live.notes, self.live.tasks = plan.notes, list(plan.tasks)
            if not discarded and not self.sched.stopped:
                self._start_rest(plan)
            done = await asyncio.gather(*self.running.values())
        except BaseException:
            for job in self.running.values():
                job.cancel()
            await asyncio.gather(*self.running.values(), return_exceptions=True)
            raise
        self.out.results = {r["id"]: r for r in done}
        return plan, notes, self.out

    def _start_rest(self, plan: Plan) -> None:
        """What the stream could not start (held roles, edges wiring added), dependencies first."""
        rest = [t for t in plan.tasks if t.id not in self.running and t.id not in self.gate.known
                and (not self.gate.frontier or set(t.depends_on) <= self.gate.known)]
        while rest:
            ready = [t for t in rest if all(d in self.running or d in self.gate.known for d in t.depends_on)]
            if not ready:
                return  # left to the next worker pass (a validated plan has no cycle)
            for task in ready:
                self._start(task, plan.tasks)
                rest.remove(task)

    async def _discard(self, ids: list[str], plan: Plan) -> None:
        """Tasks not yet in a slot are cancelled; a call already sent is let finish (the server does
        the work and the run counts what it cost), and its result is thrown away."""
        jobs = {tid: self.running.pop(tid) for tid in ids}
        for tid, job in jobs.items():
            if not self.sched.has_started(tid):
                job.cancel()
        await asyncio.gather(*jobs.values(), return_exceptions=True)
        for tid in ids:
            self.sched.finish(tid, TaskState.PENDING)  # never started, or cancelled: nothing waits on it
            task = self.gate.admitted[tid]
            why = ("the repaired plan changed this task or one it depends on" if tid in plan.ids()
                   else "the final plan dropped this task")
            result = {"id": tid, "title": task.title, "role": task.role, "state": TaskState.SKIPPED,
                      "error": f"discarded: {why}", "output": "", "prompt_tokens": 0, "completion_tokens": 0}
            self.emit(Event("task", {**{k: result[k] for k in ("id", "title", "role", "state", "error")},
                                     "worker": None, "elapsed_s": 0.0, "tokens": 0, "revision": 0,
                                     "result": result}))
        self.out.discarded = list(ids)
        self.emit(Event("notice", {"level": "warn", "message": (
            f"the plan changed after work on it had started (repair or retry): {len(ids)} task(s) discarded "
            f"({', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''}); what the final plan keeps runs as planned")}))


OVERLAP_STRATEGIES = ("dependency", "dynamic", "hybrid")  # static/priority: the order needs the whole plan


def overlap_applies(options: dict, llm: Any) -> bool:
    """Overlap planning and work? On by default (`--no-overlap` or `overlap: false` turns it off);
    never offline (nothing streams), for a plan-only run, or for the strict-order strategies."""
    return (bool(options.get("overlap", True)) and not getattr(llm, "offline", False)
            and options.get("strategy") in OVERLAP_STRATEGIES and not options.get("plan_only"))


async def plan_overlapped(*, ask, work: Work, spec: Any, goal: str, options: dict, prior: dict[str, dict],
                          emit: Callable[[Event], None], on_plan: Callable[[Plan, list[str]], None],
                          known: Iterable[str] = ()) -> tuple[Plan, list[str], Overlap]:
    """One planning call with the worker pass beside it. `known`: tasks finished in earlier rounds
    (a re-plan), which new tasks may depend on; hybrid admits only tasks that depend on those."""
    done = set(ids_with(prior, TaskState.DONE)) | set(known)
    gate = Gate(spec.roles, known=done | set(prior),  # a dependency on a task that failed: skipped, as always hold_roles=[n for n, r in spec.roles.items() if r.needs],
                max_tasks=options["max_tasks"], frontier=options["strategy"] == "hybrid")
    run = PlanWhileWorking(goal=goal, gate=gate, work=work, emit=emit, max_workers=options["max_workers"],
                           strategy=options["strategy"], satisfied=done)
    return await run.run(ask, on_plan)
