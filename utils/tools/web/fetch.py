"""Fetching pages politely and safely: timeouts, a size cap, allowed types, redirects, concurrency.

Each research task runs its own asyncio loop in a worker thread (tools run via `asyncio.to_thread`),
so the limits that must hold across tasks, fetches at once per host and in the whole run, are
process-wide `threading` semaphores, taken without blocking the loop. Redirects are followed by hand
so a loop is named as one and every hop is checked again, including that it does not point into the
user's own network (`blocked address`; `ORCH_WEB_ALLOW_PRIVATE=1` allows it, e.g. for an intranet). Only transient failures (connection
refused/reset, 429, 502-504) are retried, once; a 404 or a timeout is an answer, not a hiccup.
"""
from __future__ import annotations

import asyncio
import ipaddress
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterator
from urllib.parse import urljoin, urlsplit

from utils.capped import BadEncoding, TooLarge, decoded, encodings
from utils.tools.web.settings import call_deadline

ALLOWED_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "application/pdf")
RETRY_STATUS = (429, 502, 503, 504)
RETRY_DELAY_S = 0.5
USER_AGENT = "orchestrator-research/0.1 (+https://github.com/; report workflow)"
ACCEPT_ENCODING = "gzip, deflate"  # only what utils.capped inflates with a cap


@dataclass
class Fetched:
    """What one URL gave: a body to extract (status "ok") or a named failure."""

    url: str
    final_url: str
    status: str                 # ok | http 404 | timeout | too large | blocked type | redirect loop | ...
    http_status: int | None = None
    content_type: str = ""
    bytes: int = 0
    body: str | bytes = ""        # bytes when the server named no charset: the extractor detects it
    transient: bool = False     # worth trying again later (timeouts, connection errors, 5xx)

    def record(self) -> dict:
        out = asdict(self)
        out.pop("body")
        return out


async def take(lock: Any) -> None:
    """Acquire a `threading` lock or semaphore from async code without blocking the event loop
    (research tasks run in different threads, each with its own loop, so asyncio locks cannot be shared)."""
    while not lock.acquire(blocking=False):
        await asyncio.sleep(0.01)


class _Limits:
    """Process-wide caps: `max_fetches` at once in the run, `per_host` at once for one host."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: tuple[int, threading.Semaphore] | None = None
        self._hosts: dict[tuple[str, int], threading.Semaphore] = {}

    def _sems(self, host: str, total: int, per_host: int) -> tuple[threading.Semaphore, threading.Semaphore]:
        with self._lock:
            if self._total is None or self._total[0] != total:
                self._total = (total, threading.Semaphore(total))
            sem = self._hosts.setdefault((host, per_host), threading.Semaphore(per_host))
            return self._total[1], sem

    @asynccontextmanager
    async def slot(self, host: str, total: int, per_host: int) -> AsyncIterator[None]:
        run_sem, host_sem = self._sems(host, total, per_host)
        taken: list[threading.Semaphore] = []
        try:
            for sem in (host_sem, run_sem):  # host first: a busy host does not hold a run-wide slot
                await take(sem)
                taken.append(sem)
            yield
        finally:
            for sem in reversed(taken):
                sem.release()


LIMITS = _Limits()


def new_client(settings: dict) -> Any:
    """One AsyncClient per research task: connect/read timeouts, redirects handled by `fetch`."""
    import httpx

    timeout = httpx.Timeout(connect=settings["connect_timeout_s"], read=settings["read_timeout_s"],
                             write=settings["connect_timeout_s"], pool=None)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                             headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING})


async def read_capped(resp: Any, cap: int) -> bytes:
    """The body of a streaming httpx response, decoded by `utils.capped` from the raw bytes (httpx's
    own decoder inflates a chunk without limit): TooLarge past `cap` decoded bytes."""
    parts = [piece async for piece in decoded(resp.aiter_raw(), encodings(resp.headers.get_list("content-encoding")), cap)]
    return b"".join(parts)


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"\' ')
    return ""


async def _one_hop(client: Any, url: str, settings: dict) -> tuple[Fetched | None, str | None]:
    """GET one URL: (result, None) or (None, the redirect target)."""
    cap = int(settings["max_bytes"])
    async with client.stream("GET", url) as resp:
        code = resp.status_code
        if 300 <= code < 400 and resp.headers.get("location"):
            return None, urljoin(url, resp.headers["location"])
        if code >= 400:
            return Fetched(url, url, f"http {code}", code, transient=code >= 500 or code == 429), None
        ctype = resp.headers.get("content-type", "")
        main = ctype.split(";")[0].strip().lower()
        if main not in ALLOWED_TYPES:
            return Fetched(url, url, "blocked type", code, main or "(none)"), None
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            return Fetched(url, url, "too large", code, main, int(declared)), None
        try:  # the cap is on decoded bytes, checked as they inflate (a gzip bomb stops at the cap)
            body = await read_capped(resp, cap)
        except TooLarge:
            return Fetched(url, url, "too large", code, main, cap), None
        except BadEncoding as exc:
            return Fetched(url, url, f"bad encoding ({exc})", code, main), None
        size = len(body)
        charset = _charset(ctype)
        if main == "application/pdf" or (main != "text/plain" and not charset):
            return Fetched(url, url, "ok", code, main, size, body), None  # the extractor reads <meta charset>
        try:
            text = body.decode(charset or "utf-8", errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        return Fetched(url, url, "ok", code, main, size, text), None


async def _private_host(host: str) -> bool:
    """True when `host` is or resolves to a loopback, private, link-local or reserved address.

    A search result or a redirect must not turn the fetcher against the user's own network (routers,
    cloud metadata at 169.254.169.254, services on localhost). A name that does not resolve is left to
    the fetch, which reports it as unreachable."""
    try:
        addrs = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError:
            return False
        addrs = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    return any(not a.is_global or a.is_multicast for a in addrs)


async def _follow(client: Any, url: str, settings: dict) -> Fetched:
    seen: list[str] = []
    current = url
    for _ in range(int(settings["max_redirects"]) + 1):
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return Fetched(url, current, "blocked scheme")
        if current in seen:
            return Fetched(url, current, "redirect loop")
        if not settings.get("allow_private") and await _private_host(parts.hostname):
            return Fetched(url, current, "blocked address")
        seen.append(current)
        # The whole hop has a deadline too (a page that drips a byte a second never hits the read
        # timeout); waiting for a slot does not count against it.
        deadline = call_deadline(settings)
        async with LIMITS.slot(parts.hostname, int(settings["max_fetches"]), int(settings["per_host"])):
            result, target = await asyncio.wait_for(_one_hop(client, current, settings), deadline)
        if result is not None:
            result.url, result.final_url = url, current
            return result
        current = target
    return Fetched(url, current, "too many redirects")


async def fetch(client: Any, url: str, settings: dict) -> Fetched:
    """Fetch one page; never raises for a network problem: the failure is named in `status`."""
    import httpx

    for attempt in (1, 2):
        try:
            result = await _follow(client, url, settings)
        except (httpx.TimeoutException, asyncio.TimeoutError):
            return Fetched(url, url, "timeout", transient=True)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            result = Fetched(url, url, f"unreachable ({type(exc).__name__})", transient=True)
        except httpx.HTTPError as exc:
            return Fetched(url, url, f"error ({type(exc).__name__})")
        retry = result.status.startswith("unreachable") or result.http_status in RETRY_STATUS
        if not retry or attempt == 2:
            return result
        await asyncio.sleep(RETRY_DELAY_S)
    return result  # pragma: no cover - the loop always returns
