"""Fake servers with the faults real ones have: a concurrency cap answered with 429, and outages.

Subclasses of `tests/fake_llm.FakeLLMServer` (same record of requests, same scripting), so a test
reads what happened from `requests` exactly as elsewhere.
"""
from __future__ import annotations

import time

from fakes.fake_llm import FakeLLMServer, RecordedRequest, Reply


class CappedServer(FakeLLMServer):
    """Serves at most `capacity` requests at once, each taking `latency` seconds; any request
    above that is answered 429 at once (without Retry-After unless `retry_after` is set)."""

    def __init__(self, capacity: int, latency: float, retry_after: float | None = None, **kw) -> None:
        super().__init__(**kw)
        self.capacity, self.latency, self.retry_after = capacity, latency, retry_after
        self.rejected = 0
        self._busy_until: list[float] = []

    def _next_reply(self, request: RecordedRequest) -> Reply:
        now = time.monotonic()
        with self._lock:
            self._busy_until = [t for t in self._busy_until if t > now]
            if len(self._busy_until) >= self.capacity:
                self.rejected += 1
                headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
                return Reply(status=429, headers=headers, error_message="too many concurrent requests")
            self._busy_until.append(now + self.latency)
        reply = super()._next_reply(request)
        reply.latency = max(reply.latency, self.latency)
        return reply


class OutageServer(FakeLLMServer):
    """`outage(seconds)`: until then every request gets a 503 or a dropped connection (alternately),
    as a restarting server or a load balancer with no backend does."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._down_until = 0.0
        self.failed = 0

    def outage(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds

    def _next_reply(self, request: RecordedRequest) -> Reply:
        if time.monotonic() < self._down_until:
            with self._lock:
                self.failed += 1
                odd = self.failed % 2
            return Reply(drop_connection=True) if odd else Reply(status=503, error_message="no healthy upstream")
        return super()._next_reply(request)
