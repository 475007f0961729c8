"""Keep-alive connections for the model client, each handed to one request at a time.

Why not httpcore's own pool (the one httpx uses): when several requests arrive in the same event-loop
turn while a keep-alive connection is idle, it assigns that one connection to every one of them; all
but the first then find it busy and fall back to new connections, one loop turn at a time. A task
that finishes and releases a burst of dependents pays for that: the last of 32 requests reached the
server 8-25 % later (bench/bench_pool.py). Here a connection leaves the shelf when it is handed out,
so every request of a burst gets its own at once.

Only the choice of connection is ours: TLS, HTTP/1.1, timeouts, proxies (httpx mounts its own
transports for them) and the mapping of errors to `httpx` exceptions stay httpx's and httpcore's.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

import httpcore
import httpx

KEEPALIVE_EXPIRY_S = 5.0  # httpx's default: an idle connection older than this is not reused
MAX_IDLE = 64


class ClaimingPool:
    """An httpcore request interface (`handle_async_request`, `aclose`) over a shelf of idle
    connections: the most recently used idle one is taken, else a new one is opened."""

    def __init__(self, ssl_context: Any) -> None:
        self._ssl = ssl_context
        self._idle: list[httpcore.AsyncHTTPConnection] = []
        self._open: set[httpcore.AsyncHTTPConnection] = set()  # idle or serving: closed by aclose()
        self.opened = 0  # connections opened so far (tests, bench)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        scheme = request.url.scheme.decode()
        if scheme not in ("http", "https"):  # as httpcore's pool says it (httpx maps the error)
            raise httpcore.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.")
        conn, stale = self._claim(request.url.origin)
        for old in stale:
            await self._close(old)
        try:
            response = await conn.handle_async_request(request)
        except BaseException:
            await self._close(conn)
            raise
        return httpcore.Response(status=response.status, headers=response.headers,
                                 content=_GivesBack(response.stream, self, conn), extensions=response.extensions)

    def _claim(self, origin: httpcore.Origin) -> tuple[httpcore.AsyncHTTPConnection, list]:
        """Take an idle connection off the shelf (no await between looking and taking, so no other
        request can be handed the same one), or open a new one. Returns it and the stale ones."""
        stale = []
        while self._idle:
            conn = self._idle.pop()
            if conn.can_handle_request(origin) and conn.is_idle() and not conn.has_expired():
                return conn, stale
            stale.append(conn)
        conn = httpcore.AsyncHTTPConnection(origin=origin, ssl_context=self._ssl, keepalive_expiry=KEEPALIVE_EXPIRY_S)
        self._open.add(conn)
        self.opened += 1
        return conn, stale

    def _give_back(self, conn: httpcore.AsyncHTTPConnection) -> bool:
        """Shelve a connection whose response is closed; False if it cannot serve another request."""
        if conn.is_idle() and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
            return True
        return False

    async def _close(self, conn: httpcore.AsyncHTTPConnection) -> None:
        self._open.discard(conn)
        await conn.aclose()

    async def aclose(self) -> None:
        conns, self._open, self._idle = list(self._open), set(), []
        for conn in conns:
            await conn.aclose()

    async def __aenter__(self) -> "ClaimingPool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _GivesBack:
    """A response body that shelves its connection once closed (httpx closes it after reading)."""

    def __init__(self, stream: Any, pool: ClaimingPool, conn: httpcore.AsyncHTTPConnection) -> None:
        self._stream, self._pool, self._conn = stream, pool, conn
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._closed:  # shelving a connection twice would hand it to two requests
            return
        self._closed = True
        try:
            if hasattr(self._stream, "aclose"):
                await self._stream.aclose()
        finally:
            if not self._pool._give_back(self._conn):
                await self._pool._close(self._conn)


def new_client(timeout_s: float, ssl_context: Any) -> httpx.AsyncClient:
    """An httpx client whose direct connections come from a ClaimingPool (proxied ones, from the
    environment, keep httpx's own transports).

    httpx has no public way to give its transport another pool (passing `transport=` would turn
    the environment's proxies off), so the default transport's `_pool` is swapped; if a future httpx
    lays that out differently the swap is skipped and its own pool serves: slower in bursts,
    otherwise the same. tests/test_pool.py checks that the swap takes place.
    """
    client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), verify=ssl_context,
                               limits=httpx.Limits(max_connections=None, max_keepalive_connections=MAX_IDLE))
    transport = getattr(client, "_transport", None)
    if isinstance(transport, httpx.AsyncHTTPTransport) and isinstance(getattr(transport, "_pool", None),
                                                                       httpcore.AsyncConnectionPool):
        transport._pool = ClaimingPool(ssl_context)
    return client
