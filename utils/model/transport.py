"""One HTTP request to an OpenAI-compatible server, and what its failure means.

`Transport.send` sends once and sorts every failure into three kinds, which is all the client's
single retry loop needs to know: `Transient` (429, 5xx, timeouts, lost connections: worth another
try), `Rejected` (400/422: maybe an unsupported parameter, which structured output can work around)
and `Fatal` (401, 404, a bad URL, a header that cannot be sent, a reply that is not JSON: retrying
cannot help). The SDK's own retries are off (`max_retries=0`).

The `openai` SDK takes most of a second to import. It is imported lazily (so `--help`, offline
runs and `import utils.tools` never pay for it) but as early as useful: creating a Transport starts
the import in a background thread, so it overlaps building the first prompt.
"""
from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from utils.model.settings import LLMSettings, safe_base_url
from utils.model.tokens import estimate_tokens, messages_tokens

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"  # Ollama, vLLM, LM Studio... accept any key
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)  # reasoning models' scratchpad
_NOT_RETRYABLE = ("UnsupportedProtocol", "InvalidURL", "LocalProtocolError")


class Transient(Exception):
    """Worth retrying; `final` is the give-up message, `overload` marks a 429."""

    def __init__(self, reason: str, final: str, detail: str = "", retry_after: float | None = None,
                 overload: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.final, self.detail = reason, final, detail
        self.retry_after, self.overload = retry_after, overload


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


def preload_sdk() -> None:
    """Start importing `openai` in a daemon thread (a no-op once imported or started)."""
    global _preload
    if "openai" in sys.modules or _preload is not None:
        return
    _preload = threading.Thread(target=_import_quietly, name="openai-import", daemon=True)
    _preload.start()


def _import_quietly() -> None:
    try:
        importlib.import_module("openai")
    except Exception:  # noqa: BLE001 - the real import in `send` reports it
        pass


_preload: threading.Thread | None = None


class Transport:
    """The SDK client for one base URL and key, re-created per event loop (its pool is tied to it)."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.shown_url = safe_base_url(self.base_url)
        self._sdk: Any = None
        self._sdk_loop: Any = None
        self._stream_options_ok = True
        preload_sdk()

    async def aclose(self) -> None:
        if self._sdk is not None:
            sdk, self._sdk = self._sdk, None
            await sdk.close()

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._sdk is None or self._sdk_loop is not loop:
            import openai

            s = self.settings
            key = s.api_key or (PLACEHOLDER_KEY if s.base_url else None)
            self._sdk = openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=s.timeout_s)
            self._sdk_loop = loop
        return self._sdk

    async def send(self, messages: list[dict], model: str, temperature: float, max_tokens: int | None,
                   response_format: dict | None) -> Answer:
        """One request; raises Transient, Rejected or Fatal."""
        import openai

        kwargs: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        kwargs.update({k: v for k, v in (("max_tokens", max_tokens), ("response_format", response_format)) if v})
        started = time.monotonic()
        try:
            sdk = self._client()
            if self.settings.stream:
                text, usage, used_model = await self._streamed(sdk, kwargs)
            else:
                reply = await sdk.chat.completions.create(**kwargs)
                if not hasattr(reply, "choices") or not reply.choices:
                    raise _NotJSON()
                text = reply.choices[0].message.content or ""
                usage, used_model = reply.usage, getattr(reply, "model", None)
        except openai.APIStatusError as exc:
            raise self._status_error(exc, model) from None
        except openai.APITimeoutError:
            raise self._timeout() from None
        except openai.APIConnectionError as exc:
            raise self._transport(exc.__cause__ or exc.__context__ or exc) from None
        except (_NotJSON, openai.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError):
            raise Fatal(self._not_json()) from None
        except (UnicodeEncodeError, ValueError) as exc:  # a header or URL that cannot be sent at all
            raise Fatal(f"cannot send a request to {self.shown_url}: {type(exc).__name__}") from None
        except Exception as exc:  # transport errors surfacing mid-stream come raw from httpx
            if not (type(exc).__module__ or "").startswith(("httpx", "httpcore", "h11")):
                raise
            raise self._transport(exc) from None
        latency = time.monotonic() - started
        text = _THINK.sub("", text or "", count=1)
        p_tok = getattr(usage, "prompt_tokens", None)
        c_tok = getattr(usage, "completion_tokens", None)
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
        return Answer(text=text, prompt_tokens=int(p_tok) if p_tok is not None else messages_tokens(messages),
                      completion_tokens=int(c_tok) if c_tok is not None else estimate_tokens(text),
                      cached_tokens=int(cached or 0), model=used_model or model, latency_s=latency)

    async def _streamed(self, sdk: Any, kwargs: dict[str, Any]) -> tuple[str, Any, str | None]:
        """Concatenate the deltas; usage comes from the final chunk (estimated if the server omits it)."""
        import openai

        try:
            extra = {"stream_options": {"include_usage": True}} if self._stream_options_ok else {}
            stream = await sdk.chat.completions.create(**kwargs, stream=True, **extra)
        except openai.BadRequestError as exc:
            if not extra or "stream_options" not in server_message(exc):
                raise
            self._stream_options_ok = False  # an older server: stream without the usage chunk
            stream = await sdk.chat.completions.create(**kwargs, stream=True)
        if isinstance(stream, str) or not hasattr(stream, "__aiter__"):
            raise _NotJSON()
        parts: list[str] = []
        usage, used_model, chunks = None, None, 0
        async for chunk in stream:
            chunks += 1
            used_model = getattr(chunk, "model", None) or used_model
            usage = getattr(chunk, "usage", None) or usage
            for choice in getattr(chunk, "choices", None) or []:
                delta = getattr(choice, "delta", None)
                if delta is not None and getattr(delta, "content", None):
                    parts.append(delta.content)
        if not chunks:
            raise _NotJSON()
        return "".join(parts), usage, used_model

    # -- what a failure means ----------------------------------------------------------------------
    def _status_error(self, exc: Any, model: str) -> Exception:
        status, msg, url = exc.status_code, server_message(exc), self.shown_url
        if status == 429:
            return Transient(f"429 rate limited: {msg}", f"rate limited (429) by {url}", f": {msg}",
                             retry_after(exc.response.headers), overload=True)
        if status >= 500 or status in (408, 409):
            return Transient(f"{status} server error: {msg}", f"server error {status} from {url}",
                             f": {msg}", retry_after(exc.response.headers))
        if status == 401:
            return Fatal("authentication failed (check OPENAI_API_KEY)")
        if status == 403:
            return Fatal(f"permission denied by {url}: {msg}")
        if status == 404:
            return Fatal(f"model '{model}' not found at {url} ({msg})")
        if not isinstance(exc.body, (dict, str)) or (isinstance(exc.body, str) and exc.body.lstrip()[:1] == "<"):
            return Fatal(self._not_json(f" (HTTP {status})"))
        return Rejected(status, msg)

    def _transport(self, cause: BaseException) -> Exception:
        """httpx's error (the SDK's cause): refused, timed out, dropped, or never sendable."""
        name = type(cause).__name__
        if name in _NOT_RETRYABLE or isinstance(cause, (UnicodeEncodeError, ValueError)):
            detail = " ".join(str(cause).split())[:160] or name
            return Fatal(f"cannot send a request to {self.shown_url}: {detail}")
        if "Timeout" in name:
            return self._timeout()
        if "Connect" in name:
            return Transient(f"connection failed: {cause}", f"cannot reach {self.shown_url}",
                             " (is the server running? is the base URL right?)")
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


def server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        body = body.get("message", body) if isinstance(body, dict) else body
    text = body if isinstance(body, str) and body.strip() else getattr(exc, "message", "") or str(exc)
    if isinstance(text, str) and text.lstrip().startswith("<"):
        text = "(HTML error page)"
    return " ".join(str(text).split())[:240]


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
