"""The schedule: dependencies, worker slots and priority, driven by events, never by sleeps."""
import asyncio

import pytest

from utils.run.plan import Task
from utils.run.scheduler import Schedule, Stopped, topo_order


def tasks(*specs):
    return [Task(id=i, title=i, role="w", priority=p, depends_on=d) for i, p, d in specs]


async def run_all(sched: Schedule, items: list[Task], gates: dict[str, asyncio.Event] | None = None):
    """Run every task through the schedule; returns the log of (event, id)."""
    log: list[tuple[str, str]] = []
    gates = gates or {}

    async def one(t: Task):
        unmet = await sched.wait_for_dependencies(t.id)
        if unmet:
            sched.skip(t.id, "skipped")
            log.append(("skip", t.id))
            return
        slot = await sched.acquire(t.id)
        log.append(("start", t.id))
        if t.id in gates:
            await asyncio.wait_for(gates[t.id].wait(), 5)
        await asyncio.sleep(0)
        state = "failed" if t.id.startswith("x") else "done"
        log.append(("end", t.id))
        sched.finish(t.id, state)  # as WorkerBatch does: wake dependents, then free the slot
        sched.release(slot)

    await asyncio.gather(*(one(t) for t in items))
    return log


def test_dependencies_finish_before_dependents_start():
    ts = tasks(("a", 3, []), ("b", 3, ["a"]), ("c", 3, ["a"]), ("d", 3, ["b", "c"]))
    log = asyncio.run(run_all(Schedule(ts, max_workers=4), ts))
    pos = {e: i for i, e in enumerate(log)}
    assert pos[("end", "a")] < pos[("start", "b")]
    assert pos[("end", "a")] < pos[("start", "c")]
    assert pos[("end", "b")] < pos[("start", "d")] and pos[("end", "c")] < pos[("start", "d")]


def test_failed_dependency_skips_dependents_only():
    ts = tasks(("xa", 3, []), ("b", 3, ["xa"]), ("c", 3, ["b"]), ("e", 3, []))
    log = asyncio.run(run_all(Schedule(ts, max_workers=2), ts))
    assert ("skip", "b") in log and ("skip", "c") in log
    assert ("end", "e") in log


def test_worker_limit_and_priority_among_ready_tasks():
    ts = tasks(("blocker", 1, []), ("low", 5, []), ("high", 1, []), ("mid", 3, []))

    async def scenario():
        sched = Schedule(ts, max_workers=1)
        gate = asyncio.Event()
        runner = asyncio.ensure_future(run_all(sched, ts, {"blocker": gate}))
        while len(sched._waiting) < 3:  # noqa: SLF001 - wait until all three are queued
            await asyncio.sleep(0)
        gate.set()
        return await runner

    log = asyncio.run(scenario())
    starts = [i for e, i in log if e == "start"]
    assert starts == ["blocker", "high", "mid", "low"]
    running = 0
    for event, _ in log:
        running += 1 if event == "start" else -1
        assert running <= 1


def test_independent_tasks_overlap():
    ts = tasks(("a", 3, []), ("b", 3, []))

    async def scenario():
        sched = Schedule(ts, max_workers=2)
        a_gate, b_gate = asyncio.Event(), asyncio.Event()
        runner = asyncio.ensure_future(run_all(sched, ts, {"a": a_gate, "b": b_gate}))
        while len(sched._free) > 0:  # both slots taken while neither has finished
            await asyncio.sleep(0)
        a_gate.set(); b_gate.set()
        return await runner

    log = asyncio.run(scenario())
    assert log[:2] == [("start", "a"), ("start", "b")]


def test_strict_priority_never_deadlocks_on_dependencies():
    ts = tasks(("needs", 1, ["base"]), ("base", 5, []), ("other", 3, []))
    order = topo_order(ts, lambda t: t.priority)
    assert order.index("base") < order.index("needs")
    log = asyncio.run(run_all(Schedule(ts, max_workers=2, strategy="priority"), ts))
    assert [i for e, i in log if e == "start"] == order


def test_static_runs_in_plan_order():
    ts = tasks(("a", 5, []), ("b", 1, []), ("c", 1, []))
    log = asyncio.run(run_all(Schedule(ts, max_workers=1, strategy="static"), ts))
    assert [i for e, i in log if e == "start"] == ["a", "b", "c"]


def test_stop_refuses_waiting_tasks():
    async def scenario():
        sched = Schedule(tasks(("a", 3, []), ("b", 3, [])), max_workers=1)
        slot = await sched.acquire("a")
        waiter = asyncio.ensure_future(sched.acquire("b"))
        await asyncio.sleep(0)
        sched.stop("budget reached")
        with pytest.raises(Stopped):
            await waiter
        sched.release(slot)

    asyncio.run(scenario())


def test_dependencies_outside_the_pass():
    ts = tasks(("b", 3, ["a"]),)
    log = asyncio.run(run_all(Schedule(ts, max_workers=1, satisfied={"a"}), ts))
    assert ("end", "b") in log
    log = asyncio.run(run_all(Schedule(ts, max_workers=1), ts))
    assert ("skip", "b") in log


def test_tasks_freed_together_start_by_priority():
    """When one task ends and frees several, the best-ranked gets the slot, not the first to wake."""
    ts = tasks(("root", 3, []), ("p5", 5, ["root"]), ("p1", 1, ["root"]), ("p3", 3, ["root"]))
    log = asyncio.run(run_all(Schedule(ts, max_workers=1), ts))
    assert [i for e, i in log if e == "start"] == ["root", "p1", "p3", "p5"]


def test_initial_ready_tasks_start_by_priority():
    ts = tasks(("c", 5, []), ("a", 1, []), ("b", 2, []))
    log = asyncio.run(run_all(Schedule(ts, max_workers=1), ts))
    assert [i for e, i in log if e == "start"] == ["a", "b", "c"]
