"""Start-up: `--help`, `--version`, and the time from process start to the first model request.

- `python main.py --help` / `--version`: wall time of a subprocess, median of 5 (goal: --help < 100 ms).
  A bare `python -c pass` is measured the same way, so the interpreter's own start-up shows apart.
- First model request: `python main.py --example blog "..."` against the fake server (in a child
  process); from just before the process is spawned to the planning request's arrival in the
  server's record (both `time.monotonic()`, one clock for all processes). Goal: <= 0.8 s.
- What a run imports before its first request: the modules the CLI loads to get there (main, the
  shell, flows, nodes), checked in a fresh interpreter with `-X importtime`: the cumulative import
  time of the heavy packages, and whether numpy / matplotlib are among them (they should load only
  when a tool role runs, or when the run's timeline.png is drawn at the end).

    python bench/bench_startup.py
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (ROOT, RunFailed, chain, header, main_guard, median, open_server, scratch, table,  # noqa: E402
                    verdict)

RUNS = 5
TARGET_HELP_S = 0.1
TARGET_FIRST_REQUEST_S = 0.8
HEAVY = ("openai", "httpx", "pydantic", "yaml", "rich", "numpy", "matplotlib", "pandas", "duckdb")
RUN_IMPORTS = "import main, flows, nodes, utils.app.cli, utils.app.run"


def timed(args: list[str]) -> float:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RunFailed(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    return wall


def first_request(server, home: Path) -> float:
    """Seconds from spawning `main.py --example blog` to its first request reaching the server."""
    shape = chain(2)
    server.script(shape.tasks, {t: 0.0 for t, _, _ in shape.tasks}, plan=True)
    env = {**os.environ, "ORCH_HOME": str(home), "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench",
           "ORCH_MODEL": "fake-model", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "main.py", "--example", "blog", "Start-up benchmark", "--no-cache",
                           "--max-revisions", "0", "--json", "--output-dir", str(scratch("runs"))],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunFailed(f"main.py exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return min(r.t_in for r in server.records()) - started


def import_profile() -> dict[str, float]:
    """Cumulative import seconds of each heavy top-level package the run path loads."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", RUN_IMPORTS], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunFailed(f"importing the run path failed: {proc.stderr.strip()[-300:]}")
    found: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)$", line)
        if m and m.group(3) in HEAVY and m.group(3) not in found:
            found[m.group(3)] = int(m.group(1)) / 1e6
    return found


def main() -> None:
    header("Start-up time")
    cases = [("python -c pass (interpreter only)", ["-c", "pass"], None),
             ("python main.py --help", ["main.py", "--help"], TARGET_HELP_S),
             ("python main.py --version", ["main.py", "--version"], None)]
    rows = []
    for label, args, target in cases:
        timed(args)  # warm the OS file cache
        walls = sorted(timed(args) for _ in range(RUNS))
        rows.append([label, f"{median(walls) * 1000:.0f}", f"{walls[0] * 1000:.0f}", f"{walls[-1] * 1000:.0f}",
                     f"< {target * 1000:.0f} ms: {verdict(median(walls) < target)}" if target else ""])
    table(["command", f"median ms (of {RUNS})", "min ms", "max ms", "goal"], rows)

    home = scratch("home")
    with open_server() as server:
        first_request(server, home)  # warm the OS file cache
        firsts = sorted(first_request(server, home) for _ in range(3))
    print(f"\nprocess start -> first model request (main.py --example blog, fake server): median "
          f"{median(firsts) * 1000:.0f} ms, min {firsts[0] * 1000:.0f} ms (of 3; goal <= "
          f"{TARGET_FIRST_REQUEST_S * 1000:.0f} ms: {verdict(median(firsts) <= TARGET_FIRST_REQUEST_S)})")

    profile = import_profile()
    rows = [[name, f"{profile[name] * 1000:.0f}" if name in profile else "not imported"] for name in HEAVY]
    table(["package", "cumulative import ms"], rows,
          title=f"Imported on the way to the first request (`python -X importtime -c \"{RUN_IMPORTS}\"`)")
    eager = [name for name in ("numpy", "matplotlib", "pandas") if name in profile]
    print(f"\nnumpy / matplotlib kept out until a tool role runs: {verdict(not eager)}"
          + (f" (imported eagerly: {', '.join(eager)})" if eager else ""))


if __name__ == "__main__":
    main_guard(main)
