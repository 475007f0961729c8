"""Start-up time: `python main.py --help` and `--version`, wall time of a subprocess, median of 5.

A bare `python -c pass` is measured the same way, so the interpreter's own start-up can be told
apart from the app's.

    python bench/bench_startup.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, RunFailed, header, main_guard, median, table, verdict  # noqa: E402

RUNS = 5
TARGET_S = 0.3


def timed(args: list[str]) -> float:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RunFailed(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    return wall


def main() -> None:
    header("Start-up time")
    cases = [("python -c pass (interpreter only)", ["-c", "pass"], None),
             ("python main.py --help", ["main.py", "--help"], TARGET_S),
             ("python main.py --version", ["main.py", "--version"], TARGET_S)]
    rows = []
    for label, args, target in cases:
        timed(args)  # warm the OS file cache
        walls = sorted(timed(args) for _ in range(RUNS))
        rows.append([label, f"{median(walls) * 1000:.0f}", f"{walls[0] * 1000:.0f}", f"{walls[-1] * 1000:.0f}",
                     verdict(median(walls) < target) if target else ""])
    table(["command", f"median ms (of {RUNS})", "min ms", "max ms", f"< {TARGET_S * 1000:.0f} ms"], rows)


if __name__ == "__main__":
    main_guard(main)
