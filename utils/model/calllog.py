"""The call log: one `call` event per model call, like `llm logs`, with secrets scrubbed.

Emitted by both the real client and the offline model, for cached, offline and failed calls too,
so a run folder's calls.jsonl tells the whole story of what was asked and answered. The same
`scrub` protects error messages, retry reasons and this log.
"""
from __future__ import annotations

from typing import Any

from utils.events import Event
from utils.text import add_secret
from utils.text import scrub as scrub_all


def scrub(text: str, key: str | None) -> str:
    """`text` through the one scrub (utils/text.py), with `key` registered as a secret first."""
    add_secret(key)
    return scrub_all(text)


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
