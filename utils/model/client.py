"""The one boundary between the app and language models.

Everything that talks to a model goes through `complete()`, so retries, the run-wide concurrency
limit, the response cache, the token budget, structured output, the call log and the usage totals
are implemented once. `make_model` picks the real client or the offline model once, when a run's
model is made, and both answer the same `complete()`. This is the ONE retry layer: the `openai` SDK
underneath has its retries off (utils/model/transport.py), and nodes never retry. Error messages are
one line, name the task (`purpose`) and never contain the API key or the credentials of a base URL.

A reply cut at `max_tokens` (finish reason "length") is not a finished answer: a text reply is
continued where it stopped (up to `CONTINUATIONS` times, joined seamlessly, with a notice); a
structured one is an error naming max_tokens, since half a JSON object cannot be continued safely.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from utils.errors import BudgetExceeded, LLMError, ModelChoiceError
from utils.events import Emit, Event, null_emit
from utils.model.cache import ResponseCache, cache_key
from utils.model.calllog import call_event, scrub
from utils.model.limits import AdaptiveLimit, CallPool, backoff
from utils.model.offline import OfflineModel, StandIns
from utils.model.pricing import call_cost, price_for
from utils.model.settings import Completion, LLMSettings, Totals  # noqa: F401 - part of this module's API
from utils.model.structured import extract_json, json_schema_for, salvaged, validate
from utils.model.reply import Parsed
from utils.model.tokens import estimate_tokens, messages_tokens
from utils.model.transport import Fatal, Rejected, Transient, Transport

REPLY_RESERVE = 1024  # reply tokens a call reserves under a token budget when it sets no max_tokens
MIN_REPLY = 512       # ...and the fewest it may be cut to before the budget counts as spent
UNREACHED_DEADLINE_S = 15.0  # a server never reached yet is more likely a wrong URL than an outage
CONTINUATIONS = 2            # times a text reply cut at max_tokens is asked to go on
CONTINUE = ("Your reply was cut off by the length limit. Continue exactly where it stopped, without "
            "repeating anything and without any preamble.")
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)  # reasoning models' scratchpad
_NAMES_SCHEMA = re.compile(r"response_format|json_schema", re.IGNORECASE)


def make_model(settings: LLMSettings, *, emit: Emit = null_emit, home: Path | None = None,
               standins: StandIns | None = None, pool: CallPool | None = None) -> "LLMClient | OfflineModel":
    """The run's model: the offline model (answering from `standins`) or the real client; `pool`:
    the call limit and token budget of a batch, shared with its other runs."""
    if settings.provider == "offline":
        return OfflineModel(settings, emit=emit, standins=standins, home=home)
    return LLMClient(settings, emit=emit, home=home, pool=pool)


@dataclass
class Answer:
    """One reply with sane counts (estimated where the server gave none) and why it stopped."""
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    model: str
    latency_s: float
    finish: str | None = None

    @classmethod
    def of(cls, parsed: Parsed, latency_s: float, messages: list[dict], model: str) -> "Answer":
        text = _THINK.sub("", parsed.text, count=1)
        return cls(text=text, latency_s=latency_s, model=parsed.model or model, finish=parsed.finish,
                   prompt_tokens=messages_tokens(messages) if parsed.prompt_tokens is None else parsed.prompt_tokens,
                   completion_tokens=estimate_tokens(text) if parsed.completion_tokens is None
                   else parsed.completion_tokens,
                   cached_tokens=min(parsed.cached_tokens or 0, parsed.prompt_tokens or 0))

    def then(self, more: "Answer", text: str) -> "Answer":
        """This answer and a follow-up one as one: `text`, both calls' tokens and time."""
        return Answer(text=text, prompt_tokens=self.prompt_tokens + more.prompt_tokens,
                      completion_tokens=self.completion_tokens + more.completion_tokens,
                      cached_tokens=self.cached_tokens + more.cached_tokens, model=more.model,
                      latency_s=self.latency_s + more.latency_s, finish=more.finish)


@dataclass
class _Log:
    """What one `complete()` did, for its `call` event."""
    messages: list[dict] | None = None
    reply: str | None = None
    retries: int = 0
    on_text: Callable[[str], None] | None = None  # streams the reply's text so far to the caller


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
        self._model_lock: asyncio.Lock | None = None

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
                       purpose: str = "", on_text: Callable[[str], None] | None = None) -> Completion:
        """One answer from the model: text, or a validated `schema` instance in `.data`.

        `on_text`: the call streams, and `on_text` gets the reply's text so far after each piece
        (a retry or a repair starts a new text, shorter than the last: the caller sees it restart).
        A server that cannot stream answers whole; a cached reply calls nothing."""
        log = _Log(messages=messages, on_text=on_text)
        try:
            model = model or self.settings.model or await self.resolve_model()
        except LLMError as exc:
            self._log(purpose, model or "", log, error=str(exc))
            raise
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
            hit = self._from_cache(key, schema, purpose)
            if hit is not None:
                log.reply = hit.text
                return hit
        started = time.monotonic()
        if schema is None:
            ans, data = await self._text(messages, model, temperature, max_tokens, purpose, log), None
        else:
            ans, data = await self._structured(messages, model, temperature, max_tokens, schema, purpose, log)
        if key is not None:
            self.cache.put(key, model=ans.model, text=ans.text, prompt_tokens=ans.prompt_tokens,
                           completion_tokens=ans.completion_tokens)
        return Completion(text=ans.text, data=data, prompt_tokens=ans.prompt_tokens,
                          completion_tokens=ans.completion_tokens, model=ans.model,
                          latency_s=round(time.monotonic() - started, 3), cached_tokens=ans.cached_tokens)

    async def resolve_model(self) -> str:
        """The model of a custom server given none: its only one, named in a notice; several are
        listed in a one-line error (the default name of one provider means nothing to another)."""
        if self._model_lock is None:
            self._model_lock = asyncio.Lock()
        async with self._model_lock:
            if self.settings.model:
                return self.settings.model
            try:
                ids = await self.transport.models()
            except Fatal as exc:
                raise self._error("", f"no model given and {exc}; choose one with --model") from None
            if len(ids) != 1:
                listed = ", ".join(ids[:20]) + (f" (and {len(ids) - 20} more)" if len(ids) > 20 else "")
                why = f"offers {len(ids)} models: {listed}" if ids else "lists no models"
                raise ModelChoiceError(self._scrub(f"no model given and {self.base_url} {why}; "
                                                   "choose one with --model"))
            self.settings.model = ids[0]
            self.emit(Event("notice", {"level": "info", "message": f"using {ids[0]}, the only model "
                                       f"{self.base_url} serves (choose another with --model)"}))
            return ids[0]

    # -- text: continued when cut at max_tokens ------------------------------------------------------
    async def _text(self, messages, model, temperature, max_tokens, purpose, log) -> Answer:
        ans = await self._call(messages, model, temperature, max_tokens, None, purpose, log)
        asked = list(messages)
        for _ in range(CONTINUATIONS):
            if ans.finish != "length":
                break
            self.emit(Event("notice", {"level": "info", "message": f"{purpose or 'a reply'} was cut at "
                                       "max_tokens; asking the model to continue where it stopped"}))
            asked = [*asked, {"role": "assistant", "content": ans.text}, {"role": "user", "content": CONTINUE}]
            more = await self._call(asked, model, temperature, max_tokens, None, purpose, log)
            ans = ans.then(more, ans.text + more.text)
            asked = asked[:-2]  # the next round shows the whole text so far as one assistant message
        log.reply = ans.text
        return ans

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
        except Rejected as exc:  # only a refusal that names the parameter means it is unsupported
            if not use_rf or not _NAMES_SCHEMA.search(exc.message):
                raise self._error(purpose, self.transport.rejected(exc)) from None
            self.json_schema_supported = False
            self.emit(Event("notice", {"level": "info", "message": f"{self.base_url} does not accept "
                                       "response_format json_schema; asking for JSON in the prompt instead"}))
            rf, asked = None, _with_hint(messages, schema)
            first = await call(asked, None)
        self._whole(first, purpose)
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
        self._whole(second, purpose)
        both = first.then(second, second.text)
        try:
            return both, validate(extract_json(second.text), schema)
        except ValueError as exc:
            value = self._salvaged(second.text, schema, purpose)
            if value is None:
                raise self._error(purpose, f"model output did not match the schema: {exc}") from None
        return both, value

    def _salvaged(self, text: str, schema: type[BaseModel], purpose: str) -> BaseModel | None:
        """The reply mended by its schema's `salvage` (after the model's own repair failed, or from
        the cache, which keeps that reply), with a notice saying what changed; None if it cannot be."""
        fixed = salvaged(text, schema)
        if fixed is None:
            return None
        value, changes = fixed
        self.emit(Event("notice", {"level": "warn", "message": f"{purpose}: repaired after the model's repair "
                                   "failed: " + "; ".join(changes[:5]) + (f" (+{len(changes) - 5} more)" if len(changes) > 5 else "")}))
        return value

    def _whole(self, ans: Answer, purpose: str) -> None:
        if ans.finish == "length":
            raise self._error(purpose, "the structured reply was cut at max_tokens before it was complete; "
                              "raise max_tokens (or --max-tokens-total) or ask for less")

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
                parsed, latency = await self.transport.send(
                    messages, model, temperature, max_tokens, response_format, self._pieces(purpose, log),
                    stream=True if log.on_text is not None else None)
                self.limit.succeeded()
                self._reached = True
                return Answer.of(parsed, latency, messages, model)
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
            most = min(t for t in (None if s.max_retries is None else s.max_retries + 1,
                                   failure.max_tries, 10**9) if t is not None)
            if attempt + 1 >= most or time.monotonic() - started + wait > deadline:
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                raise self._error(purpose, f"{failure.final} after {tries}{failure.detail}") from None
            attempt += 1
            log.retries += 1
            self.totals.retries += 1
            self.emit(Event("retry", {"purpose": purpose, "attempt": attempt, "wait_s": round(wait, 3),
                                      "reason": self._scrub(failure.reason)}))
            await asyncio.sleep(wait)

    def _pieces(self, purpose: str, log: _Log) -> Callable[[str], None]:
        """Where one attempt's streamed pieces go: `delta` events (`--stream`) and the caller's `on_text`."""
        parts: list[str] = []

        def piece(text: str) -> None:
            if self.settings.stream:
                self.emit(Event("delta", {"purpose": purpose, "text": text}))
            if log.on_text is not None:
                parts.append(text)
                log.on_text("".join(parts))
        return piece

    # -- bookkeeping -------------------------------------------------------------------------------
    def _error(self, purpose: str, message: str) -> LLMError:
        return LLMError(self._scrub(f"{purpose}: {message}" if purpose else message))

    def _scrub(self, text: str) -> str:
        return scrub(text, self.settings.api_key)

    def _count(self, ans: Answer, model: str) -> None:
        t = self.totals
        t.calls += 1
        t.prompt_tokens += ans.prompt_tokens
        t.completion_tokens += ans.completion_tokens
        t.cached_tokens += ans.cached_tokens
        t.seconds += ans.latency_s
        if self.shared_budget is not None:
            self.shared_budget.spend(ans.prompt_tokens + ans.completion_tokens)
        cost = call_cost(price_for(self.settings.prices, model, ans.model), ans.prompt_tokens, ans.cached_tokens,
                         ans.completion_tokens)
        if cost is not None:
            t.cost_usd = (t.cost_usd or 0.0) + cost
        self.emit(Event("llm", t.as_dict()))

    def _log(self, purpose: str, model: str, log: _Log, out: Completion | None = None,
             error: str | None = None) -> None:
        cost = None  # what this call cost (a cache hit or a failed call costs nothing)
        if out is not None and not out.cached:
            cost = call_cost(price_for(self.settings.prices, model, out.model), out.prompt_tokens,
                             out.cached_tokens, out.completion_tokens)
        self.emit(call_event(
            purpose=purpose, model=out.model if out else model, messages=log.messages or [],
            reply=out.text if out else log.reply, key=self.settings.api_key,
            prompt_tokens=out.prompt_tokens if out else 0, completion_tokens=out.completion_tokens if out else 0,
            cached_tokens=out.cached_tokens if out else 0, latency_s=out.latency_s if out else 0.0,
            cached=bool(out and out.cached), retries=log.retries, error=error, cost_usd=cost))

    def _from_cache(self, key: str, schema: type[BaseModel] | None, purpose: str) -> Completion | None:
        entry = self.cache.get(key)
        if entry is None:
            return None
        data = None
        if schema is not None:
            try:
                data = validate(extract_json(entry["text"]), schema)
            except ValueError:
                data = self._salvaged(entry["text"], schema, purpose)
                if data is None:
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
