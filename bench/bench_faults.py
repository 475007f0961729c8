"""Faults, default settings: a server that takes only 2 calls at once, and a 30 s outage.

Issue 15's cases through the real graph (`flows.build_flow`, preset plans, no config change):
- 42 independent tasks against a server that answers 429 above 2 concurrent requests, 1 s each:
  the run-wide limit adapts (a 429 halves it, successes grow it back), jittered waits spread the
  retries, so every task ends done. Lower bound: 42 x 1 s / 2 = 21 s.
- 8 tasks while the server is down for 30 s (503s and dropped connections): calls keep retrying
  until their 120 s deadline, so no task is lost.

    python bench/bench_faults.py
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import chain, fanout, header, main_guard, make_shared, run_graph, scripted, table  # noqa: E402
from fakes.fake_faults import CappedServer, OutageServer  # noqa: E402


def client(base_url: str):
    from utils.events import Collector
    from utils.model.client import LLMClient
    from utils.model.settings import LLMSettings

    events = Collector()  # default settings: only where the server is and no cache
    return LLMClient(LLMSettings(provider="openai", model="fake-model", base_url=base_url, api_key="sk-bench",
                                 cache=False), emit=events), events


def capped(workers: int) -> list:
    shape = fanout(42)
    with CappedServer(capacity=2, latency=1.0) as server:
        server.responder = scripted(shape.tasks, {})
        llm, events = client(server.base_url)
        shared = make_shared(shape.plan(), llm, emit=events, max_workers=workers)
        wall = run_graph(shared)  # raises unless every task is done
    return [f"42 tasks, server takes 2 at once, 1 s each, {workers} workers", f"{_done(shared)}/42", server.rejected,
            llm.totals.retries, round(llm.limit.lowest, 2), round(wall, 1), 21.0]


def outage() -> list:
    shape = chain(8)  # 0.8 s of work in a row: the outage (from 0.3 s) lands in the middle of the run
    with OutageServer() as server:
        server.responder = scripted(shape.tasks, {t[0]: 0.1 for t in shape.tasks})
        llm, events = client(server.base_url)
        threading.Timer(0.3, server.outage, args=(30.0,)).start()
        shared = make_shared(shape.plan(), llm, emit=events, max_workers=8)
        wall = run_graph(shared)
    return ["chain of 8 tasks, server down 30 s from 0.3 s (503s, dropped connections)", f"{_done(shared)}/8",
            server.failed, llm.totals.retries, "", round(wall, 1), 30.8]


def _done(shared: dict) -> int:
    return sum(1 for r in shared["results"].values() if r.get("state") == "done")


def main() -> None:
    header("Faults with default settings")
    rows = [capped(4), capped(16), outage()]
    table(["case", "tasks done", "429s / failed answers", "retries", "lowest limit", "wall (s)", "lower bound (s)"],
          rows)


if __name__ == "__main__":
    main_guard(main)
