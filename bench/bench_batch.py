"""Batches of goals (`--batch`, issue 25): goals per minute in one process and on a local Ray, the
fake server's peak concurrency against its cap, and the driver's memory.

Two loads, each run through the CLI (`main.py --batch`, a child process):
- N offline blog goals (no model: the app's own CPU per run, including its timeline.png);
- M blog goals against the fake server (`fakes/fake_faults.CappedServer`: 200 ms a call, 16 calls
  at once, a 429 above that), the batch's one call limit set to the cap (max_concurrency 16).
- K offline analyses, each of its own generated CSV of S MB (bench/bench_analysis_scale.make_csv:
  ten columns, a known linear target): CPU-bound tool work (DuckDB, statistics, charts), where one
  process is held back by the GIL and Ray's processes use every core (the ideal is 2x on 2 CPUs).
Ray runs on a local Ray the batch starts with this machine's CPUs (2 here), one CPU per goal.

    python bench/bench_batch.py                  # 200 offline and 50 server goals, 16 analyses of 30 MB
    python bench/bench_batch.py --offline 40 --server 20 --analyses 4 --csv-mb 1
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.dont_write_bytecode = True

from fakes.fake_faults import CappedServer  # noqa: E402
from fakes.fake_llm import Reply  # noqa: E402


class ApprovingServer(CappedServer):
    """Capped, literal (a random schema-valid value per structured request), but reviews approve:
    a random review score would fail runs on the minimum score, which is not what this measures."""

    def _next_reply(self, request):
        name = ((request.response_format or {}).get("json_schema") or {}).get("name")
        if name == "ReviewResult":
            reply = super()._next_reply(request)  # keeps the cap and the latency
            if reply.status == 200:
                reply.text, reply.json = json.dumps({"score": 8, "summary": "fine", "tasks": []}), None
            return reply
        return super()._next_reply(request)


def goals_file(folder: Path, n: int) -> Path:
    path = folder / "goals.jsonl"
    path.write_text("".join(json.dumps({"goal": f"A short post about topic number {i}", "id": f"g{i:03d}",
                                        "example": "blog"}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def analysis_goals(folder: Path, n: int, mb: float) -> Path:
    """n analysis goals, each on its own CSV of about `mb` MB (different row counts: different files)."""
    from bench_analysis_scale import BYTES_PER_ROW, make_csv
    lines = []
    for i in range(n):
        data = folder / f"sales{i:02d}.csv"
        make_csv(data, int(mb * 1e6 / BYTES_PER_ROW) + i)
        lines.append(json.dumps({"goal": f"What drives sales in file {i}", "id": f"a{i:02d}", "example": "analysis",
                                 "data": str(data), "target": "sales"}) + "\n")
    path = folder / "goals.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), 0 where /proc cannot say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _tree_cpu(root: int, seen: dict[tuple[int, str], float]) -> None:
    """Add the CPU seconds (user + system) of `root` and every process
    below it (a local Ray's raylet and workers are the driver's descendants) to `seen`, keyed by
    (pid, start time) so a reused pid is another process; a process's last sample stands for it."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(entry.name)] = int(fields[1])
        stats[int(entry.name)] = fields
    for pid, fields in stats.items():
        p = pid
        while p not in (0, 1, root) and p in parent:
            p = parent[p]
        if p == root:  # fields[11:13]: utime, stime (not the reaped children's: counted themselves)
            seen[(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / tick


def run_batch(folder: Path, goals: Path, executor: str, env: dict, *extra: str) -> dict:
    out = folder / f"out-{executor}"
    cmd = [sys.executable, str(ROOT / "main.py"), "--batch", str(goals), "--output-dir", str(out), "--json",
           "--executor", executor, "--max-revisions", "0", "--no-cache", *extra]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss, reader = 0.0, threading.Thread(target=lambda: results.append(proc.communicate()), daemon=True)
    results: list = []
    reader.start()
    cpu: dict[tuple[int, str], float] = {}
    while proc.poll() is None:
        rss = max(rss, peak_rss_mb(proc.pid))
        _tree_cpu(proc.pid, cpu)
        time.sleep(0.2)
    reader.join()
    wall = time.monotonic() - started
    stdout, stderr = results[0]
    done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        sys.exit(f"batch failed (exit {done.returncode}): {done.stderr[-2000:]}")
    ok = doc["counts"].get("ok", 0)
    return {"goals": len(doc["goals"]), "ok": ok, "wall_s": wall, "per_min": 60 * ok / wall,
            "peak_limit": doc.get("peak_calls_in_flight"), "calls": sum(g["calls"] for g in doc["goals"]),
            "driver_rss_mb": rss, "code": done.returncode, "cpu_s": sum(cpu.values())}


def busy(r: dict) -> str:
    """CPU seconds of the batch's processes, and how many cores they kept busy on average."""
    return f"{r['cpu_s']:.0f} s ({r['cpu_s'] / r['wall_s']:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--offline", type=int, default=200)
    ap.add_argument("--server", type=int, default=50)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--analyses", type=int, default=16)
    ap.add_argument("--csv-mb", type=float, default=30.0)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    try:
        import ray  # noqa: F401
        executors = ["local"] if args.no_ray else ["local", "ray"]
    except ImportError:
        executors = ["local"]
    home = Path(tempfile.mkdtemp(prefix="orch-bench-batch-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ORCH_"))}
    base.update(ORCH_HOME=str(home / "home"), PYTHONDONTWRITEBYTECODE="1", RAY_AUTH_MODE="disabled")
    print(f"CPUs: {os.cpu_count()} · python {sys.version.split()[0]} · batch workers (local) {args.workers}\n")
    print("| load | executor | goals ok | wall | CPU s (cores busy) | goals/min | model calls "
          "| server peak in flight (cap 16) | 429s | driver peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    if args.offline:
        folder = Path(tempfile.mkdtemp(dir=home))
        goals = goals_file(folder, args.offline)
        for ex in executors:
            r = run_batch(folder, goals, ex, {**base, "ORCH_PROVIDER": "offline"}, "--batch-workers",
                          str(args.workers))
            print(f"| {args.offline} offline blog | {ex} | {r['ok']}/{r['goals']} | {r['wall_s']:.1f} s | {busy(r)} | "
                  f"{r['per_min']:.0f} | - | - | - | {r['driver_rss_mb']:.0f} MB |", flush=True)
    if args.server:
        folder = Path(tempfile.mkdtemp(dir=home))
        goals = goals_file(folder, args.server)
        config = folder / "config.yaml"
        config.write_text("max_concurrency: 16\n", encoding="utf-8")
        for ex in executors:
            with ApprovingServer(capacity=16, latency=0.2, schema_mode="literal", seed=1) as server:
                env = {**base, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench"}
                r = run_batch(folder, goals, ex, env, "--config", str(config), "--batch-workers", "8",
                              "--max-workers", "4")
                print(f"| {args.server} blog, fake server 200 ms | {ex} | {r['ok']}/{r['goals']} | {r['wall_s']:.1f} s "
                      f"| {busy(r)} | {r['per_min']:.0f} | {len(server.requests)} | {server.max_in_flight} | {server.rejected} "
                      f"| {r['driver_rss_mb']:.0f} MB |", flush=True)
    if args.analyses:
        folder = Path(tempfile.mkdtemp(dir=home))
        goals = analysis_goals(folder, args.analyses, args.csv_mb)
        walls = {}
        for ex in executors:
            r = run_batch(folder, goals, ex, {**base, "ORCH_PROVIDER": "offline"}, "--batch-workers", "2")
            walls[ex] = r["wall_s"]
            speedup = f" · {walls['local'] / r['wall_s']:.2f}x one process" if ex != "local" and "local" in walls else ""
            print(f"| {args.analyses} offline analyses of {args.csv_mb:g} MB CSVs | {ex} | {r['ok']}/{r['goals']} | "
                  f"{r['wall_s']:.1f} s{speedup} | {busy(r)} | {r['per_min']:.1f} | - | - | - | {r['driver_rss_mb']:.0f} MB |",
                  flush=True)


if __name__ == "__main__":
    main()
