"""Fake servers with the faults real ones have: a concurrency cap answered with 429, and outages;
and hostile answers for `Reply(write=...)`: a drip, SSE pings, raw SSE events, gzip bombs.

Subclasses of `tests/fake_llm.FakeLLMServer` (same record of requests, same scripting), so a test
reads what happened from `requests` exactly as elsewhere.
"""
from __future__ import annotations

import gzip
import json
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


# -- hostile answers: `Reply(write=...)` hands the handler and the request to one of these ------------
def _head(handler, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Connection", "close")
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.close_connection = True


def _alive(handler, gap: float) -> bool:
    """Wait `gap` seconds; False once the server stops or the client hung up."""
    return not handler.fake._stopping.wait(gap) and not handler._client_gone()


def drip(gap: float, body: bytes = b'{"choices": [{"message": {"content": "slow"}}]}'):
    """A JSON reply sent one byte every `gap` seconds (headers first, with the full length)."""
    def write(handler, rec: RecordedRequest) -> None:
        _head(handler, 200, "application/json", {"Content-Length": str(len(body))})
        for i in range(len(body)):
            if not _alive(handler, gap):
                return
            handler.wfile.write(body[i:i + 1])
            handler.wfile.flush()
    return write


def pings(gap: float):
    """An SSE stream that only ever sends `: ping` comments, every `gap` seconds."""
    def write(handler, rec: RecordedRequest) -> None:
        _head(handler, 200, "text/event-stream")
        while _alive(handler, gap):
            handler.wfile.write(b": ping\n\n")
            handler.wfile.flush()
    return write


def events(*payloads: object, done: bool = True):
    """An SSE stream of exactly these `data:` payloads (dicts/lists as JSON, strings verbatim),
    then `[DONE]` unless `done` is False; the connection is closed after."""
    def write(handler, rec: RecordedRequest) -> None:
        _head(handler, 200, "text/event-stream")
        for p in payloads:
            handler.wfile.write(f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode())
        if done:
            handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()
    return write


def gzipped(payload: bytes, layers: int = 2, status: int = 200, content_type: str = "application/json",
            pre: int = 0):
    """`payload` gzipped `layers` more times with a matching `Content-Encoding` (`pre`: the gzip
    layers `payload` already has). Two layers over a long run of zeros make a bomb."""
    body = payload
    for _ in range(layers):
        body = gzip.compress(body, compresslevel=9)

    def write(handler, rec: RecordedRequest) -> None:
        _head(handler, status, content_type, {"Content-Encoding": ", ".join(["gzip"] * (pre + layers)),
                                              "Content-Length": str(len(body))})
        handler.wfile.write(body)
        handler.wfile.flush()
    return write
