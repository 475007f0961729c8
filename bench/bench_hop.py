"""Per-hop overhead: what each dependency hop costs over the model's latency, and where it goes.

A chain of 20 tasks, 50 ms a call on the fake server (in a child process), run six ways:

- bare socket, bare httpx, bare SDK: the same 20 requests in a row with no app at all, over a raw
  asyncio socket, over `httpx.AsyncClient` and over the `openai` SDK as the app calls it (retries
  off, the body read raw): the floors this machine, the Python fake server, the HTTP library and the
  SDK set before the app spends anything; and over aiohttp when it is installed (not a requirement:
  the alternative weighed, with its import time);
- API: the graph on a shared store (flows.build_flow, plan preset), events to nowhere;
- API + run store: utils.app.run.execute with a RunStore listening to the events, as the CLI
  saves run.json; the time the store's event handler holds the event loop is timed per task;
- CLI --json: `python main.py --workflow-file examples/blog.yaml ... --json` (run store, no live display);
- CLI: the same without --json (run store and the plain live display, stdout a pipe).

Overhead per hop = (worker phase - sum of the tasks' latencies) / tasks, the worker phase from the
server's record (first worker request in to last worker answer out); it holds the SDK, HTTP and
server time of each call besides the engine's hand-over. Hand-over = a dependency's answer
leaving the server -> its dependent's request arriving (server record). Goals: the CLI's overhead
per hop <= 2 ms over the model's latency, hand-over p95 < 1 ms. Median of BENCH_REPEAT runs.

    python bench/bench_hop.py
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (ROOT, RunFailed, WarmFlow, chain, check_ok, handovers, header, import_ms, main_guard,  # noqa: E402
                    make_llm, make_shared, median, open_server, percentile, request_body, run_graph, scratch, table,
                    verdict, worker_phase)

N, LAT = 20, 0.05
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
TARGET_MS = 2.0


def shape():
    s = chain(N)
    return type(s)(f"chain {N} at {LAT * 1000:.0f} ms", s.tasks, {t: LAT for t, _, _ in s.tasks})


async def _bare_httpx(sh, url: str) -> None:
    import httpx

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=64)) as http:
        for tid, _, _ in sh.tasks:
            resp = await http.post(url + "/chat/completions", content=request_body(tid, 4000),
                                   headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"})
            json.loads(resp.content)


async def _bare_sdk(sh, url: str) -> None:
    """The official SDK as the app uses it (retries off), with nothing of the app around it."""
    import openai

    async with openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0) as sdk:
        for tid, _, _ in sh.tasks:
            body = json.loads(request_body(tid, 4000))
            async with sdk.chat.completions.with_streaming_response.create(**body) as resp:
                json.loads(await resp.read())


async def _bare_aiohttp(sh, url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for tid, _, _ in sh.tasks:
            async with http.post(url + "/chat/completions", data=request_body(tid, 4000),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}) as resp:
                json.loads(await resp.read())


async def _bare_socket(sh, url: str) -> None:
    """HTTP/1.1 by hand on one keep-alive connection: the least any Python client could spend."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        for tid, _, _ in sh.tasks:
            body = request_body(tid, 4000)
            writer.write(b"POST %s/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (parts.path.encode(), parts.netloc.encode(), len(body), body))
            await writer.drain()
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            json.loads(await reader.readexactly(length))
    finally:
        writer.close()


BARE = {"bare socket": _bare_socket, "bare httpx": _bare_httpx, "bare openai SDK": _bare_sdk,
        "bare aiohttp": _bare_aiohttp}


def run_bare(sh, server, mode: str) -> None:
    asyncio.run(BARE[mode](sh, server.base_url))


def run_api(sh, server) -> None:
    run_graph(make_shared(sh.plan(), make_llm(server.base_url), max_workers=4))


@contextmanager
def sdk_calls() -> Iterator[list[tuple[float, float]]]:
    """(start, end) of every request the app hands to the SDK, in this process: the transport's
    `_send` wrapped, so what lies between one reply coming back from the SDK and the next request
    going in is the app's own time on that hop (engine, nodes, LLM client, run store), measured
    directly instead of as the difference of two noisy hand-over medians."""
    from utils.model.transport import Transport

    calls: list[tuple[float, float]] = []
    original = Transport._send

    async def timed(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            calls.append((started, time.perf_counter()))

    Transport._send = timed
    try:
        yield calls
    finally:
        Transport._send = original


def own_gaps(calls: list[tuple[float, float]], hops: int) -> list[float]:
    """Seconds from each worker reply's return to the next worker request (a chain: one at a time;
    the plan is preset, so the first `hops + 1` calls are the workers', then review and cohesion)."""
    calls = sorted(calls)[:hops + 1]
    return [b[0] - a[1] for a, b in zip(calls, calls[1:])]


class TimedStore:
    """A RunStore whose event handling is timed (it runs on the event loop)."""

    def __init__(self, store) -> None:
        self.store, self.seconds, self.task_events = store, 0.0, 0

    def __call__(self, event) -> None:
        started = time.perf_counter()
        self.store(event)
        self.seconds += time.perf_counter() - started
        self.task_events += event.kind == "task" and "result" in event.data

    def __getattr__(self, name):
        return getattr(self.store, name)


def run_api_store(sh, server) -> float:
    """Returns the store's event-loop time per finished task, ms."""
    from flows import build_flow
    from utils.app.run import execute
    from utils.run.runstore import RunStore

    store = TimedStore(RunStore(scratch("run")))
    shared = make_shared(sh.plan(), make_llm(server.base_url), emit=store, max_workers=4)
    outcome = execute(shared, WarmFlow(build_flow("dependency"), shared["runtime"]["llm"]), store.store, meta={})
    check_ok(shared)
    if outcome.exit_code != 0:
        raise RunFailed(f"execute() exited {outcome.exit_code}: {outcome.error}")
    return store.seconds * 1000 / max(store.task_events, 1)


def run_cli(sh, server, home: Path, as_json: bool) -> None:
    env = {**os.environ, "ORCH_HOME": str(home), "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench",
           "ORCH_MODEL": "fake-model", "PYTHONDONTWRITEBYTECODE": "1"}
    args = [sys.executable, "main.py", "--workflow-file", str(ROOT / "examples" / "blog.yaml"), "Benchmark goal",
            "--max-tasks", str(sh.n), "--max-revisions", "0", "--no-cache", "--output-dir", str(scratch("runs"))]
    proc = subprocess.run(args + (["--json"] if as_json else []), cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunFailed(f"main.py exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
    if as_json and len(json.loads(proc.stdout).get("done", [])) != sh.n:
        raise RunFailed("the CLI run did not finish every task")


def main() -> None:
    header("Per-hop overhead: API, run store, CLI")
    sh = shape()
    print(f"{sh.name}; worker phase and hand-overs from the server's record; median of {REPEAT} runs, modes interleaved")
    home = scratch("home")
    has_aiohttp = importlib.util.find_spec("aiohttp") is not None
    bare = ("bare socket", "bare httpx", "bare openai SDK", *(("bare aiohttp",) if has_aiohttp else ()))
    modes = (*bare, "API", "API + run store", "CLI --json", "CLI")
    phases: dict[str, list[float]] = {m: [] for m in modes}
    hand: dict[str, list[float]] = {m: [] for m in modes}
    store_ms: list[float] = []
    own: dict[str, list[float]] = {"API": [], "API + run store": []}
    with open_server() as server:
        for i in range(REPEAT + 1):  # round 0 warms up imports and the OS file cache
            for mode in modes:
                server.script(sh.tasks, sh.latency, plan=mode.startswith("CLI"))
                if mode.startswith("bare"):
                    run_bare(sh, server, mode)
                elif mode == "API":
                    with sdk_calls() as calls:
                        run_api(sh, server)
                    own[mode] += own_gaps(calls, sh.n - 1) if i else []
                elif mode == "API + run store":
                    with sdk_calls() as calls:
                        ms = run_api_store(sh, server)
                    if i:
                        store_ms.append(ms)
                        own[mode] += own_gaps(calls, sh.n - 1)
                else:
                    run_cli(sh, server, home, as_json=mode == "CLI --json")
                if i:
                    records = server.records()
                    phases[mode].append(worker_phase(records))
                    hand[mode] += handovers(records, sh.tasks)
    work = sum(sh.latency.values())
    per_hop = {m: (median(phases[m]) - work) * 1000 / sh.n for m in modes}
    rows = [[m, round(median(phases[m]) * 1000), f"{per_hop[m]:.2f}", f"{per_hop[m] - per_hop['API']:+.2f}",
             f"{median(hand[m]) * 1000:.2f}", f"{percentile(hand[m], 0.95) * 1000:.2f}"] for m in modes]
    table(["mode", "worker phase ms", "overhead per hop ms", "vs API ms", "hand-over median ms", "hand-over p95 ms"],
          rows)
    cli = per_hop["CLI"]
    med = {m: median(hand[m]) * 1000 for m in modes}
    share = med["CLI"] - med["bare openai SDK"]
    print(f"\nCLI overhead per hop over the model's latency: {cli:.2f} ms (goal <= {TARGET_MS} ms: "
          f"{verdict(cli <= TARGET_MS)}).\nWhere a hop goes (hand-over medians, less noisy than the phase): "
          f"socket + fake server {med['bare socket']:.2f} ms (the floor with no app); httpx "
          f"{med['bare httpx'] - med['bare socket']:+.2f} ms; openai SDK over its HTTP package "
          f"{med['bare openai SDK'] - med['bare httpx']:+.2f} ms; engine + LLM client {med['API'] - med['bare openai SDK']:+.2f} ms; "
          f"run store {med['API + run store'] - med['API']:+.2f} ms; CLI process and settings "
          f"{med['CLI --json'] - med['API + run store']:+.2f} ms; live display {med['CLI'] - med['CLI --json']:+.2f} ms."
          f"\nThe app's own share through the CLI (over the bare SDK, difference of hand-over medians): {share:.2f} ms "
          f"(<= {TARGET_MS} ms: {verdict(share <= TARGET_MS)})")
    timed = {m: median(v) * 1000 for m, v in own.items()}
    print(f"The app's own time per hop timed at the SDK call (a reply back from the SDK -> the next request handed "
          f"to it; median of {len(own['API'])} hops): API {timed['API']:.2f} ms, API + run store "
          f"{timed['API + run store']:.2f} ms, p95 {percentile(own['API + run store'], 0.95) * 1000:.2f} ms "
          f"(<= {TARGET_MS} ms: {verdict(timed['API + run store'] <= TARGET_MS)}; the live display's share is "
          f"the hand-over difference above)")
    if "bare aiohttp" in modes:
        print(f"aiohttp instead of httpx: hand-over median {med['bare aiohttp']:.2f} ms vs {med['bare httpx']:.2f} ms; "
              f"import {import_ms('aiohttp'):.0f} ms vs {import_ms('httpx'):.0f} ms (fresh interpreter, median of 3)")
    print(f"run store event handling on the event loop: {median(store_ms):.2f} ms per finished task (median)")
    p95 = percentile(hand["CLI"], 0.95) * 1000
    floor = percentile(hand["bare socket"], 0.95) * 1000
    print(f"hand-over p95 through the CLI: {p95:.2f} ms (goal < 1 ms: {verdict(p95 < 1.0)}); "
          f"with no app and a bare socket: {floor:.2f} ms, bare httpx: {percentile(hand['bare httpx'], 0.95) * 1000:.2f} ms, "
          f"bare SDK: {percentile(hand['bare openai SDK'], 0.95) * 1000:.2f} ms")


if __name__ == "__main__":
    main_guard(main)
