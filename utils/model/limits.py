"""How many calls may be in flight, and how long to wait before trying again.

`AdaptiveLimit` is the run-wide in-flight limit. It starts at the configured ceiling and adapts to
the server like TCP congestion control: a 429 halves it (multiplicative decrease, at most once per
wave of calls that were already in flight), each success adds 1/limit (additive increase: about one
slot per limit's worth of successes). A server that takes 2 calls at once therefore settles near 2
instead of failing tasks, and a bigger ceiling costs nothing: no slot is allocated up front.

`backoff` jitters every wait, so retries released by one Retry-After do not arrive as one burst.

A batch of runs (`--batch`, utils/app/batch.py) shares ONE `AdaptiveLimit` and ONE `TokenBudget`
between runs that each drive their own event loop in their own thread, so both are thread-safe: state
changes under a lock and a waiter on another loop is woken with `call_soon_threadsafe`. `CallPool`
is what a batch hands every run's client: the shared limit and budget.
"""
from __future__ import annotations

import asyncio
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from utils.errors import BudgetExceeded


class AdaptiveLimit:
    """An async context manager: `async with limit:` waits for a slot under the current limit."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, int(ceiling))
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.lowest = self.limit          # the smallest limit reached (reported, tested)
        self.peak = 0                     # the most calls in flight at once (reported, tested)
        self._epoch = 0                   # bumped on each decrease
        self._waiters: deque[asyncio.Future] = deque()
        self._lock = threading.Lock()     # runs of a batch share one limit from several threads

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch the call started in (for `overloaded`)."""
        while True:
            with self._lock:
                if self.in_flight < int(self.limit):
                    self.in_flight += 1
                    self.peak = max(self.peak, self.in_flight)
                    return self._epoch
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                self._wake()  # pass on a wake-up this cancelled waiter may have received
                raise

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self._wake()

    def succeeded(self) -> None:
        """Additive increase, only while the limit is the bottleneck (else it would grow unused)."""
        with self._lock:
            grow = self.limit < self.ceiling and self.in_flight >= int(self.limit)
            if grow:
                self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        if grow:
            self._wake()

    def overloaded(self, epoch: int) -> None:
        """Multiplicative decrease on a 429, once per epoch: calls that were already in flight when
        the limit last dropped report the same overload and must not halve it again."""
        with self._lock:
            if epoch != self._epoch:
                return
            self._epoch += 1
            self.limit = max(1.0, min(self.limit, float(self.in_flight)) / 2)
            self.lowest = min(self.lowest, self.limit)

    def _wake(self) -> None:
        """Wake as many waiters as there are free slots; a waiter re-checks for its slot, so one
        woken too many only waits again."""
        with self._lock:
            free = int(self.limit) - self.in_flight
            woken = []
            while free > 0 and self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done() and not waiter.get_loop().is_closed():
                    woken.append(waiter)
                    free -= 1
        for waiter in woken:
            _resolve(waiter)


def _resolve(waiter: asyncio.Future) -> None:
    """Wake `waiter` from any thread: directly on its own loop's thread, else through that loop."""
    loop = waiter.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        if not waiter.done():
            waiter.set_result(None)
        return
    try:
        loop.call_soon_threadsafe(lambda: waiter.done() or waiter.set_result(None))
    except RuntimeError:  # its loop closed meanwhile: nobody is waiting any more
        pass


class TokenBudget:
    """A token budget shared by several runs (`--max-tokens-total` of a batch): a call reserves
    its prompt and reply tokens before it is sent, so calls in flight together, in any run, can
    never overspend it; what a call really used is then `spend`-ed and its reservation released."""

    def __init__(self, total: int, used: int = 0) -> None:
        self.total, self.used, self.reserved = int(total), int(used), 0
        self._lock = threading.Lock()

    def reserve(self, prompt: int, reply: int, least: int) -> int:
        """Reserve `prompt` tokens and a reply of up to `reply` (at least `least`); returns the reply
        size reserved, or raises BudgetExceeded. Release `prompt + returned` with `release`."""
        with self._lock:
            reply = min(reply, self.total - self.used - self.reserved - prompt)
            if reply < least:
                flight = f", {self.reserved} reserved by calls in flight" if self.reserved else ""
                raise BudgetExceeded(f"the batch's token budget of {self.total} reached (used {self.used}{flight})")
            self.reserved += prompt + reply
            return reply

    def release(self, held: int) -> None:
        with self._lock:
            self.reserved -= held

    def spend(self, tokens: int) -> None:
        with self._lock:
            self.used += int(tokens)


@dataclass
class CallPool:
    """What the runs of one batch share: the model-call limit (with its 429 back-off) and the token
    budget. Any objects with the same methods serve (utils/app/batch_ray.py: a Ray actor's)."""
    limit: Any
    budget: Any = None


def backoff(attempt: int, retry_after: float | None, *, base: float, cap: float) -> float:
    """Seconds to wait before retry number `attempt + 1`: the server's Retry-After (capped) as a
    floor, plus full jitter over an exponentially growing, capped window."""
    floor = min(max(retry_after or 0.0, 0.0), cap)
    return floor + random.uniform(0.0, min(cap, base * (2 ** min(attempt, 30))))
