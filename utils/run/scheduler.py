"""Dependency-aware, priority-ordered worker slots for one pass of the worker batch.

The worker batch starts every task at once (an async parallel batch). Each task then waits here:
first for its own dependencies, then for a worker slot. That gives the DAG schedule with no waves:
a task starts the moment its inputs exist and a slot is free, and a slot never idles while a task
is ready. One `Schedule` is created per pass in `prep` and travels with the items, so the node
instance holds no run state.

Strategies differ only in who gets a free slot:
- dependency: any ready task; best (priority, plan position) first.
- priority:   strictly by priority: a task starts only after every better-ranked task has started.
- static:     strictly in plan order.
The strict orders are topological sorts (ties by priority or position), so a task's dependencies
always come before it and head-of-line blocking can never deadlock.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Iterable

from utils.run.plan import Task
from utils.toposort import topo_order as order_nodes

DONE = "done"


class Stopped(Exception):
    """Raised to waiting tasks when the run stops scheduling (budget reached, Ctrl-C)."""


def topo_order(tasks: list[Task], key) -> list[str]:
    """Topological order of `tasks`, picking the smallest `key(task)` among the available ones.

    Dependencies outside `tasks` are treated as already satisfied; a cycle raises ValueError.
    """
    by_id = {t.id: t for t in tasks}
    return order_nodes({t.id: t.depends_on for t in tasks}, key=lambda tid: key(by_id[tid]))


class Schedule:
    """Coordination state for one worker pass (lives in prep_res, never on a node)."""

    def __init__(self, tasks: list[Task], *, max_workers: int, strategy: str = "dependency",
                 satisfied: Iterable[str] = ()) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.strategy = strategy
        self._tasks = {t.id: t for t in tasks}
        self._position = {t.id: i for i, t in enumerate(tasks)}
        self._satisfied = set(satisfied)
        self._free = list(range(1, max_workers + 1))
        self._waiting: list[tuple[tuple, int, str, asyncio.Future]] = []
        self._seq = itertools.count()
        self._ended: dict[str, asyncio.Event] = {}
        self._states: dict[str, str] = {}
        self._dispatch_pending = False
        self.results: dict[str, dict] = {}  # results of this pass, for dependents' context
        self._stopped: str | None = None
        if strategy == "priority":
            self._order = topo_order(tasks, lambda t: (t.priority, self._position[t.id]))
        elif strategy == "static":
            self._order = topo_order(tasks, lambda t: self._position[t.id])
        else:
            self._order = []
        self._order_pos = {tid: i for i, tid in enumerate(self._order)}
        self._head = 0
        self._started: set[str] = set()

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

    def finish(self, task_id: str, state: str, result: dict | None = None) -> None:
        """Record how a task ended; wakes its dependents."""
        if result is not None:
            self.results[task_id] = result
        self._states.setdefault(task_id, state)
        self._event(task_id).set()

    # -- slots --------------------------------------------------------------------------------
    def _rank(self, task_id: str) -> tuple:
        if self._order:
            return (self._order_pos[task_id],)
        return (self._tasks[task_id].priority, self._position[task_id])

    async def acquire(self, task_id: str) -> int:
        """Wait for a worker slot; returns its number (1-based)."""
        if self._stopped:
            raise Stopped(self._stopped)
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (self._rank(task_id), next(self._seq), task_id, fut))
        self._dispatch_soon()
        return await fut

    def release(self, slot: int) -> None:
        self._free.append(slot)
        self._free.sort()
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

    def _mark_started(self, task_id: str) -> None:
        self._started.add(task_id)
        while self._head < len(self._order) and self._order[self._head] in self._started:
            self._head += 1

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
        while self._free and self._waiting:
            rank, _, task_id, fut = self._waiting[0]
            if self._order and self._order[self._head] != task_id:
                return  # strict order: the head of the line is not ready yet
            heapq.heappop(self._waiting)
            if fut.done():  # cancelled while waiting
                continue
            self._mark_started(task_id)
            fut.set_result(self._free.pop(0))
