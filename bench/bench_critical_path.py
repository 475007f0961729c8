"""Critical-path efficiency of the worker phase: measured wall time / its lower bound.

For each synthetic plan the real graph (flows.build_flow) runs with the plan preset in
shared["plan"] (no planning call), max_revisions 0, and worker replies that take each task's latency
on the fake server. The worker phase is read from the server's record: first worker request in to
last worker answer out. Lower bound: the critical path's total latency, and with a worker limit w,
max(critical path, total work / w). Also shown:

- ideal: the same list schedule simulated with zero overhead (the bound is not always reachable
  with w slots, e.g. a diamond 1-8-1 on 4 workers needs 100 + 200 + 100 ms, not 300);
- speedup: total work (the least that running the tasks one by one costs) / wall;
- the same plans with an in-process stub LLM that sleeps each task's latency (no SDK, no HTTP):
  the engine alone, and its hand-over time (a dependency's answer back -> its dependent's model call
  starting). The gap between the two tables is the cost of the SDK, HTTP and the fake server.

The fake server runs in a child process (BENCH_SERVER=inprocess to share this one, as the tests do).

    python bench/bench_critical_path.py          # BENCH_REPEAT=3 runs per cell, median reported
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (StubLLM, critical_path_shapes, header, main_guard, make_llm, make_shared,  # noqa: E402
                    median, open_server, run_graph, simulate, table, verdict, worker_phase)

TARGET = 1.10
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))


def measure(server, shape, workers: int) -> float:
    """Median worker-phase wall over REPEAT runs through the fake server."""
    walls = []
    for _ in range(REPEAT):
        server.script(shape.tasks, shape.latency)
        run_graph(make_shared(shape.plan(), make_llm(server.base_url), max_workers=workers))
        walls.append(worker_phase(server.records()))
    return median(walls)


def measure_stub(shape, workers: int) -> tuple[float, list[float]]:
    """Worker-phase wall with the in-process stub (one run), and its hand-over times."""
    llm = StubLLM(shape.latency)
    run_graph(make_shared(shape.plan(), llm, max_workers=workers))
    return llm.phase(), llm.handovers(shape.tasks)


def row(shape, label: str, w: int, wall: float) -> list:
    bound, ideal = shape.bound(w), simulate(shape, w)
    return [shape.name, shape.n, label, round(shape.critical_path() * 1000), round(shape.total_work() * 1000),
            round(bound * 1000), round(ideal * 1000), round(wall * 1000), f"{wall / bound:.3f}",
            f"{wall / ideal:.3f}", f"{shape.total_work() / wall:.1f}x", verdict(wall / ideal <= TARGET)]


HEADERS = ["plan", "tasks", "workers", "critical path ms", "total work ms", "bound ms", "ideal ms", "wall ms",
           "wall / bound", "wall / ideal", "speedup vs one by one", f"wall / ideal <= {TARGET}"]
# The target is judged against `ideal`: the same plan scheduled with zero overhead. It equals the
# bound max(critical path, work / w) whenever that bound is reachable; where it is larger (a
# diamond's 8 middle tasks on 4 workers need two rounds), no schedule can reach the bound.


def main() -> None:
    header("Critical-path efficiency (worker phase vs its lower bound)")
    print("fixed-latency plans at 100 ms a call, random DAGs mixed 50/100/150/200 ms a call; "
          "strategy dependency, max_revisions 0")
    shapes = critical_path_shapes()
    rows, worst = [], 0.0
    with open_server() as server:
        measure(server, shapes[0], shapes[0].n)  # first-use costs (imports, SDK set-up) are not the engine's
        for shape in shapes:
            for label, w in (("unlimited", shape.n), ("4", 4)):
                wall = measure(server, shape, w)
                worst = max(worst, wall / simulate(shape, w))
                rows.append(row(shape, label, w, wall))
    table(HEADERS, rows, title=f"Through the fake server (HTTP), median of {REPEAT} runs")
    print(f"\nworst wall / ideal through HTTP: {worst:.3f} (target <= {TARGET}: {verdict(worst <= TARGET)})")

    rows, worst_stub, hand = [], 0.0, []
    for shape in shapes:
        for label, w in (("unlimited", shape.n), ("4", 4)):
            wall, handovers = measure_stub(shape, w)
            if label == "unlimited":
                hand += handovers
            worst_stub = max(worst_stub, wall / simulate(shape, w))
            rows.append(row(shape, label, w, wall))
    table(HEADERS, rows, title="Engine alone: in-process stub LLM sleeping each task's latency, one run")
    hand.sort()
    print(f"\nworst wall / ideal, engine alone: {worst_stub:.3f} (target <= {TARGET}: {verdict(worst_stub <= TARGET)})")
    print(f"engine hand-over (dependency answered -> dependent's model call starts), {len(hand)} hand-overs: "
          f"median {median(hand) * 1000:.2f} ms, p95 {hand[int(len(hand) * 0.95)] * 1000:.2f} ms, "
          f"max {hand[-1] * 1000:.2f} ms")


if __name__ == "__main__":
    main_guard(main)
