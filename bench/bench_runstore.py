"""Run-store cost per task: flat from 50 to 4,000 tasks (the journal), and whole offline runs that
grow linearly with plan size.

1. Store only: a run store fed a plan and N task-ended events, as the graph emits them. "on loop"
   is the CPU time the caller (the event loop's thread) spends handing each event over; "to disk"
   is the wall time until the writer thread has every line on disk (fsync per batch); the final
   run.json (written once per run) is shown apart.
2. Whole runs: the real graph through `utils.app.run.execute` with the offline provider
   (no model, no network) and a preset plan (a random DAG, up to 3 dependencies among the 20
   previous tasks), `max_tasks` raised, 8 workers, with the run store listening as in the CLI.

Ratios are against the smallest size of the same table, measured in this one run.

    python bench/bench_runstore.py [--quick]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header, main_guard, random_dag, run_with_store, scratch, table  # noqa: E402

STORE_SIZES = (50, 250, 1000, 4000)
RUN_SIZES = (1000, 2000, 4000)
OPTIONS = {"strategy": "dependency", "max_workers": 8, "max_tasks": 10_000, "max_revisions": 0,
           "max_rounds": 6, "context_budget": 6000, "model": None, "planner_model": None,
           "reviewer_model": None, "plan_only": False, "max_tokens_total": None}


def plan_for(n: int) -> dict:
    return random_dag(n, p=0.15, max_deps=3, window=20, latencies=(0.0,), name=f"random {n}").plan()


def store_only(n: int) -> tuple[float, float, float]:
    """(CPU ms per task on the caller's thread, wall ms per task until every line is on disk,
    ms for the final run.json)."""
    from utils.events import Event
    from utils.run.runstore import RunStore

    plan = plan_for(n)
    store = RunStore(scratch("store"))
    store.save({"goal": plan["goal"], "workflow": "blog", "options": OPTIONS, "status": "running",
                "inputs": {"inputs": [], "data": None}})
    store(Event("plan", {"plan": plan, "round": 0}))
    store.flush()
    events = []
    for t in plan["tasks"]:
        result = {"id": t["id"], "title": t["title"], "role": t["role"], "state": "done",
                  "output": f"## {t['title']}\n\n" + "Some section text. " * 40, "data": None, "error": None,
                  "prompt_tokens": 900, "completion_tokens": 300, "revision": 0, "worker": 1,
                  "started": time.time(), "finished": time.time(), "elapsed_s": 0.01, "artifacts": {}}
        events.append(Event("task", {"id": t["id"], "state": "done", "result": result}))
    cpu0, started = time.thread_time(), time.perf_counter()
    for event in events:
        store(Event("llm", {"calls": 1, "prompt_tokens": 900}))
        store(event)
    handed = time.thread_time() - cpu0
    store.flush()
    drained = time.perf_counter() - started
    store.save({"status": "ok"})  # the final run.json: O(n) once per run
    final = time.perf_counter() - started - drained
    store.close()
    return handed * 1000 / n, drained * 1000 / n, final * 1000


def whole_run(n: int) -> float:
    """Wall seconds of one offline run of an n-task preset plan, run store included."""
    from utils.model.client import LLMSettings, make_model

    llm = make_model(LLMSettings(provider="offline", cache=False))
    return run_with_store(plan_for(n), llm, max_workers=OPTIONS["max_workers"], max_tasks=OPTIONS["max_tasks"])


def main() -> None:
    quick = "--quick" in sys.argv
    header("Run store: cost per task and whole offline runs")
    store_only(20)  # warm up imports and first-use costs
    rows, base = [], None
    for n in STORE_SIZES:
        on_loop, to_disk, final = min(store_only(n) for _ in range(3))
        base = base or (on_loop, to_disk)
        rows.append([n, f"{on_loop:.4f}", f"{on_loop / base[0]:.2f}", f"{to_disk:.3f}", f"{to_disk / base[1]:.2f}",
                     f"{final:.1f}"])
    table(["tasks", "CPU ms / task on loop", "vs 50", "ms / task to disk", "vs 50", "final run.json ms"], rows,
          title="1. store only: one journal line per task, handed to the writer thread (best of 3)")

    sizes = RUN_SIZES[:1] if quick else RUN_SIZES
    whole_run(50)
    rows, base = [], None
    for n in sizes:
        wall = min(whole_run(n) for _ in range(2))
        base = base or wall / n
        rows.append([n, f"{wall:.1f}", f"{wall * 1000 / n:.2f}", f"{(wall / n) / base:.2f}"])
    table(["tasks", "wall s", "ms / task", "ms / task vs 1000"], rows,
          title="2. whole offline runs (preset random DAG, 8 workers, review + cohesion, run store on; best of 2)")


if __name__ == "__main__":
    main_guard(main)
