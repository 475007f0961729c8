"""Per-call cost (`utils/model/pricing.py`): each call event's `cost_usd` and the run's total come
from one formula, so report.html's table of calls adds up to the summary's cost."""
from __future__ import annotations

import pytest

from fakes.fake_llm import Reply
from tests.test_llm import ask, client
from utils.events import Collector
from utils.model.pricing import call_cost, price_for

PRICES = {"fake-model": {"input": 2.0, "output": 8.0, "cached_input": 0.5}}


def test_call_cost_prices_cached_prompt_tokens_apart():
    assert call_cost(PRICES["fake-model"], 1000, 400, 100) == pytest.approx((600 * 2 + 400 * 0.5 + 100 * 8) / 1e6)
    assert call_cost({"input": 1.0, "output": 1.0}, 10, 4, 0) == pytest.approx(10 / 1e6)  # no cached price: input
    assert call_cost(None, 10, 0, 10) is None and price_for(PRICES, "other", "fake-model") is PRICES["fake-model"]


def test_each_call_carries_its_cost_and_they_add_up_to_the_total(fake_llm, orch_home):
    events = Collector()
    usages = [(1200, 80, 512), (300, 40, 0)]
    for prompt, completion, cached in usages:
        fake_llm.push(Reply(text="ok", usage={"prompt_tokens": prompt, "completion_tokens": completion,
                                              "prompt_tokens_details": {"cached_tokens": cached}}))
    llm = client(fake_llm, orch_home, emit=events, prices=PRICES)
    for i in range(len(usages)):
        ask(llm, [{"role": "user", "content": f"question {i}"}], purpose=f"task t{i} (writer)")
    costs = [c["cost_usd"] for c in events.of("call")]
    expected = [((p - c) * 2.0 + c * 0.5 + o * 8.0) / 1e6 for p, o, c in usages]  # computed here, by hand
    assert costs == pytest.approx(expected)
    assert llm.totals.cost_usd == pytest.approx(sum(expected))
