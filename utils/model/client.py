"""The one boundary between the app and language models.

Everything that talks to a model goes through `complete()`, so retries, the run-wide concurrency
limit, the response cache, the token budget, structured output, the call log and the usage totals
are implemented once. `make_model` picks the real client or the offline model once, when a run's
model is made, and both answer the same `complete()`. This is the ONE retry layer: there is no SDK
underneath retrying on its own (utils/model/transport.py speaks HTTP), and nodes never retry. Error messages are one line, name the task (`purpose`) and
never contain the API key or the credentials of a base URL.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from utils.errors import BudgetExceeded, LLMError
from utils.events import Emit, Event, null_emit
from utils.model.cache import ResponseCache, cache_key
from utils.model.calllog import call_event, scrub
from utils.model.limits import AdaptiveLimit, CallPool, backoff
from utils.model.offline import OfflineModel, StandIns
from utils.model.settings import Completion, LLMSettings, Totals  # noqa: F401 - part of this module's API
from utils.model.structured import extract_json, json_schema_for, validate
from utils.model.tokens import messages_tokens
from utils.model.transport import Answer, Fatal, Rejected, Transient, Transport

REPLY_RESERVE = 1024  # reply tokens a call reserves under a token budget when it sets no max_tokens
MIN_REPLY = 512       # ...and the fewest it may be cut to before the budget counts as spent
UNREACHED_DEADLINE_S = 15.0  # a server never reached yet is more likely a wrong URL than an outage


def make_model(settings: LLMSettings, *, emit: Emit = null_emit, home: Path | None = None,
               standins: StandIns | None = None, pool: CallPool | None = None) -> "LLMClient | OfflineModel":
    """The run's model: the offline model (answering from `standins`) or the real client; `pool`:
    the call limit and token budget of a batch, shared with its other runs."""
    if settings.provider == "offline":
        return OfflineModel(settings, emit=emit, standins=standins, home=home)
    return LLMClient(settings, emit=emit, home=home, pool=pool)


@dataclass
class _Log:
    """What one `complete()` did, for its `call` event."""
    messages: list[dict] | None = None
    reply: str | None = None
    retries: int = 0


class LLMClient:
    """Model calls with one retry layer, an adaptive run-wide concurrency limit, cache, budget, totals."""

    offline = False

    def __init__(self, settings: LLMSettings, *, emit: Emit = null_emit, home: Path | None = None,
                 pool: CallPool | None = None) -> None:
        self.settings = settings
        self.emit = emit
        self.totals = Totals()
        self.cache = ResponseCache(home)
        self.json_schema_supported: bool | None = None  # learnt from the server on first structured call
        self.transport = Transport(settings)  # starts importing httpx in the background
        self.limit = pool.limit if pool is not None else AdaptiveLimit(settings.max_concurrency)
        self.shared_budget = pool.budget if pool is not None else None  # a batch's, beside this run's own
        self._reserved = 0
        self._reached = False  # has any request of this client been answered?

    @property
    def base_url(self) -> str:
        """The base URL as shown and saved: without credentials or query."""
        return self.transport.shown_url

    def totals_dict(self) -> dict[str, Any]:
        return self.totals.as_dict()

    async def aclose(self) -> None:
        """Close the HTTP connection pool (call at the end of the event loop that used it)."""
        await self.transport.aclose()

    # -- public call -------------------------------------------------------------------------------
    async def complete(self, messages: list[dict], *, model: str | None = None, temperature: float = 0.3,
                       max_tokens: int | None = None, schema: type[BaseModel] | None = None,
                       purpose: str = "") -> Completion:
        """One answer from the model: text, or a validated `schema` instance in `.data`."""
        model = model or self.settings.model
        log = _Log(messages=messages)
        try:
            out = await self._complete(messages, model, temperature, max_tokens, schema, purpose, log)
        except Exception as exc:
            self._log(purpose, model, log, error=str(exc) or type(exc).__name__)
            raise
        self._log(purpose, model, log, out)
        return out

    async def _complete(self, messages, model, temperature, max_tokens, schema, purpose, log) -> Completion:
        key = None
        if self.settings.cache:
            key = cache_key(model=model, messages=messages, temperature=temperature, max_tokens=max_tokens,
                            schema=schema, provider=self.settings.provider, base_url=self.base_url)
            hit = self._from_cache(key, schema)
            if hit is not None:
                log.reply = hit.text
                return hit
        started = time.monotonic()
        if schema is None:
            ans, data = await self._call(messages, model, temperature, max_tokens, None, purpose, log), None
        else:
            ans, data = await self._structured(messages, model, temperature, max_tokens, schema, purpose, log)
        if key is not None:
            self.cache.put(key, model=ans.model, text=ans.text, prompt_tokens=ans.prompt_tokens,
                           completion_tokens=ans.completion_tokens)
        return Completion(text=ans.text, data=data, prompt_tokens=ans.prompt_tokens,
                          completion_tokens=ans.completion_tokens, model=ans.model,
                          latency_s=round(time.monotonic() - started, 3), cached_tokens=ans.cached_tokens)

    # -- structured output -------------------------------------------------------------------------
    async def _structured(self, messages, model, temperature, max_tokens, schema, purpose, log):
        """response_format json_schema when the server takes it, else a prompt hint; then parse,
        validate and, once, show the model its exact validation error and ask again."""
        call = lambda asked, rf: self._call(asked, model, temperature, max_tokens, rf, purpose, log)  # noqa: E731
        use_rf = self.json_schema_supported is not False
        asked = list(messages) if use_rf else _with_hint(messages, schema)
        rf = json_schema_for(schema) if use_rf else None
        try:
            first = await call(asked, rf)
            if use_rf:
                self.json_schema_supported = True
        except Rejected as exc:
            mentions = re.search(r"response_format|json_schema|schema", exc.message, re.IGNORECASE)
            if not use_rf or not (mentions or self.json_schema_supported is None):
                raise self._error(purpose, self.transport.rejected(exc)) from None
            self.json_schema_supported = False
            self.emit(Event("notice", {"level": "info", "message": f"{self.base_url} does not accept "
                                       "response_format json_schema; asking for JSON in the prompt instead"}))
            rf, asked = None, _with_hint(messages, schema)
            first = await call(asked, None)
        try:
            return first, validate(extract_json(first.text), schema)
        except ValueError as exc:
            problem = str(exc)
        repair = [*asked, {"role": "assistant", "content": first.text},
                  {"role": "user", "content": f"Your reply did not match the required schema: {problem}\n"
                   "Answer again with only the corrected JSON object, no prose. The JSON Schema is:\n"
                   + json.dumps(schema.model_json_schema(), separators=(",", ":"))}]
        try:
            second = await call(repair, rf)
        except Rejected as exc:
            raise self._error(purpose, self.transport.rejected(exc)) from None
        both = Answer(text=second.text, prompt_tokens=first.prompt_tokens + second.prompt_tokens,
                      completion_tokens=first.completion_tokens + second.completion_tokens,
                      cached_tokens=first.cached_tokens + second.cached_tokens, model=second.model,
                      latency_s=first.latency_s + second.latency_s)
        try:
            return both, validate(extract_json(second.text), schema)
        except ValueError as exc:
            raise self._error(purpose, f"model output did not match the schema: {exc}") from None

    # -- one logical call: budget, retries, totals -------------------------------------------------
    async def _call(self, messages, model, temperature, max_tokens, response_format, purpose, log) -> Answer:
        log.messages, log.reply = messages, None
        reserved, max_tokens = self._reserve(messages, max_tokens)
        try:
            ans = await self._send(messages, model, temperature, max_tokens, response_format, purpose, log)
        finally:
            self._reserved -= reserved
            if self.shared_budget is not None:
                self.shared_budget.release(reserved)
        log.reply = ans.text
        self._count(ans, model)
        return ans

    def _reserve(self, messages: list[dict], max_tokens: int | None) -> tuple[int, int | None]:
        """Under a token budget, a hard cap: the call reserves its prompt and reply tokens and sends
        that reply size as `max_tokens`, so calls in flight together can never overspend it."""
        total = self.settings.max_tokens_total
        if not total and self.shared_budget is None:
            return 0, max_tokens
        used = self.totals.prompt_tokens + self.totals.completion_tokens
        prompt = messages_tokens(messages)
        wanted = max_tokens or REPLY_RESERVE
        reply = min(wanted, total - used - self._reserved - prompt) if total else wanted
        if reply < min(wanted, MIN_REPLY):
            flight = f", {self._reserved} reserved by calls in flight" if self._reserved else ""
            raise BudgetExceeded(f"token budget of {total} reached (used {used}{flight})")
        if self.shared_budget is not None:  # a batch's budget: the same reservation, across its runs
            reply = self.shared_budget.reserve(prompt, reply, min(wanted, MIN_REPLY))
        self._reserved += prompt + reply
        return prompt + reply, reply

    async def _send(self, messages, model, temperature, max_tokens, response_format, purpose, log) -> Answer:
        """The retry loop: transient failures are retried with jittered backoff until the call's
        deadline (or `max_retries`); a 429 also lowers the run-wide concurrency limit."""
        s = self.settings
        started, attempt = time.monotonic(), 0
        while True:
            epoch = await self.limit.acquire()
            try:
                ans = await self.transport.send(messages, model, temperature, max_tokens, response_format,
                                                lambda text: self.emit(Event("delta", {"purpose": purpose, "text": text})))
                self.limit.succeeded()
                self._reached = True
                return ans
            except Transient as exc:
                failure = exc
                if exc.overload:
                    self.limit.overloaded(epoch)
            except Fatal as exc:
                raise self._error(purpose, str(exc)) from None
            except Rejected as exc:
                if response_format is None:  # only structured calls have a fallback for a 400
                    raise self._error(purpose, self.transport.rejected(exc)) from None
                raise
            finally:
                self.limit.release()
            wait = backoff(attempt, failure.retry_after, base=s.backoff_base_s, cap=s.backoff_max_s)
            deadline = s.retry_deadline_s
            if failure.refused and not self._reached:
                deadline = min(deadline, UNREACHED_DEADLINE_S)
            if (s.max_retries is not None and attempt >= s.max_retries) or \
                    time.monotonic() - started + wait > deadline:
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                raise self._error(purpose, f"{failure.final} after {tries}{failure.detail}") from None
            attempt += 1
            log.retries += 1
            self.totals.retries += 1
            self.emit(Event("retry", {"purpose": purpose, "attempt": attempt, "wait_s": round(wait, 3),
                                      "reason": self._scrub(failure.reason)}))
            await asyncio.sleep(wait)

    # -- bookkeeping -------------------------------------------------------------------------------
    def _error(self, purpose: str, message: str) -> LLMError:
        return LLMError(self._scrub(f"{purpose}: {message}" if purpose else message))

    def _scrub(self, text: str) -> str:
        return scrub(text, self.settings.api_key)

    def _count(self, ans: Answer, model: str) -> None:
        t, prices = self.totals, self.settings.prices or {}
        t.calls += 1
        t.prompt_tokens += ans.prompt_tokens
        t.completion_tokens += ans.completion_tokens
        t.cached_tokens += ans.cached_tokens
        t.seconds += ans.latency_s
        if self.shared_budget is not None:
            self.shared_budget.spend(ans.prompt_tokens + ans.completion_tokens)
        price = prices.get(model) or prices.get(ans.model)
        if price:
            get = price.get if isinstance(price, dict) else (lambda k: getattr(price, k, None))
            cached_price = get("cached_input")
            cached_price = get("input") if cached_price is None else cached_price
            t.cost_usd = (t.cost_usd or 0.0) + ((ans.prompt_tokens - ans.cached_tokens) * get("input")
                                                + ans.cached_tokens * cached_price
                                                + ans.completion_tokens * get("output")) / 1e6
        self.emit(Event("llm", t.as_dict()))

    def _log(self, purpose: str, model: str, log: _Log, out: Completion | None = None,
             error: str | None = None) -> None:
        self.emit(call_event(
            purpose=purpose, model=out.model if out else model, messages=log.messages or [],
            reply=out.text if out else log.reply, key=self.settings.api_key,
            prompt_tokens=out.prompt_tokens if out else 0, completion_tokens=out.completion_tokens if out else 0,
            cached_tokens=out.cached_tokens if out else 0, latency_s=out.latency_s if out else 0.0,
            cached=bool(out and out.cached), retries=log.retries, error=error))

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
        self.emit(Event("llm", self.totals.as_dict()))
        return Completion(text=entry["text"], data=data, prompt_tokens=int(entry.get("prompt_tokens", 0)),
                          completion_tokens=int(entry.get("completion_tokens", 0)),
                          model=str(entry.get("model") or self.settings.model), latency_s=0.0, cached=True)


def _with_hint(messages: list[dict], schema: type[BaseModel]) -> list[dict]:
    """For servers without response_format: say in the system prompt what JSON we need (merged into
    the first system message, since some chat templates reject a system message anywhere else)."""
    hint = ("Answer with only a JSON object (no prose, no code fence) that matches this JSON Schema:\n"
            + json.dumps(schema.model_json_schema(), separators=(",", ":")))
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{hint}"}, *messages[1:]]
    return [{"role": "system", "content": hint}, *messages]
