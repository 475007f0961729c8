"""Dependency-aware, priority-ordered worker slots for one pass of the worker batch.

The worker batch starts every task at once (an async parallel batch). Each task then runs through
`Schedule.run`: it waits for its own dependencies, then for a worker slot, runs, records how it
ended (waking its dependents) and frees the slot. That gives the DAG schedule with no waves: a task
starts the moment its inputs exist and a slot is free, and a slot never idles while a task is
ready. One `Schedule` is created per pass in `prep` and travels with the items, so the node
instance holds no run state.

Strategies differ only in who gets a free slot:
- dependency: any ready task; best priority first, then the longest remaining path (the task
  heading the longest chain of work still to do), then plan position. Without the middle key a
  long chain listed late in the plan starts late and the run ends on it alone.
- priority:   strictly by priority (ties as above): a task starts only after every better-ranked
  task has started.
- static:     strictly in plan order.
The strict orders are topological sorts, so a task's dependencies always come before it and
head-of-line blocking can never deadlock.

A plan that cannot finish (a dependency cycle, e.g. from a tampered `run.json`) never hangs: when
nothing is running, nothing is ready and tasks are still pending, those tasks end `failed` with
the reason, and their dependents are skipped as usual.

Slots are numbered 1.. as they are first needed (a released number is reused lowest first), so
`max_workers` can be any size without allocating anything per possible slot.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any, Awaitable, Callable, Iterable

from utils.run.plan import Task, find_cycle
from utils.dag import dependents, longest_chains, topo_order as order_nodes
from utils.run.results import TaskState

DONE, FAILED, SKIPPED, PENDING = TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED, TaskState.PENDING

Notify = Callable[[str, "str | None"], None]   # (state, error): waiting, ready, or a never-started end
Work = Callable[[int], Awaitable[tuple[str, Any]]]  # slot -> (end state, result for dependents)


class Stopped(Exception):
    """Raised to waiting tasks when the run stops scheduling (budget reached, Ctrl-C)."""


def _graph(tasks: list[Task]) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """In-pass dependencies of each task and the dependents of each (outside ids are ignored)."""
    ids = {t.id for t in tasks}
    needs = {t.id: {d for d in t.depends_on if d in ids} for t in tasks}
    return needs, dependents(needs)


def topo_order(tasks: list[Task], key) -> list[str]:
    """Topological order of `tasks`, picking the smallest `key(task)` among the available ones.

    Dependencies outside `tasks` are treated as already satisfied; a cycle raises ValueError.
    """
    by_id = {t.id: t for t in tasks}
    return order_nodes({t.id: t.depends_on for t in tasks}, key=lambda tid: key(by_id[tid]))


def remaining_path(tasks: list[Task], cost: Callable[[Task], float] | None = None) -> dict[str, float]:
    """For each task, the cost of the longest chain that starts with it (itself included).

    `cost` defaults to 1 per task (the chain's task count); give it an estimate in seconds (e.g.
    the role's observed latency) to weigh chains by time. Tasks on a cycle get their own cost only.
    """
    by_id = {t.id: t for t in tasks}
    weigh = cost or (lambda t: 1.0)
    return longest_chains({t.id: t.depends_on for t in tasks}, lambda tid: weigh(by_id[tid]), downstream=True)


class Schedule:
    """Coordination state for one worker pass (lives in prep_res, never on a node)."""

    def __init__(self, tasks: list[Task], *, max_workers: int, strategy: str = "dependency",
                 satisfied: Iterable[str] = (), cost: Callable[[Task], float] | None = None) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.strategy = strategy
        self._tasks = {t.id: t for t in tasks}
        self._position = {t.id: i for i, t in enumerate(tasks)}
        self._satisfied = set(satisfied)
        self._needs, self._dependents = _graph(tasks)
        self._cost = cost
        self._remaining = remaining_path(tasks, cost)
        # Slots: a count and the numbers given back; nothing allocated per possible slot.
        self._capacity = max_workers
        self._in_use = 0
        self._returned: list[int] = []
        self._next_slot = 1
        self._waiting: list[tuple[tuple, int, str, asyncio.Future]] = []
        self._seq = itertools.count()
        self._ended: dict[str, asyncio.Event] = {}
        self._states: dict[str, str] = {}
        self._errors: dict[str, str] = {}  # tasks the schedule itself ended (a cycle)
        # Progress bookkeeping for the "nothing can ever run" check, O(1) per event.
        self._unmet = {tid: len(d) for tid, d in self._needs.items()}
        self._startable = {tid for tid, n in self._unmet.items() if not n}  # deps ended, not started
        self._open = len(tasks)  # tasks not ended
        self._dispatch_pending = False
        self.results: dict[str, Any] = {}  # results of this pass, for dependents' context
        self._stopped: str | None = None
        rank = lambda t: (t.priority, -self._remaining[t.id], self._position[t.id])  # noqa: E731
        if strategy in ("priority", "static"):
            key = rank if strategy == "priority" else (lambda t: self._position[t.id])
            acyclic = [t for t in tasks if t.id in self._acyclic_ids(tasks)]
            self._order = topo_order(acyclic, key)
        else:
            self._order = []
        self._order_pos = {tid: i for i, tid in enumerate(self._order)}
        self._rank_of = {t.id: rank(t) for t in tasks}
        self._head = 0
        self._started: set[str] = set()

    def add(self, task: Task) -> None:
        """A task that arrives while the pass runs (a plan still streaming in, utils/run/plan_stream.py).

        Its dependencies must already be known (in this pass, or satisfied): tasks arrive in an order
        the plan's edges allow, so a strict order simply appends them and no cycle can form. Ranks
        are recomputed, since the newcomer lengthens the remaining chains of the tasks it needs."""
        tid = task.id
        if tid in self._tasks:
            raise ValueError(f"task {tid!r} is already in this pass")
        self._tasks[tid] = task
        self._position[tid] = len(self._position)
        needs = {d for d in task.depends_on if d in self._tasks and d != tid}
        self._needs[tid], self._dependents[tid] = needs, []
        for d in needs:
            self._dependents[d].append(tid)
        self._unmet[tid] = sum(1 for d in needs if d not in self._states)
        if not self._unmet[tid]:
            self._startable.add(tid)
        self._open += 1
        if self.strategy in ("priority", "static"):
            self._order.append(tid)
            self._order_pos[tid] = len(self._order) - 1
        self._remaining = remaining_path(list(self._tasks.values()), self._cost)
        self._rank_of = {t.id: (t.priority, -self._remaining[t.id], self._position[t.id])
                         for t in self._tasks.values()}
        if not self._order:
            self._waiting = [(self._rank(w[2]), *w[1:]) for w in self._waiting]
            heapq.heapify(self._waiting)

    @staticmethod
    def _acyclic_ids(tasks: list[Task]) -> set[str]:
        """Ids that a topological sort can place (not on, nor after, a cycle)."""
        needs, dependents = _graph(tasks)
        left = {tid: len(d) for tid, d in needs.items()}
        stack = [tid for tid, n in left.items() if not n]
        placed: set[str] = set()
        while stack:
            tid = stack.pop()
            placed.add(tid)
            for o in dependents[tid]:
                left[o] -= 1
                if not left[o]:
                    stack.append(o)
        return placed

    # -- the whole protocol, one call per task ------------------------------------------------
    async def run(self, task_id: str, work: Work, notify: Notify) -> str:
        """Wait for dependencies, take a slot, `work(slot)`, record the end, free the slot.

        `notify(state, error)` says where the task stands: "waiting", "ready", and, for a task
        that never starts, its end state (skipped, pending after a stop, failed on a cycle) with
        the reason. A task that runs reports itself from `work`; it is notified of its end state
        after its slot is free. Returns the end state.
        """
        notify(TaskState.WAITING, None)
        self._dispatch_soon()  # also runs the stuck check, so a plan with no runnable task ends
        unmet = await self.wait_for_dependencies(task_id)
        if task_id in self._errors:
            notify(FAILED, self._errors[task_id])
            return FAILED
        if unmet:
            # After a stop (token budget) a task whose inputs never came is not started, not skipped.
            state = PENDING if self._stopped else SKIPPED
            self.skip(task_id, state)
            notify(state, self._stopped or "dependency did not finish: " + ", ".join(unmet))
            return state
        notify(TaskState.READY, None)
        try:
            slot = await self.acquire(task_id)
        except Stopped as stop:
            self.skip(task_id, PENDING)
            notify(PENDING, str(stop))
            return PENDING
        state, result = PENDING, None  # cancelled (Ctrl-C) or raised: not finished, runs again on resume
        try:
            state, result = await work(slot)
        finally:
            self.finish(task_id, state, result)  # wake dependents before freeing the slot
            self.release(slot)
            notify(state, None)
        return state

    # -- dependencies -------------------------------------------------------------------------
    def _event(self, task_id: str) -> asyncio.Event:
        # An Event, not a shared Future: one waiter being cancelled must not cancel the others.
        if task_id not in self._ended:
            self._ended[task_id] = asyncio.Event()
        return self._ended[task_id]

    async def wait_for_dependencies(self, task_id: str) -> list[str]:
        """Wait until every dependency has ended; return those that did not end `done`."""
        unmet = []
        for dep in self._tasks[task_id].depends_on:
            if dep in self._tasks:
                await self._event(dep).wait()
                if self._states[dep] != DONE:
                    unmet.append(dep)
            elif dep not in self._satisfied:
                unmet.append(dep)
        return unmet

    def finish(self, task_id: str, state: str, result: Any = None) -> None:
        """Record how a task ended; wakes its dependents."""
        if result is not None:
            self.results[task_id] = result
        if task_id in self._states:
            return
        self._states[task_id] = state
        self._open -= 1
        self._startable.discard(task_id)
        for other in self._dependents.get(task_id, ()):
            self._unmet[other] -= 1
            if not self._unmet[other] and other not in self._states:
                self._startable.add(other)
        self._event(task_id).set()

    # -- slots --------------------------------------------------------------------------------
    def _rank(self, task_id: str) -> tuple:
        if self._order:
            return (self._order_pos.get(task_id, len(self._order)),)
        return self._rank_of[task_id]

    async def acquire(self, task_id: str) -> int:
        """Wait for a worker slot; returns its number (1-based)."""
        if self._stopped:
            raise Stopped(self._stopped)
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (self._rank(task_id), next(self._seq), task_id, fut))
        self._dispatch_soon()
        return await fut

    def release(self, slot: int) -> None:
        self._in_use -= 1
        heapq.heappush(self._returned, slot)
        self._dispatch_soon()

    def skip(self, task_id: str, state: str) -> None:
        """A task that will never take a slot (skipped) still counts as started in strict orders."""
        self._mark_started(task_id)
        self.finish(task_id, state)
        self._dispatch_soon()

    def stop(self, reason: str) -> None:
        """Refuse all further starts; tasks waiting for a slot get `Stopped`."""
        self._stopped = reason
        while self._waiting:
            _, _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_exception(Stopped(reason))

    @property
    def stopped(self) -> str | None:
        return self._stopped

    def has_started(self, task_id: str) -> bool:
        """Did the task take a worker slot (its model call may be in flight)?"""
        return task_id in self._started

    def _mark_started(self, task_id: str) -> None:
        self._started.add(task_id)
        self._startable.discard(task_id)
        while self._head < len(self._order) and self._order[self._head] in self._started:
            self._head += 1

    def _take_slot(self) -> int:
        self._in_use += 1
        if self._returned:
            return heapq.heappop(self._returned)
        self._next_slot += 1
        return self._next_slot - 1

    def _dispatch_soon(self) -> None:
        """Grant slots on the next loop turn, once every task woken by the same event has queued.

        Tasks freed by one finishing dependency resume one by one; granting at once would give the
        slot to whichever resumed first instead of the best-ranked one.
        """
        if not self._dispatch_pending:
            self._dispatch_pending = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_pending = False
        while self._in_use < self._capacity and self._waiting:
            rank, _, task_id, fut = self._waiting[0]
            if self._order and self._head < len(self._order) and self._order[self._head] != task_id:
                break  # strict order: the head of the line is not ready yet
            heapq.heappop(self._waiting)
            if fut.done():  # cancelled while waiting
                continue
            self._mark_started(task_id)
            fut.set_result(self._take_slot())
        self._check_stuck()

    def _check_stuck(self) -> None:
        """Nothing running, nothing ready, work pending: end the pending tasks with the reason."""
        if self._in_use or self._startable or self._waiting or not self._open:
            return
        stuck = [tid for tid in self._tasks if tid not in self._states]
        cycle = find_cycle({tid: sorted(self._needs[tid]) for tid in stuck})
        why = ("dependency cycle " + " -> ".join(cycle)) if cycle else "dependencies that can never finish"
        for tid in stuck:
            self._errors[tid] = f"never became ready: {why}"
        for tid in stuck:
            self.finish(tid, FAILED)
