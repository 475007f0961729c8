"""What a model server's reply says, read defensively: text, usage, finish reason, wait hints.

Why not the SDK's response types: they are built without validation, so a server that sends usage
as a string, `choices: ["x"]` or content as a list of parts gets through as odd objects and fails a
task later with a raw exception, after the answer was paid for. Here every field is checked where
it enters: text is made valid UTF-8 (a lone surrogate becomes U+FFFD, so no later write can fail),
content parts are joined, and a token count that is not a sane non-negative integer is unknown
(`None`, estimated by the caller), never trusted: a negative count would defeat the token budget.
"""
from __future__ import annotations

import email.utils
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping

from utils.text import bracket_depth, valid_text

MAX_BODY_DEPTH = 64        # a chat reply nests four levels; a body far deeper would make json.loads recurse
MAX_COUNT = 100_000_000    # more tokens than any one call can use: a count above it is not believed
_WAIT_HEADERS = (("retry-after-ms", 1000.0), ("retry-after", 1.0))
_RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class NotJSON(Exception):
    """The body is not an OpenAI-style chat-completion reply (or SSE stream of chunks)."""


@dataclass
class Parsed:
    """One reply as far as the app needs it; counts are None when the server did not give a sane one."""
    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    model: str | None = None
    finish: str | None = None


def loads(raw: str | bytes) -> Any:
    """json.loads, refusing (ValueError) a body nested deeper than any reply before it recurses."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # UnicodeDecodeError is a ValueError
    if bracket_depth(text) > MAX_BODY_DEPTH:
        raise ValueError(f"nested deeper than {MAX_BODY_DEPTH} levels")
    return json.loads(text, parse_constant=lambda name: None)  # NaN/Infinity: unknown, not a float


def count(value: Any) -> int | None:
    """A token count if `value` is a sane one (a non-negative integer, or a float equal to one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        return None
    return int(value) if 0 <= value <= MAX_COUNT else None


def content_text(content: Any) -> str:
    """A message's content: a string, or a list of parts whose text parts are joined."""
    if isinstance(content, str):
        return valid_text(content)
    if isinstance(content, list):
        texts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in content]
        return valid_text("".join(t for t in texts if isinstance(t, str)))
    return ""


def _usage(parsed: Parsed, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    parsed.prompt_tokens = count(usage.get("prompt_tokens"))
    parsed.completion_tokens = count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    parsed.cached_tokens = count(details.get("cached_tokens")) if isinstance(details, dict) else None


def _model(value: Any) -> str | None:
    return valid_text(value)[:200] if isinstance(value, str) and value else None


def parse_reply(raw: bytes) -> Parsed:
    """A chat-completion JSON body; NotJSON for anything else (HTML, no `choices`, deep nesting)."""
    try:
        data = loads(raw)
    except ValueError:
        raise NotJSON() from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise NotJSON()
    message = choices[0].get("message")
    parsed = Parsed(text=content_text(message.get("content")) if isinstance(message, dict) else "",
                    model=_model(data.get("model")), finish=_finish(choices[0]))
    _usage(parsed, data.get("usage"))
    return parsed


def _finish(choice: dict) -> str | None:
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) and reason else None


class StreamReader:
    """Server-sent events of a streamed reply, one `data:` line at a time."""

    def __init__(self) -> None:
        self.parsed, self.chunks, self.done = Parsed(), 0, False
        self._parts: list[str] = []

    def line(self, line: str) -> str:
        """Take one line; returns the new text it carried (may be empty). NotJSON for a bad chunk."""
        if not line.startswith("data:"):
            return ""  # comments (`: ping`), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = loads(data)
        except ValueError:
            raise NotJSON() from None
        if not isinstance(chunk, dict):
            raise NotJSON()
        self.chunks += 1
        self.parsed.model = _model(chunk.get("model")) or self.parsed.model
        if chunk.get("usage") is not None:
            _usage(self.parsed, chunk.get("usage"))
        new = []
        for choice in chunk.get("choices") if isinstance(chunk.get("choices"), list) else []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                new.append(content_text(delta.get("content")))
            self.parsed.finish = _finish(choice) or self.parsed.finish
        text = "".join(new)
        self._parts.append(text)
        return text

    def result(self) -> Parsed:
        if not self.chunks:
            raise NotJSON()
        self.parsed.text = "".join(self._parts)
        return self.parsed

    @property
    def finished(self) -> bool:
        """A stream is a whole reply only once a choice said why it stopped."""
        return self.parsed.finish is not None


def server_message(raw: str) -> str:
    """The server's error message: `error.message` of a JSON body, else the body's text, one line."""
    try:
        body: Any = loads(raw)
    except ValueError:
        body = raw
    if isinstance(body, dict):
        body = body.get("error", body)
        body = body.get("message", body) if isinstance(body, dict) else body
    text = body if isinstance(body, str) and body.strip() else json.dumps(body) if body else "(empty reply)"
    if text.lstrip().startswith("<"):
        text = "(HTML error page)"
    return " ".join(valid_text(text).split())[:240]


def wait_hint(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, `Retry-After` (seconds or an HTTP date),
    a proxy's `*-retry-after` (LiteLLM's `llm_provider-retry-after`), else the longest of
    `x-ratelimit-reset-requests/tokens` (OpenAI's `1s`, `6m0s`, `20ms`). None if none is readable."""
    if headers is None:
        return None
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    names = [(n, d) for n, d in _WAIT_HEADERS] + \
        [(n, 1.0) for n in sorted(lower) if n.endswith("-retry-after") and n != "retry-after"]
    for name, divisor in names:
        seconds = _seconds(lower.get(name), divisor)
        if seconds is not None:
            return seconds
    resets = [_duration(lower.get(n)) for n in _RESET_HEADERS]
    resets = [r for r in resets if r is not None]
    return max(resets) if resets else None


def _seconds(raw: str | None, divisor: float) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw) / divisor
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _duration(raw: str | None) -> float | None:
    """`1s`, `6m0s`, `1h2m`, `20ms` or a plain number of seconds."""
    if raw is None:
        return None
    plain = _seconds(raw, 1.0) if not re.search(r"[a-zA-Z]", raw) else None
    if plain is not None:
        return plain
    parts = _DURATION.findall(raw.strip())
    if not parts or "".join(n + u for n, u in parts) != raw.strip():
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)
