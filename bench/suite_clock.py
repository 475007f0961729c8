"""pytest plugin for bench/bench_suite.py: each test's wall and CPU seconds and its tier, one JSON line each.

CPU is this test process's (all threads, so the fake servers' too) plus the children it waited for
(CLI subprocesses, the LiteLLM proxy at its teardown); a local Ray's workers are not our children, so
the Ray tests' CPU is undercounted and their wall time is the figure to read. The tier is what the test
did, not where its file sits: `integration` marker, a `main.py` subprocess started, `main.main`
called in process, a whole graph built (`flows.build_flow`), else unit.
Loaded with `-p suite_clock` and `bench/` on PYTHONPATH; writes to $SUITE_CLOCK_OUT.<worker>.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from typing import Any

import pytest

_seen = {"subprocess": 0, "cli": 0, "graph": 0}
_out: Any = None


def _count(kind: str, fn: Any) -> Any:
    def counted(*args: Any, **kwargs: Any) -> Any:
        _seen[kind] += 1
        return fn(*args, **kwargs)
    counted.__wrapped__ = fn  # type: ignore[attr-defined]
    return counted


def _popen_counter(init: Any) -> Any:
    def counted(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        if "main.py" in " ".join(map(str, args if isinstance(args, (list, tuple)) else [args])):
            _seen["subprocess"] += 1
        init(self, args, *rest, **kwargs)
    return counted


def pytest_configure(config: pytest.Config) -> None:
    """Wrap before the test modules import the names (they bind `build_flow` at import time)."""
    import flows
    import main

    subprocess.Popen.__init__ = _popen_counter(subprocess.Popen.__init__)  # type: ignore[method-assign]
    main.main = _count("cli", main.main)
    flows.build_flow = _count("graph", flows.build_flow)


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    global _out
    if _out is None:
        _out = open(f"{os.environ['SUITE_CLOCK_OUT']}.{os.environ.get('PYTEST_XDIST_WORKER', 'main')}", "a",
                    encoding="utf-8")
    before = dict(_seen)
    cpu, wall = _cpu(), time.perf_counter()
    yield
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    did = {k: _seen[k] - before[k] for k in _seen}
    tier = ("integration" if item.get_closest_marker("integration") else "subprocess" if did["subprocess"]
            else "cli" if did["cli"] else "graph" if did["graph"] else "unit")
    _out.write(json.dumps({"id": item.nodeid, "tier": tier, "cpu": round(cpu, 3), "wall": round(wall, 3)}) + "\n")
    _out.flush()
