"""How the report and project tools grow with their input (issue 15: they were quadratic).

Prints seconds per size and the ratio to the previous size: linear work doubles when the input
doubles (ratio ~2); the old quadratic code gave ~4 (1 MB single-spaced text 31 s, 2 MB 128 s;
5,000 work items 201 s). Measures; asserts nothing.

    python bench/bench_tools_scaling.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.tools import ToolInput, run_tool  # noqa: E402
from utils.tools.source_facts import text_facts  # noqa: E402


def text_of(mb: float) -> str:
    """Single-spaced prose (one paragraph) with a number in most sentences but few units: every line
    is scanned, and the 200-fact cap is not what keeps it fast."""
    line = "The pipeline ran and step 7 was slow, said the team in review no 12."
    n = int(mb * 1_000_000 / (len(line) + 1))
    return "\n".join(f"Run {i}: {line}" for i in range(n))


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    print("report: fact extraction from one single-spaced paragraph")
    prev = None
    for mb in (0.5, 1, 2, 4):
        text = text_of(mb)
        s = timed(lambda: text_facts("big.txt", text))
        print(f"  {mb:>4} MB  {s:7.2f} s" + (f"  x{s / prev:.1f}" if prev else ""))
        prev = s
    print("project: schedule (CPM, allocation, table, Mermaid and PNG Gantt)")
    prev = None
    for n in (1250, 2500, 5000, 10000):
        items = [{"id": f"w{i}", "name": f"Work item number {i}", "estimate_days": 1 + i % 4,
                  "depends_on": [f"w{i - 1}"] if i % 3 else [], "role": ("dev", "qa", "ops")[i % 3]} for i in range(n)]
        inp = ToolInput(task={"id": "s", "title": "Schedule"}, data_path=None, input_paths=[], deps={},
                        params={"work_items": items, "team": {"dev": 4, "qa": 2, "ops": 2}, "start": "2026-01-05"},
                        goal="bench")
        s = timed(lambda: run_tool("schedule", inp))
        print(f"  {n:>6} items  {s:7.2f} s" + (f"  x{s / prev:.1f}" if prev else ""))
        prev = s


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
