"""One HTTP request to an OpenAI-compatible server, and what its failure means.

`Transport.send` sends once and sorts every failure into three kinds, which is all the client's
single retry loop needs to know: `Transient` (429, 5xx, timeouts, lost connections: worth another
try), `Rejected` (400/422: maybe an unsupported parameter, which structured output can work around)
and `Fatal` (401, 404, a bad URL, a header that cannot be sent, a reply that is not JSON: retrying
cannot help).

It speaks the chat-completions protocol with `httpx` directly instead of through the `openai` SDK:
the SDK eagerly imports hundreds of response types (about 0.8 s, most of the time to the first
request) for one endpoint whose JSON is a few fields, and its retries would be a second retry layer.
`httpx` is imported lazily, and early: creating a Transport starts the import (and the loading of
the CA certificates) in a background thread, so `--help`, offline runs and `import utils.tools`
never pay for it.
"""
from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit, urlunsplit

from utils.model.settings import LLMSettings, safe_base_url
from utils.model.tokens import estimate_tokens, messages_tokens
from utils.text import bracket_depth

if TYPE_CHECKING:
    import ssl

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"  # Ollama, vLLM, LM Studio... accept any key
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)  # reasoning models' scratchpad
_NOT_RETRYABLE = ("UnsupportedProtocol", "InvalidURL", "LocalProtocolError")


class Transient(Exception):
    """Worth retrying; `final` is the give-up message, `overload` marks a 429."""

    def __init__(self, reason: str, final: str, detail: str = "", retry_after: float | None = None,
                 overload: bool = False, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.final, self.detail = reason, final, detail
        self.retry_after, self.overload, self.refused = retry_after, overload, refused


class Rejected(Exception):
    """The server refused the request as invalid (400/422): maybe an unsupported parameter."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Fatal(Exception):
    """No retry can succeed; the message is one line without the call's purpose."""


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    model: str
    latency_s: float


def preload_http() -> None:
    """Start importing `httpx` and loading the CA certificates in a daemon thread, so both overlap
    the first prompt being built (a no-op once started)."""
    global _preload
    if _preload is not None or _tls:
        return
    _preload = threading.Thread(target=_load_quietly, name="http-import", daemon=True)
    _preload.start()


def _load_quietly() -> None:
    try:
        _tls.append(importlib.import_module("httpx").create_ssl_context())
    except Exception:  # noqa: BLE001 - the real import in `tls_context` reports it
        pass


def tls_context() -> "ssl.SSLContext":
    """The process's one verifying SSL context (httpx's defaults: certifi, or SSL_CERT_FILE/DIR).

    Why shared: httpx builds one per client by parsing the whole CA bundle, 60-100 ms of CPU that a
    lazily created client would pay right before its first request; the preload thread builds it
    early and every client reuses it (an SSLContext may serve many connections).
    """
    if _preload is not None:
        _preload.join()  # already importing httpx, which the caller needs anyway
    if not _tls:
        import httpx

        _tls.append(httpx.create_ssl_context())
    return _tls[0]


_preload: threading.Thread | None = None
_tls: list[Any] = []  # at most one SSLContext, appended by whichever thread builds it first


class Transport:
    """An HTTP connection pool for one base URL and key, re-created per event loop (it is tied to it)."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.shown_url = safe_base_url(self.base_url)
        self._http: Any = None
        self._http_loop: Any = None
        self._stream_options_ok = True
        preload_http()

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            from utils.model.pool import new_client

            self._http = new_client(self.settings.timeout_s, tls_context())
            self._http_loop = loop
        return self._http

    def _endpoint(self) -> str:
        parts = urlsplit(self.base_url)  # a query (`?api-version=`) stays a query
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/chat/completions", parts.query, ""))

    async def send(self, messages: list[dict], model: str, temperature: float, max_tokens: int | None,
                   response_format: dict | None, on_delta: Callable[[str], None] | None = None) -> Answer:
        """One request; raises Transient, Rejected or Fatal. Streaming (`stream: true` in the
        settings) hands each piece of text to `on_delta` as it arrives."""
        import httpx

        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        body.update({k: v for k, v in (("max_tokens", max_tokens), ("response_format", response_format)) if v})
        key = self.settings.api_key or PLACEHOLDER_KEY
        started = time.monotonic()
        try:
            headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
            if self.settings.stream:
                text, usage, used_model = await self._streamed(self._endpoint(), body, headers, model, on_delta)
            else:
                resp = await self._client().post(self._endpoint(), json=body, headers=headers)
                if resp.status_code >= 400:
                    raise self._status_error(resp.status_code, resp.text, resp.headers, model)
                text, usage, used_model = _parse_reply(resp.content)
        except (Transient, Rejected, Fatal):
            raise
        except _NotJSON:
            raise Fatal(self._not_json()) from None
        except httpx.TimeoutException:
            raise self._timeout() from None
        except (httpx.TransportError, UnicodeEncodeError, ValueError) as exc:
            raise self._transport(exc) from None
        latency = time.monotonic() - started
        text = _THINK.sub("", text or "", count=1)
        p_tok, c_tok = usage.get("prompt_tokens"), usage.get("completion_tokens")
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        return Answer(text=text, prompt_tokens=int(p_tok) if p_tok is not None else messages_tokens(messages),
                      completion_tokens=int(c_tok) if c_tok is not None else estimate_tokens(text),
                      cached_tokens=int(cached or 0), model=used_model or model, latency_s=latency)

    async def _streamed(self, url: str, body: dict, headers: dict, model: str,
                        on_delta: Callable[[str], None] | None) -> tuple[str, dict, str | None]:
        """Server-sent events: concatenate the deltas; usage comes from the final chunk (estimated
        if the server omits it). An older server that refuses `stream_options` is asked again without."""
        extra = {"stream_options": {"include_usage": True}} if self._stream_options_ok else {}
        async with self._client().stream("POST", url, json={**body, "stream": True, **extra},
                                         headers={**headers, "Accept": "text/event-stream"}) as resp:
            if resp.status_code >= 400:
                raw = (await resp.aread()).decode("utf-8", "replace")
                error = self._status_error(resp.status_code, raw, resp.headers, model)
                if not (extra and isinstance(error, Rejected) and "stream_options" in error.message):
                    raise error
            else:
                return await _read_events(resp, on_delta)
        self._stream_options_ok = False
        return await self._streamed(url, body, headers, model, on_delta)

    # -- what a failure means ----------------------------------------------------------------------
    def _status_error(self, status: int, raw: str, headers: Any, model: str) -> Exception:
        body, msg, url = _json_or_text(raw), server_message(raw), self.shown_url
        if status == 429:
            return Transient(f"429 rate limited: {msg}", f"rate limited (429) by {url}", f": {msg}",
                             retry_after(headers), overload=True)
        if status >= 500 or status in (408, 409):
            return Transient(f"{status} server error: {msg}", f"server error {status} from {url}",
                             f": {msg}", retry_after(headers))
        if status == 401:
            return Fatal("authentication failed (check OPENAI_API_KEY)")
        if status == 403:
            return Fatal(f"permission denied by {url}: {msg}")
        if status == 404:
            return Fatal(f"model '{model}' not found at {url} ({msg})")
        if not isinstance(body, dict):
            return Fatal(self._not_json(f" (HTTP {status})"))
        return Rejected(status, msg)

    def _transport(self, cause: BaseException) -> Exception:
        """httpx's error: refused, timed out, dropped, or never sendable (no detail then: httpx
        quotes the offending header, which may be the API key)."""
        name = type(cause).__name__
        if name in _NOT_RETRYABLE or isinstance(cause, (UnicodeEncodeError, ValueError)):
            why = ("the URL is not a valid http(s) URL" if name in ("UnsupportedProtocol", "InvalidURL")
                   else "a header value (the API key?) holds characters HTTP does not allow")
            return Fatal(f"cannot send a request to {self.shown_url}: {why}")
        if "Timeout" in name:
            return self._timeout()
        if "Connect" in name:
            return Transient(f"connection failed: {cause}", f"cannot reach {self.shown_url}",
                             " (is the server running? is the base URL right?)", refused=True)
        detail = " ".join(str(cause).split())[:160] or name or "connection closed"
        return Transient(f"connection lost: {detail}", f"connection to {self.shown_url} lost", f": {detail}")

    def _timeout(self) -> Transient:
        return Transient("timeout", f"no answer from {self.shown_url} within {self.settings.timeout_s:g}s")

    def rejected(self, exc: Rejected) -> str:
        return f"request rejected by {self.shown_url} ({exc.status}): {exc.message}"

    def _not_json(self, extra: str = "") -> str:
        return (f"server at {self.shown_url} did not answer JSON{extra}; is this an OpenAI-compatible "
                "API (the base URL usually ends in /v1)?")


class _NotJSON(Exception):
    """The server answered 200 with something that is not an OpenAI-style JSON/SSE reply."""


MAX_BODY_DEPTH = 64  # a chat reply nests four levels; a body far deeper would make json.loads recurse


def _loads(raw: str | bytes) -> Any:
    """json.loads, refusing (ValueError) a body nested deeper than any reply before it recurses."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # UnicodeDecodeError is a ValueError
    if bracket_depth(text) > MAX_BODY_DEPTH:
        raise ValueError(f"nested deeper than {MAX_BODY_DEPTH} levels")
    return json.loads(text)


def _json_or_text(raw: str) -> Any:
    try:
        return _loads(raw)
    except ValueError:
        return raw


def server_message(raw: str) -> str:
    """The server's error message: `error.message` of a JSON body, else the body's text, one line."""
    body = _json_or_text(raw)
    if isinstance(body, dict):
        body = body.get("error", body)
        body = body.get("message", body) if isinstance(body, dict) else body
    text = body if isinstance(body, str) and body.strip() else json.dumps(body) if body else "(empty reply)"
    if text.lstrip().startswith("<"):
        text = "(HTML error page)"
    return " ".join(text.split())[:240]


def _parse_reply(content: bytes) -> tuple[str, dict, str | None]:
    """(text, usage, model) of a chat-completion JSON reply; _NotJSON for anything else."""
    try:
        data = _loads(content)
        message = data["choices"][0].get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise _NotJSON() from None
    usage = data.get("usage")
    text = message.get("content")
    return (text if isinstance(text, str) else ""), (usage if isinstance(usage, dict) else {}), data.get("model")


async def _read_events(resp: Any, on_delta: Callable[[str], None] | None) -> tuple[str, dict, str | None]:
    parts: list[str] = []
    usage: dict = {}
    model, chunks = None, 0
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = _loads(data)
        except ValueError:
            raise _NotJSON() from None
        if not isinstance(chunk, dict):
            raise _NotJSON()
        chunks += 1
        model = chunk.get("model") or model
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            content = ((choice or {}).get("delta") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
                if on_delta is not None and content:
                    on_delta(content)
    if not chunks:
        raise _NotJSON()
    return "".join(parts), usage, model


def retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date); None if absent/bad."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) / divisor)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            pass
    return None
