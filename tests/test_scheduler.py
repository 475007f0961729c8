"""The schedule: dependencies, worker slots and priority, driven by events, never by sleeps."""
import asyncio

import pytest

from utils.run.plan import Task
from utils.run.scheduler import Schedule, Stopped, remaining_path, topo_order


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
        while sched._in_use < 2:  # noqa: SLF001 - both slots taken while neither has finished
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


# -- the one-call protocol, the critical path first, stuck plans, unbounded worker counts ----------
async def run_via_protocol(sched: Schedule, items: list[Task], log: list, *, fail: set[str] = frozenset()):
    """Every task through `Schedule.run`, as WorkerBatch does; returns {id: end state}."""
    async def one(t: Task):
        async def work(slot: int):
            log.append(("start", t.id, slot))
            await asyncio.sleep(0)
            log.append(("end", t.id, slot))
            return ("failed" if t.id in fail else "done"), {"id": t.id}

        notes: list = []
        state = await sched.run(t.id, work, lambda s, e: notes.append((s, e)))
        return t.id, state, notes

    done = await asyncio.wait_for(asyncio.gather(*(one(t) for t in items)), 5)
    return {tid: (state, notes) for tid, state, notes in done}


def test_equal_priority_prefers_the_longest_remaining_chain():
    """The head of a 3-task chain listed last starts before two lone tasks listed first."""
    ts = tasks(("lone1", 3, []), ("lone2", 3, []), ("head", 3, []), ("mid", 3, ["head"]), ("tail", 3, ["mid"]))
    log: list = []
    asyncio.run(run_via_protocol(Schedule(ts, max_workers=1), ts, log))
    starts = [i for e, i, _ in log if e == "start"]
    assert starts[0] == "head"
    assert starts.index("mid") < starts.index("lone2")  # the chain keeps going while short tasks wait


def test_priority_still_beats_path_length():
    ts = tasks(("urgent", 1, []), ("head", 3, []), ("mid", 3, ["head"]), ("tail", 3, ["mid"]))
    log: list = []
    asyncio.run(run_via_protocol(Schedule(ts, max_workers=1), ts, log))
    assert [i for e, i, _ in log if e == "start"][0] == "urgent"


def test_remaining_path_weighs_by_cost():
    ts = tasks(("a", 3, []), ("b", 3, ["a"]), ("slow", 3, []))
    assert remaining_path(ts) == {"a": 2.0, "b": 1.0, "slow": 1.0}
    weighted = remaining_path(ts, cost=lambda t: 5.0 if t.id == "slow" else 1.0)
    assert weighted["slow"] > weighted["a"]


def test_run_reports_states_and_skips_dependents_of_a_failure():
    ts = tasks(("a", 3, []), ("b", 3, ["a"]), ("c", 3, []))
    log: list = []
    out = asyncio.run(run_via_protocol(Schedule(ts, max_workers=2), ts, log, fail={"a"}))
    assert out["a"][0] == "failed" and out["c"][0] == "done"
    state, notes = out["b"]
    assert state == "skipped" and notes[-1] == ("skipped", "dependency did not finish: a")
    assert [s for s, _ in out["c"][1]] == ["waiting", "ready", "done"]


@pytest.mark.parametrize("strategy", ["dependency", "priority", "static"])
def test_a_plan_with_a_cycle_ends_with_a_clear_error_instead_of_hanging(strategy):
    ts = tasks(("a", 3, ["b"]), ("b", 3, ["a"]), ("after", 3, ["a"]), ("free", 3, []))
    log: list = []
    out = asyncio.run(run_via_protocol(Schedule(ts, max_workers=2, strategy=strategy), ts, log))
    assert out["free"][0] == "done"
    for tid in ("a", "b", "after"):
        state, notes = out[tid]
        assert state == "failed"
        assert "never became ready" in notes[-1][1]
    assert "dependency cycle" in out["a"][1][-1][1] and "a" in out["a"][1][-1][1]


def test_a_pure_cycle_with_nothing_else_to_run_ends_too():
    ts = tasks(("a", 3, ["a"]),)
    out = asyncio.run(run_via_protocol(Schedule(ts, max_workers=1), ts, []))
    assert out["a"][0] == "failed"


@pytest.mark.parametrize("workers", [10**9, 10**30])
def test_huge_worker_limits_allocate_nothing_per_slot(workers):
    ts = tasks(*[(f"t{i}", 3, []) for i in range(5)])
    log: list = []
    asyncio.run(run_via_protocol(Schedule(ts, max_workers=workers), ts, log))
    slots = {s for e, _, s in log if e == "start"}
    assert slots == {1, 2, 3, 4, 5}  # numbered as needed


def test_released_slot_numbers_are_reused_lowest_first():
    ts = tasks(("a", 3, []), ("b", 3, ["a"]), ("c", 3, ["b"]))
    log: list = []
    asyncio.run(run_via_protocol(Schedule(ts, max_workers=8), ts, log))
    assert {s for e, _, s in log if e == "start"} == {1}  # a chain needs one lane, whatever the limit


def test_a_cancelled_task_is_reported_pending_and_frees_its_slot():
    """Ctrl-C cancels the tasks in flight: each still reports an end state (pending, so resume runs it)."""
    ts = tasks(("a", 3, []), ("b", 3, ["a"]))

    async def scenario():
        sched = Schedule(ts, max_workers=1)
        notes: list = []
        started = asyncio.Event()

        async def work(slot):
            started.set()
            await asyncio.sleep(60)
            return "done", None

        runner = asyncio.ensure_future(sched.run("a", work, lambda s, e: notes.append(s)))
        await started.wait()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        return notes, sched

    notes, sched = asyncio.run(scenario())
    assert notes == ["waiting", "ready", "pending"] and sched._in_use == 0  # noqa: SLF001


def test_a_saved_plan_with_a_cycle_runs_to_the_end_through_the_graph(tmp_path):
    """Issue 15: a resumed plan with a cycle hung forever. Through the real graph (offline model) the
    cyclic tasks now end failed with the reason, the rest runs, and the document is assembled."""
    from flows import build_flow
    from utils.app.run import new_shared
    from utils.options import DEFAULT_OPTIONS
    from utils.events import null_emit
    from utils.model.client import make_model
    from utils.model.settings import LLMSettings
    from utils.run.spec import load_spec

    llm = make_model(LLMSettings(provider="offline", cache=False), home=tmp_path)
    shared = new_shared(goal="g", spec=load_spec("blog"), options={**DEFAULT_OPTIONS, "max_revisions": 0},
                        inputs={"inputs": [], "data": None}, llm=llm, emit=null_emit)
    shared["plan"] = {"goal": "g", "tasks": [
        {"id": "a", "title": "A", "role": "writer", "depends_on": ["b"]},
        {"id": "b", "title": "B", "role": "writer", "depends_on": ["a"]},
        {"id": "c", "title": "C", "role": "writer", "depends_on": []}]}
    asyncio.run(asyncio.wait_for(build_flow("dependency").run_async(shared), 60))
    results = shared["results"]
    assert results["c"]["state"] == "done"
    for tid in ("a", "b"):
        assert results[tid]["state"] == "failed" and "dependency cycle" in results[tid]["error"]
    assert shared["document"] and shared["status"] != "ok"
