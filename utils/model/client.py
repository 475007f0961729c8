"""The one boundary between the app and language models.

Everything that talks to a model goes through `LLMClient.complete`, so retries, the run-wide
concurrency limit, the response cache, the token budget, structured output and the usage totals are
implemented once. The SDK's own retries are off (`max_retries=0`): two stacked retry layers multiply
waits and hide what happened. `openai` is imported lazily so `--help` and offline runs start fast.
Error messages are one line, name the task (`purpose`) and never contain the API key.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from utils.model.cache import ResponseCache, cache_key
from utils.errors import BudgetExceeded, LLMError
from utils.events import Emit, Event, null_emit
from utils.model.offline import estimate_tokens, messages_tokens, offline_answer
from utils.model.structured import extract_json, json_schema_for, validate

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"  # Ollama, vLLM, LM Studio... accept any key
DEFAULT_REPLY_TOKENS = 512      # budget estimate when a call sets no max_tokens
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)  # reasoning models' scratchpad


from utils.model.settings import Completion, LLMSettings, Totals  # noqa: F401 - part of this module's API


class _Transient(Exception):
    """A failure worth retrying (429, 5xx, timeout, connection); `final` is the give-up message."""

    def __init__(self, reason: str, final: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.final, self.detail, self.retry_after = reason, final, detail, retry_after


class _NotJSON(Exception):
    """The server answered 200 with something that is not an OpenAI-style JSON/SSE reply."""


class _Rejected(Exception):
    """The server refused the request as invalid (400/422): maybe an unsupported parameter."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class LLMClient:
    """Model calls with one retry layer, a run-wide concurrency limit, cache, budget and totals."""

    def __init__(self, settings: LLMSettings, *, emit: Emit = null_emit, home: Path | None = None) -> None:
        self.settings = settings
        self.emit = emit
        self.totals = Totals()
        self.cache = ResponseCache(home)
        self.json_schema_supported: bool | None = None  # learnt from the server on first structured call
        self._stream_options_ok = True
        self._reserved = 0
        self._sdk: Any = None
        self._sdk_loop: Any = None
        self._semaphore: asyncio.Semaphore | None = None
        self._sem_loop: Any = None

    @property
    def offline(self) -> bool:
        return self.settings.provider == "offline"

    @property
    def base_url(self) -> str:
        return (self.settings.base_url or DEFAULT_BASE_URL).rstrip("/")

    def totals_dict(self) -> dict[str, Any]:
        return self.totals.as_dict()

    async def aclose(self) -> None:
        """Close the HTTP connection pool (call at the end of the event loop that used it)."""
        if self._sdk is not None:
            sdk, self._sdk = self._sdk, None
            await sdk.close()

    # -- public call -------------------------------------------------------------------------------
    async def complete(self, messages: list[dict], *, model: str | None = None, temperature: float = 0.3,
                       max_tokens: int | None = None, schema: type[BaseModel] | None = None,
                       purpose: str = "", offline_reply: Callable[[], Any] | None = None) -> Completion:
        """One answer from the model: text, or a validated `schema` instance in `.data`."""
        model = model or self.settings.model
        if self.offline:
            return self._offline(messages, model, schema, purpose, offline_reply)
        key = None
        if self.settings.cache:
            key = cache_key(model=model, messages=messages, temperature=temperature, max_tokens=max_tokens,
                            schema=schema)
            hit = self._from_cache(key, schema)
            if hit is not None:
                return hit
        started = time.monotonic()
        if schema is None:
            text, p_tok, c_tok, used_model = await self._call(messages, model, temperature, max_tokens, None, purpose)
            data = None
        else:
            text, data, p_tok, c_tok, used_model = await self._structured(
                messages, model, temperature, max_tokens, schema, purpose)
        if key is not None:
            self.cache.put(key, model=used_model, text=text, prompt_tokens=p_tok, completion_tokens=c_tok)
        return Completion(text=text, data=data, prompt_tokens=p_tok, completion_tokens=c_tok, model=used_model,
                          latency_s=round(time.monotonic() - started, 3))

    # -- structured output -------------------------------------------------------------------------
    async def _structured(self, messages, model, temperature, max_tokens, schema, purpose):
        """response_format json_schema when the server takes it, else a prompt hint; then parse,
        validate and, once, show the model its exact validation error and ask again."""
        use_rf = self.json_schema_supported is not False
        asked = list(messages) if use_rf else _with_hint(messages, schema)
        rf = json_schema_for(schema) if use_rf else None
        try:
            text, p_tok, c_tok, used = await self._call(asked, model, temperature, max_tokens, rf, purpose)
            if use_rf:
                self.json_schema_supported = True
        except _Rejected as exc:
            mentions = re.search(r"response_format|json_schema|schema", exc.message, re.IGNORECASE)
            if not use_rf or not (mentions or self.json_schema_supported is None):
                raise self._error(purpose, self._rejected(exc))
            self.json_schema_supported = False
            self.emit(Event("notice", {"level": "info", "message": f"{self.base_url} does not accept "
                                       "response_format json_schema; asking for JSON in the prompt instead"}))
            rf, asked = None, _with_hint(messages, schema)
            text, p_tok, c_tok, used = await self._call(asked, model, temperature, max_tokens, None, purpose)
        try:
            return text, validate(extract_json(text), schema), p_tok, c_tok, used
        except ValueError as exc:
            problem = str(exc)
        repair = [*asked, {"role": "assistant", "content": text},
                  {"role": "user", "content": f"Your reply did not match the required schema: {problem}\n"
                   "Answer again with only the corrected JSON object, no prose. The JSON Schema is:\n"
                   + json.dumps(schema.model_json_schema(), separators=(",", ":"))}]
        try:
            text, p2, c2, used = await self._call(repair, model, temperature, max_tokens, rf, purpose)
        except _Rejected as exc:
            raise self._error(purpose, self._rejected(exc))
        try:
            return text, validate(extract_json(text), schema), p_tok + p2, c_tok + c2, used
        except ValueError as exc:
            raise self._error(purpose, f"model output did not match the schema: {exc}") from None

    # -- one logical call: budget, retries, totals -------------------------------------------------
    async def _call(self, messages, model, temperature, max_tokens, response_format, purpose):
        s = self.settings
        estimate = messages_tokens(messages) + (max_tokens or DEFAULT_REPLY_TOKENS)
        if s.max_tokens_total:
            used = self.totals.prompt_tokens + self.totals.completion_tokens
            if used + self._reserved + estimate > s.max_tokens_total:
                raise BudgetExceeded(f"token budget of {s.max_tokens_total} reached (used {used})")
        self._reserved += estimate
        try:
            attempt = 0
            while True:
                try:
                    text, p_tok, c_tok, used_model, latency = await self._request(
                        messages, model, temperature, max_tokens, response_format, purpose)
                    break
                except _Rejected as exc:
                    if response_format is None:  # only structured calls have a fallback for a 400
                        raise self._error(purpose, self._rejected(exc)) from None
                    raise
                except _Transient as exc:
                    if attempt >= s.max_retries:
                        attempts = f"{attempt + 1} attempt{'s' if attempt else ''}"
                        raise self._error(purpose, f"{exc.final} after {attempts}{exc.detail}") from None
                    wait = self._backoff(attempt, exc.retry_after)
                    attempt += 1
                    self.totals.retries += 1
                    self.emit(Event("retry", {"purpose": purpose, "attempt": attempt, "wait_s": round(wait, 3),
                                              "reason": self._scrub(exc.reason)}))
                    await asyncio.sleep(wait)
        finally:
            self._reserved -= estimate
        price = (s.prices or {}).get(model) or (s.prices or {}).get(used_model)
        self._count(p_tok, c_tok, latency, price)
        return text, p_tok, c_tok, used_model

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins if longer; capped."""
        s = self.settings
        wait = random.uniform(0, min(s.backoff_max_s, s.backoff_base_s * (2 ** attempt)))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return max(0.0, min(wait, s.backoff_max_s))

    # -- one HTTP request --------------------------------------------------------------------------
    async def _request(self, messages, model, temperature, max_tokens, response_format, purpose):
        """Send once; map every failure to _Transient, _Rejected or a final LLMError."""
        import openai

        kwargs: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        kwargs.update({k: v for k, v in (("max_tokens", max_tokens), ("response_format", response_format)) if v})
        sdk = self._client()
        async with self._limit():
            started = time.monotonic()
            try:
                if self.settings.stream:
                    text, usage, used_model = await self._streamed(sdk, kwargs)
                else:
                    reply = await sdk.chat.completions.create(**kwargs)
                    if not hasattr(reply, "choices") or not reply.choices:
                        raise _NotJSON()
                    text = reply.choices[0].message.content or ""
                    usage, used_model = reply.usage, getattr(reply, "model", None)
            except openai.APIStatusError as exc:
                raise self._status_error(exc, model, purpose) from None
            except openai.APITimeoutError:
                raise self._timeout() from None
            except openai.APIConnectionError as exc:
                raise self._transport(exc.__cause__ or exc.__context__ or exc) from None
            except (_NotJSON, openai.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError):
                raise self._error(purpose, self._not_json()) from None
            except Exception as exc:  # transport errors surfacing mid-stream come raw from httpx
                if not (type(exc).__module__ or "").startswith(("httpx", "httpcore")):
                    raise
                raise self._transport(exc) from None
            latency = time.monotonic() - started
        text = _THINK.sub("", text or "", count=1)
        p_tok = getattr(usage, "prompt_tokens", None)
        c_tok = getattr(usage, "completion_tokens", None)
        p_tok = int(p_tok) if p_tok is not None else messages_tokens(messages)
        c_tok = int(c_tok) if c_tok is not None else estimate_tokens(text)
        return text, p_tok, c_tok, used_model or model, latency

    async def _streamed(self, sdk: Any, kwargs: dict[str, Any]) -> tuple[str, Any, str | None]:
        """Concatenate the deltas; usage comes from the final chunk (estimated if the server omits it)."""
        import openai

        try:
            extra = {"stream_options": {"include_usage": True}} if self._stream_options_ok else {}
            stream = await sdk.chat.completions.create(**kwargs, stream=True, **extra)
        except openai.BadRequestError as exc:
            if not extra or "stream_options" not in _server_message(exc):
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

    # -- error mapping -----------------------------------------------------------------------------
    def _status_error(self, exc: Any, model: str, purpose: str) -> Exception:
        status, msg = exc.status_code, _server_message(exc)
        if status == 429:
            return _Transient(f"429 rate limited: {msg}", f"rate limited (429) by {self.base_url}", f": {msg}",
                              _retry_after(exc.response.headers))
        if status >= 500 or status in (408, 409):
            return _Transient(f"{status} server error: {msg}", f"server error {status} from {self.base_url}",
                              f": {msg}", _retry_after(exc.response.headers))
        if status == 401:
            return self._error(purpose, "authentication failed (check OPENAI_API_KEY)")
        if status == 403:
            return self._error(purpose, f"permission denied by {self.base_url}: {msg}")
        if status == 404:
            return self._error(purpose, f"model '{model}' not found at {self.base_url} ({msg})")
        if not isinstance(exc.body, (dict, str)) or (isinstance(exc.body, str) and exc.body.lstrip()[:1] == "<"):
            return self._error(purpose, self._not_json(f" (HTTP {status})"))
        return _Rejected(status, msg)

    def _transport(self, cause: BaseException) -> _Transient:
        """httpx's error (the SDK's cause): refused, timed out, or dropped mid-answer."""
        name = type(cause).__name__
        if "Timeout" in name:
            return self._timeout()
        if "Connect" in name:
            return _Transient(f"connection failed: {cause}", f"cannot reach {self.base_url}",
                              " (is the server running? is the base URL right?)")
        detail = " ".join(str(cause).split())[:160] or name or "connection closed"
        return _Transient(f"connection lost: {detail}", f"connection to {self.base_url} lost", f": {detail}")

    def _timeout(self) -> _Transient:
        return _Transient("timeout", f"no answer from {self.base_url} within {self.settings.timeout_s:g}s")

    def _rejected(self, exc: _Rejected) -> str:
        return f"request rejected by {self.base_url} ({exc.status}): {exc.message}"

    def _not_json(self, extra: str = "") -> str:
        return (f"server at {self.base_url} did not answer JSON{extra}; is this an OpenAI-compatible "
                "API (the base URL usually ends in /v1)?")

    def _error(self, purpose: str, message: str) -> LLMError:
        return LLMError(self._scrub(f"{purpose}: {message}" if purpose else message))

    def _scrub(self, text: str) -> str:
        key = self.settings.api_key
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        return re.sub(r"\bsk-[A-Za-z0-9_\-]{6,}", "sk-***", text)

    # -- plumbing ----------------------------------------------------------------------------------
    def _client(self) -> Any:
        """The SDK client, created on first use in the running loop (its pool is tied to the loop)."""
        loop = asyncio.get_running_loop()
        if self._sdk is None or self._sdk_loop is not loop:
            import openai

            s = self.settings
            key = s.api_key or (PLACEHOLDER_KEY if s.base_url else None)
            self._sdk = openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=s.timeout_s)
            self._sdk_loop = loop
        return self._sdk

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._sem_loop is not loop:
            self._semaphore = asyncio.Semaphore(max(1, int(self.settings.max_concurrency)))
            self._sem_loop = loop
        return self._semaphore

    def _count(self, p_tok: int, c_tok: int, latency: float, price: Any) -> None:
        t = self.totals
        t.calls += 1
        t.prompt_tokens += p_tok
        t.completion_tokens += c_tok
        t.seconds += latency
        if price:
            get = price.get if isinstance(price, dict) else (lambda k: getattr(price, k))
            t.cost_usd = (t.cost_usd or 0.0) + (p_tok * get("input") + c_tok * get("output")) / 1e6
        self._emit_totals()

    def _emit_totals(self) -> None:
        self.emit(Event("llm", self.totals.as_dict()))

    def _from_cache(self, key: str, schema: type[BaseModel] | None) -> Completion | None:
        entry = self.cache.get(key)
        if entry is None:
            return None
        data = None
        if schema is not None:
            try:
                data = validate(extract_json(entry["text"]), schema)
            except ValueError:
                return None  # a stale entry is a miss
        self.totals.cached += 1
        self._emit_totals()
        return Completion(text=entry["text"], data=data, prompt_tokens=int(entry.get("prompt_tokens", 0)),
                          completion_tokens=int(entry.get("completion_tokens", 0)),
                          model=str(entry.get("model") or self.settings.model), latency_s=0.0, cached=True)

    def _offline(self, messages, model, schema, purpose, offline_reply) -> Completion:
        """Deterministic, labelled stand-in; no network, no cache, no budget."""
        try:
            text, data = offline_answer(messages, purpose, schema, offline_reply() if offline_reply else None)
        except ValueError as exc:
            raise self._error(purpose, str(exc)) from None
        p_tok, c_tok = messages_tokens(messages), estimate_tokens(text)
        self._count(p_tok, c_tok, 0.0, None)
        return Completion(text=text, data=data, prompt_tokens=p_tok, completion_tokens=c_tok, model=model,
                          latency_s=0.0, offline=True)


def _with_hint(messages: list[dict], schema: type[BaseModel]) -> list[dict]:
    """For servers without response_format: say in the system prompt what JSON we need (merged into
    the first system message, since some chat templates reject a system message anywhere else)."""
    hint = ("Answer with only a JSON object (no prose, no code fence) that matches this JSON Schema:\n"
            + json.dumps(schema.model_json_schema(), separators=(",", ":")))
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{hint}"}, *messages[1:]]
    return [{"role": "system", "content": hint}, *messages]


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        body = body.get("message", body) if isinstance(body, dict) else body
    text = body if isinstance(body, str) and body.strip() else getattr(exc, "message", "") or str(exc)
    if isinstance(text, str) and text.lstrip().startswith("<"):
        text = "(HTML error page)"
    return " ".join(str(text).split())[:240]


def _retry_after(headers: Any) -> float | None:
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
