"""How many calls may be in flight, and how long to wait before trying again.

`AdaptiveLimit` is the run-wide in-flight limit. It starts at the configured ceiling and adapts to
the server like TCP congestion control: a 429 halves it (multiplicative decrease, at most once per
wave of calls that were already in flight), each success adds 1/limit (additive increase: about one
slot per limit's worth of successes). A server that takes 2 calls at once therefore settles near 2
instead of failing tasks, and a bigger ceiling costs nothing: no slot is allocated up front.

`backoff` jitters every wait, so retries released by one Retry-After do not arrive as one burst.
"""
from __future__ import annotations

import asyncio
import random
from collections import deque


class AdaptiveLimit:
    """An async context manager: `async with limit:` waits for a slot under the current limit."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, int(ceiling))
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.lowest = self.limit          # the smallest limit reached (reported, tested)
        self._epoch = 0                   # bumped on each decrease
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch the call started in (for `overloaded`)."""
        while self.in_flight >= int(self.limit):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                self._wake()  # pass on a wake-up this cancelled waiter may have received
                raise
        self.in_flight += 1
        return self._epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def succeeded(self) -> None:
        """Additive increase, only while the limit is the bottleneck (else it would grow unused)."""
        if self.limit < self.ceiling and self.in_flight >= int(self.limit):
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            self._wake()

    def overloaded(self, epoch: int) -> None:
        """Multiplicative decrease on a 429, once per epoch: calls that were already in flight when
        the limit last dropped report the same overload and must not halve it again."""
        if epoch != self._epoch:
            return
        self._epoch += 1
        self.limit = max(1.0, min(self.limit, float(self.in_flight)) / 2)
        self.lowest = min(self.lowest, self.limit)

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)
                free -= 1


def backoff(attempt: int, retry_after: float | None, *, base: float, cap: float) -> float:
    """Seconds to wait before retry number `attempt + 1`: the server's Retry-After (capped) as a
    floor, plus full jitter over an exponentially growing, capped window."""
    floor = min(max(retry_after or 0.0, 0.0), cap)
    return floor + random.uniform(0.0, min(cap, base * (2 ** min(attempt, 30))))
