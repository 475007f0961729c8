"""The test suite's own cost: wall time of the README's test command, and where the seconds go by tier.

Runs `python -m pytest` (pytest.ini: two worker processes) once with the `bench/suite_clock.py`
plugin, which records each test's wall and CPU seconds and its tier:

- unit: pure functions and single nodes;  - graph: a whole graph in process (`flows.build_flow`);
- cli: `main.main` in process (tests/helpers.py `run_main`);  - subprocess: a real `python main.py`
  (signals, kill -9, a closed pipe, a terminal);  - integration: a local Ray, a LiteLLM proxy, Chromium.

On a shared 2-core host the wall time depends on what else runs: the load average before and after is
printed with it, and the CPU seconds (which the load barely changes) are the figure to compare across
runs. Set ORCH_TEST_LITELLM (as .ci/run does) or the gateway tests skip. `--compare FILE.jsonl` adds a
column from an earlier run's per-test records (`--keep FILE.jsonl` writes them).

    python bench/bench_suite.py [--keep now.jsonl] [--compare before.jsonl] [-- extra pytest args]
    python bench/bench_suite.py --records now.jsonl [--compare before.jsonl]     # the tables again
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIERS = ("unit", "graph", "cli", "subprocess", "integration")


def run_suite(extra: list[str]) -> tuple[list[dict], float, float, str]:
    """(per-test records, wall s, CPU s of the whole run, pytest's failures and last line)."""
    with tempfile.TemporaryDirectory(prefix="suite-clock-") as tmp:
        env = {**os.environ, "SUITE_CLOCK_OUT": str(Path(tmp) / "clock"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "suite_clock",
                               *extra], cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        records = [json.loads(line) for f in sorted(Path(tmp).glob("clock.*"))
                   for line in f.read_text(encoding="utf-8").splitlines()]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = done.stdout.strip().splitlines() or ["(no output)"]
    said = [line for line in lines if line.startswith(("FAILED", "ERROR"))] + lines[-1:]
    return records, wall, cpu, "\n  ".join(said)


def by_tier(records: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"n": 0, "cpu": 0.0, "wall": 0.0})
    for r in records:
        row = out[r["tier"]]
        row["n"] += 1
        row["cpu"] += r["cpu"]
        row["wall"] += r["wall"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the per-test records here (JSON lines)")
    parser.add_argument("--compare", type=Path, help="an earlier --keep file: its tier sums side by side")
    parser.add_argument("--records", type=Path, help="print the tables of a --keep file; run nothing")
    parser.add_argument("extra", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    if args.records:
        records = [json.loads(line) for line in args.records.read_text(encoding="utf-8").splitlines()]
    else:
        load_before = os.getloadavg()
        records, wall, cpu, last = run_suite(args.extra)
        load_after = os.getloadavg()
        if args.keep:
            args.keep.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        print(f"pytest: {last}")
        print(f"suite wall time: {wall:.1f} s; CPU of all its processes: {cpu:.1f} s (2 cores: >= {cpu / 2:.0f} s wall)")
        print(f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
              f"after: {', '.join(f'{x:.2f}' for x in load_after)}")
    now = by_tier(records)
    earlier: dict = {}
    if args.compare:
        plain = lambda nodeid: re.sub(r"@[\w-]+$", "", nodeid)  # noqa: E731 - xdist's "@group" suffix
        tiers = {plain(r["id"]): r["tier"] for r in records}
        old = [json.loads(line) for line in args.compare.read_text(encoding="utf-8").splitlines()]
        earlier = by_tier([{**r, "tier": tiers.get(plain(r["id"]), r.get("tier", "unit"))} for r in old])
    head = "| tier | tests | wall s (sum) | CPU s (sum) |" + (" before: wall s | before: CPU s |" if earlier else "")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for tier in (*TIERS, "all"):
        rows = list(now.values()) if tier == "all" else [now.get(tier, {"n": 0, "cpu": 0.0, "wall": 0.0})]
        n, c, w = sum(r["n"] for r in rows), sum(r["cpu"] for r in rows), sum(r["wall"] for r in rows)
        line = f"| {tier} | {n:.0f} | {w:.1f} | {c:.1f} |"
        if earlier:
            old_rows = list(earlier.values()) if tier == "all" else [earlier.get(tier, {"cpu": 0.0, "wall": 0.0})]
            line += f" {sum(r['wall'] for r in old_rows):.1f} | {sum(r['cpu'] for r in old_rows):.1f} |"
        print(line)
    slowest = sorted(records, key=lambda r: r["wall"], reverse=True)[:10]
    print("slowest tests (wall s, CPU s, tier):")
    for r in slowest:
        print(f"  {r['wall']:7.1f} {r['cpu']:7.1f}  {r['tier']:<11} {r['id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
