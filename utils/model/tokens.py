"""The one token estimator: budgets, context fitting, offline usage and servers that omit usage.

About 4 characters a token, rounded up. No tokenizer: the figure only has to be cheap, stable and
the same everywhere (the context budget and the token budget must agree on what a prompt costs).
"""
from __future__ import annotations

from typing import Any


def estimate_tokens(text: str) -> int:
    """Rough token count of `text` (4 characters a token, rounded up; 0 for empty text)."""
    return (len(text) + 3) // 4 if text else 0


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def messages_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(estimate_tokens(message_text(m)) for m in messages)
