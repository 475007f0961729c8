"""Response cache: the same run twice with the same ORCH_HOME (cache on, the default).

Both runs go through the CLI as a user would start them (`python main.py --example blog --json`,
OPENAI_BASE_URL at the fake server): the orchestrator plans (one call), 7 tasks (analysis + 6
sections, each on the analysis and the previous section) take 100 ms a call, then one review and
one cohesion pass. The second run should be served from $ORCH_HOME/cache: no model calls.

    python bench/bench_cache.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, RunFailed, blog, header, main_guard, open_server, scratch, table, verdict  # noqa: E402

LATENCY_S = 0.1


def cli_run(base_url: str, home: Path, out: Path) -> tuple[float, dict]:
    env = {**os.environ, "ORCH_HOME": str(home), "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench",
           "ORCH_MODEL": "fake-model", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "main.py", "--example", "blog", "--json", "--output-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RunFailed(f"main.py exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
    summary = json.loads(proc.stdout)
    if summary.get("status") != "ok" or any(t["state"] != "done" for t in summary["tasks"]):
        raise RunFailed(f"run not ok: {summary.get('status')} {summary.get('error')}")
    return wall, summary


def main() -> None:
    header("Response cache: an identical second run")
    shape = blog(6, LATENCY_S)
    home, out = scratch("home"), scratch("runs")
    rows = []
    with open_server() as server:
        for label in ("first run (cold cache)", "second run (same ORCH_HOME)"):
            server.script(shape.tasks, shape.latency, plan=True)  # same answers; resets the record
            wall, summary = cli_run(server.base_url, home, out)
            calls = len(server.records())
            rows.append([label, calls, summary["calls"], summary["cached"], f"{wall:.2f}"])
    entries = sum(1 for _ in (home / "cache").rglob("*.json"))
    table(["run", "requests at the server", "model calls (client)", "served from cache", "wall s (CLI)"], rows)
    print(f"\ncache entries after both runs: {entries}; second run's model calls: {rows[1][1]} "
          f"(target 0: {verdict(rows[1][1] == 0)}); second run / first run wall: "
          f"{float(rows[1][4]) / float(rows[0][4]):.2f}")


if __name__ == "__main__":
    main_guard(main)
