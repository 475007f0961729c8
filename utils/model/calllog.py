"""The call log: one `call` event per model call, like `llm logs`, with secrets scrubbed.

Emitted by both the real client and the offline model, for cached, offline and failed calls too,
so a run folder's calls.jsonl tells the whole story of what was asked and answered. The same
`scrub` protects error messages, retry reasons and this log.
"""
from __future__ import annotations

import re
from typing import Any

from utils.events import Event

_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6,})")
_URL_SECRETS = re.compile(r"(?i)(https?://)[^/\s@]+@|([?&](?:api[-_]?key|key|token|access_token)=)[^&\s]+")


def scrub(text: str, key: str | None) -> str:
    """`text` without the API key, `sk-...` tokens, URL credentials or `?api-key=` values."""
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    text = _KEYLIKE.sub("sk-***", text)
    return _URL_SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + ("***@" if m.group(1) else "***"), text)


def call_event(*, purpose: str, model: str, messages: list[dict], reply: str | None, key: str | None,
               prompt_tokens: int = 0, completion_tokens: int = 0, cached_tokens: int = 0,
               latency_s: float = 0.0, cached: bool = False, retries: int = 0,
               error: str | None = None, offline: bool = False, cost_usd: float | None = None) -> Event:
    """The `call` event of one model call; every string in it is scrubbed. `cost_usd`: what the
    call cost at the configured prices (None: no price, a cache hit, offline or failed)."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return scrub(value, key)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return Event("call", {"purpose": purpose, "model": model, "messages": clean(messages),
                          "reply": clean(reply), "prompt_tokens": prompt_tokens,
                          "completion_tokens": completion_tokens, "cached_tokens": cached_tokens,
                          "latency_s": round(latency_s, 3), "cached": cached, "offline": offline,
                          "retries": retries, "error": clean(error), "cost_usd": cost_usd})
