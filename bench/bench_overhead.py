"""Engine overhead: milliseconds of orchestration per task and peak memory, at zero model latency.

Plans of 250, 500 and 1,000 tasks (random DAG, each task depending on up to 3 of the 20 before it,
fixed seed) run through the whole graph (plan preset, workers, one review, one cohesion pass) with
--max-workers 64:

- in-process: a stub LLM object with LLMClient.complete's signature that returns a Completion at
  once - the engine alone (scheduling, prompt assembly, events, nodes);
- in-process + run store: the same, with run.json saved after every task as the CLI does
  (utils.app.run.execute with a RunStore listening to the events);
- HTTP: the real LLMClient against the fake server (in a child process, so its memory and threads
  are not counted) - adds the openai SDK and HTTP per call.

ms per task = wall of the whole run / tasks. Peak memory: tracemalloc's peak during a separate run
(tracemalloc slows Python down, so timings come from runs without it).

    python bench/bench_overhead.py
"""
from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (StubLLM, header, main_guard, make_llm, make_shared, open_server,  # noqa: E402
                    random_dag, run_graph, run_with_store, table, verdict)

SIZES = (250, 500, 1000)
WORKERS = 64
TARGET_MS = 2.0


def shape_for(n: int):
    return random_dag(n, p=0.15, max_deps=3, window=20, latencies=(0.0,), name=f"random {n}")


def run_stub(shape) -> float:
    return run_graph(make_shared(shape.plan(), StubLLM(), max_workers=WORKERS))


def run_stub_store(shape) -> float:
    return run_with_store(shape.plan(), StubLLM(), max_workers=WORKERS)


def run_http(shape, server) -> float:
    server.script(shape.tasks, shape.latency)
    return run_graph(make_shared(shape.plan(), make_llm(server.base_url), max_workers=WORKERS))


def peak_mb(fn) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    header("Engine overhead at zero model latency")
    print(f"whole graph per run (plan preset, workers, review, cohesion), --max-workers {WORKERS}, "
          "random DAG (up to 3 deps among the 20 previous tasks)")
    # (mode, run function, sizes, measure memory): run.json is re-serialised whole after every task,
    # so the run-store mode is quadratic and too slow under tracemalloc to size at 1,000 here.
    rows = []
    with open_server() as server:
        modes = [("in-process stub", run_stub, SIZES, True),
                 ("in-process stub + run store", run_stub_store, SIZES[:2], False),
                 ("HTTP (fake server)", lambda shape: run_http(shape, server), SIZES, True)]
        for _, fn, _, _ in modes:  # warm up imports and first-use costs
            fn(shape_for(20))
        for mode, fn, sizes, with_memory in modes:
            base = None
            for n in sizes:
                shape = shape_for(n)
                wall = fn(shape)
                mem = peak_mb(lambda: fn(shape)) if with_memory else None
                base = base or (wall / n, mem)
                rows.append([mode, n, f"{wall:.2f}", f"{wall * 1000 / n:.2f}", f"{(wall / n) / base[0]:.2f}",
                             "-" if mem is None else f"{mem:.1f}", "-" if mem is None else f"{mem / n * 1024:.1f}",
                             "-" if mem is None else f"{mem / base[1]:.2f} (tasks x{n // sizes[0]})",
                             verdict(wall * 1000 / n < TARGET_MS) if n == max(sizes) else ""])
    table(["mode", "tasks", "wall s", "ms / task", "ms / task vs smallest", "peak MB", "peak KB / task",
           "peak vs smallest", f"< {TARGET_MS} ms / task"], rows)


if __name__ == "__main__":
    main_guard(main)
