"""What one model call costs, from the configured prices (USD per 1M tokens).

One formula for the run's running total (`LLMClient._count`) and for each call's own cost in the
call log (`report.html`'s table of model calls), so the two always add up.
"""
from __future__ import annotations

from typing import Any


def price_for(prices: dict | None, *models: str | None) -> Any:
    """The first configured price among `models` (the requested model, then the served one)."""
    prices = prices or {}
    for model in models:
        if model and prices.get(model):
            return prices[model]
    return None


def call_cost(price: Any, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float | None:
    """USD for one call under `price` ({input, output, cached_input?} as a dict or an object);
    cached prompt tokens are priced at `cached_input` (else `input`). None when there is no price."""
    if not price:
        return None
    get = price.get if isinstance(price, dict) else (lambda k: getattr(price, k, None))
    cached_price = get("cached_input")
    cached_price = get("input") if cached_price is None else cached_price
    return ((prompt_tokens - cached_tokens) * get("input") + cached_tokens * cached_price
            + completion_tokens * get("output")) / 1e6
