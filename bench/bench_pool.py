"""A burst of requests on a warm client: httpcore's own pool against the model client's ClaimingPool.

The case every run meets: one keep-alive connection is idle (the planning call's, or a finished
task's) when a task finishes and its dependents start together. 32 requests are sent at once with
`asyncio.gather` on an httpx client that has served one request before (warm) or none (cold); the
figure is the time from the burst's start to its last request's arrival in the fake server's record
(the same monotonic clock), median of ROUNDS, the pools alternating. Same client settings otherwise (utils.model.pool.new_client, with
the pool swapped back to httpx's own for the comparison).

    python bench/bench_pool.py
"""
from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import header, main_guard, median, open_server, request_body, table  # noqa: E402

N, LAT, ROUNDS = 32, 0.1, 7


async def _burst(url: str, claiming: bool, warm: bool) -> float:
    """Sends the burst; returns when it started (time.monotonic, the server's clock too)."""
    import httpcore
    import httpx

    from utils.model.pool import new_client
    from utils.model.transport import tls_context

    client = new_client(60.0, tls_context())
    if not claiming:
        client._transport._pool = httpcore.AsyncConnectionPool(ssl_context=tls_context(), max_connections=None,
                                                               max_keepalive_connections=64, keepalive_expiry=5.0)
    headers = {"Content-Type": "application/json"}
    try:
        if warm:
            await client.post(url + "/chat/completions", content=request_body(f"t{N}", 1500), headers=headers)

        async def one(i: int) -> None:
            resp = await client.post(url + "/chat/completions", content=request_body(f"t{i}", 1500), headers=headers)
            if resp.status_code != 200:
                raise httpx.HTTPError(f"status {resp.status_code}")

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(N)))
    finally:
        await client.aclose()
    return started


def main() -> None:
    header("Connection pool: a burst of 32 requests, cold and warm")
    print(f"{N} requests at once, {LAT * 1000:.0f} ms each; burst start to last arrival (server record); "
          f"median of {ROUNDS} rounds, pools alternating")
    tasks = [(f"t{i}", "worker", ()) for i in range(N + 1)]
    latency = {t[0]: LAT for t in tasks}
    cases = [(claiming, warm) for warm in (False, True) for claiming in (False, True)]
    spreads: dict[tuple, list[float]] = {c: [] for c in cases}
    with open_server() as server:
        for _ in range(ROUNDS):
            for claiming, warm in cases:
                server.script(tasks, latency)
                started = asyncio.run(_burst(server.base_url, claiming, warm))
                last = max(r.t_in for r in server.records() if r.task != f"t{N}")
                spreads[(claiming, warm)].append(last - started)
    rows = [["warm (one idle connection)" if warm else "cold (no connection)",
             "ClaimingPool" if claiming else "httpcore pool", f"{median(spreads[(claiming, warm)]) * 1000:.1f}"]
            for claiming, warm in cases]
    table(["client", "pool", "burst start to last arrival ms"], rows)
    old, new = median(spreads[(False, True)]), median(spreads[(True, True)])
    print(f"\nwarm burst: ClaimingPool / httpcore pool = {new / old:.2f}")


if __name__ == "__main__":
    main_guard(main)
