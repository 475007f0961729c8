"""Faults a real server has: a concurrency cap answered with 429, outages, and settings that can
never work. Every figure is read from the fake servers' records (fakes/fake_faults.py)."""
from __future__ import annotations

import asyncio
import importlib
import time

import pytest

from tests.conftest import TEST_API_KEY
from fakes.fake_faults import CappedServer, OutageServer
from utils.errors import LLMError, UsageError
from utils.events import Collector
from utils.model.client import LLMClient
from utils.model.limits import AdaptiveLimit, backoff
from utils.model.settings import LLMSettings, safe_base_url, settings_from_env


def settings(base_url: str, **kw) -> LLMSettings:
    return LLMSettings(provider="openai", model="fake-model", base_url=base_url, api_key=TEST_API_KEY,
                       cache=False, **kw)


def run_many(llm: LLMClient, n: int):
    async def many():
        return await asyncio.gather(*[llm.complete([{"role": "user", "content": f"task {i}"}], purpose=f"task t{i}")
                                      for i in range(n)])
    return asyncio.run(many())


# -- adaptive concurrency --------------------------------------------------------------------------
def test_limit_halves_once_per_wave_and_grows_back():
    async def scenario():
        limit = AdaptiveLimit(8)
        epochs = [await limit.acquire() for _ in range(8)]
        for e in epochs[:5]:  # five calls of the same wave report a 429: one decrease, not five
            limit.overloaded(e)
        assert limit.limit == 4.0
        for _ in range(8):
            limit.release()
        assert limit.in_flight == 0
        grown = []
        for _ in range(40):  # saturated successes: +1/limit each, never past the ceiling
            slots = [await limit.acquire() for _ in range(int(limit.limit))]
            limit.succeeded()
            for _ in slots:
                limit.release()
            grown.append(limit.limit)
        assert grown == sorted(grown) and 4.0 < grown[-1] <= 8.0
        return limit

    assert asyncio.run(scenario()).lowest == 4.0


def test_a_slot_waits_and_is_handed_over():
    async def scenario():
        limit = AdaptiveLimit(1)
        order = []

        async def call(name):
            async with _slot(limit):
                order.append(f"{name}+")
                await asyncio.sleep(0.01)
                order.append(f"{name}-")

        await asyncio.gather(call("a"), call("b"), call("c"))
        return order

    order = asyncio.run(scenario())
    assert order == ["a+", "a-", "b+", "b-", "c+", "c-"]  # never two at once


class _slot:
    def __init__(self, limit):
        self.limit = limit

    async def __aenter__(self):
        await self.limit.acquire()

    async def __aexit__(self, *exc):
        self.limit.release()


def test_42_calls_against_a_server_taking_2_at_once_all_succeed():
    """The issue's case, scaled in time (0.1 s latency instead of 1 s) with default settings:
    the run-wide limit adapts to the server instead of failing tasks with 429s."""
    with CappedServer(capacity=2, latency=0.1) as server:
        events = Collector()
        llm = LLMClient(settings(server.base_url), emit=events)
        replies = run_many(llm, 42)
    assert len(replies) == 42 and all(r.text == "ok" for r in replies)
    assert len(server.completed()) == 42
    assert llm.limit.lowest <= 2
    # Without the decrease, 8 calls keep hammering a server that takes 2: about 90 429s, not this.
    assert server.rejected <= 45, server.rejected
    assert len(events.of("retry")) == server.rejected  # every 429 was retried, none lost a task


def test_retry_after_is_a_floor_and_waits_are_jittered():
    waits = [backoff(0, 1.0, base=0.5, cap=20.0) for _ in range(200)]
    assert min(waits) >= 1.0 and max(waits) <= 1.5
    assert max(waits) - min(waits) > 0.3  # spread out: no burst of retries at the same instant
    assert backoff(3, 3600.0, base=0.5, cap=2.0) <= 4.0  # capped floor plus capped jitter
    assert all(0 <= backoff(a, None, base=0.5, cap=2.0) <= 2.0 for a in range(40))


# -- outages: retried by elapsed time, not a fixed number of attempts -------------------------------
def test_an_outage_loses_no_call():
    """Down for 1.5 s with 50 ms backoff steps: far more than the 5 attempts that used to be all a
    call got; the call keeps trying until its deadline (120 s by default)."""
    with OutageServer() as server:
        llm = LLMClient(settings(server.base_url, backoff_base_s=0.05, backoff_max_s=0.2))
        server.outage(1.5)
        started = time.monotonic()
        replies = run_many(llm, 4)
    assert [r.text for r in replies] == ["ok"] * 4
    assert time.monotonic() - started >= 1.4 and server.failed > 4 * 5
    assert llm.totals.retries >= 4 * 5


def test_the_retry_deadline_bounds_a_long_outage():
    from utils.model.preload import tls_context

    tls_context()  # the SDK and its CA bundle loaded now (over 1 s under load): no part of the outage's deadline
    with OutageServer() as server:
        llm = LLMClient(settings(server.base_url, backoff_base_s=0.05, backoff_max_s=0.1, retry_deadline_s=0.6))
        server.outage(30)
        started = time.monotonic()
        with pytest.raises(LLMError, match=r"^planning: .* after \d+ attempts"):
            asyncio.run(llm.complete([{"role": "user", "content": "hi"}], purpose="planning"))
    assert time.monotonic() - started < 2.0


# -- what can never work is not retried ------------------------------------------------------------
@pytest.mark.parametrize("base_url", ["ftp://127.0.0.1/v1", "localhost:11434/v1", "http://[::1", "http://",
                                      "http://127.0.0.1:99999/v1"])
def test_bad_base_urls_are_usage_errors(base_url):
    with pytest.raises(UsageError) as err:
        settings_from_env({"base_url": base_url}, {}, env={})
    assert "\n" not in str(err.value) and err.value.exit_code == 2


@pytest.mark.parametrize("key", ["sk-clé-123456", "sk-abc\ndef", "sk-abc def", "sk-\x00abc"])
def test_keys_that_cannot_be_sent_are_usage_errors(key):
    with pytest.raises(UsageError, match="API key") as err:
        settings_from_env({}, {}, env={"OPENAI_API_KEY": key})
    assert key not in str(err.value)


@pytest.mark.parametrize("scheme,key", [("ftp", TEST_API_KEY), ("http", "sk-clé-123456"), ("http", "sk-abc\ndef")])
def test_unsendable_requests_fail_at_once_without_retries(fake_llm, scheme, key):
    """Settings built in code skip settings_from_env's checks: the client still must not retry."""
    events = Collector()
    base_url = fake_llm.base_url.replace("http", scheme, 1)
    s = LLMSettings(provider="openai", base_url=base_url, api_key=key, cache=False, backoff_base_s=0.5)
    importlib.import_module("httpx")  # not timed: the import is not the point here
    started = time.monotonic()
    with pytest.raises(LLMError) as err:
        asyncio.run(LLMClient(s, emit=events).complete([{"role": "user", "content": "hi"}], purpose="planning"))
    assert events.of("retry") == [] and time.monotonic() - started < 1.0
    assert str(err.value).startswith("planning: cannot send a request") and key not in str(err.value)
    assert fake_llm.requests == []


def test_base_urls_are_shown_without_credentials_or_query():
    assert safe_base_url("https://user:sk-SECRET@host.example:8443/v1?api-key=SECRET2#x") == \
        "https://host.example:8443/v1"
    assert safe_base_url("http://[::1]:8080/v1") == "http://[::1]:8080/v1"
    assert safe_base_url("http://[::1") == "http://(invalid)"
    assert safe_base_url(None) is None
    llm = LLMClient(settings("http://me:sk-SECRET@127.0.0.1:9/v1?key=SECRET2"))
    assert "SECRET" not in llm.base_url


def test_credentials_in_the_base_url_are_never_saved(fake_llm, tmp_path):
    from tests.scripted import Script
    from tests.test_resume import SIX_SECTIONS, cli_env, fast_config, only_run, run_main

    fake_llm.responder = Script(plans=[SIX_SECTIONS])
    url = fake_llm.base_url.replace("http://", "http://admin:sk-URLSECRET99@")
    out = tmp_path / "runs"
    done = run_main(["--example", "blog", "--no-cache", "--output-dir", str(out), "--max-revisions", "0",
                     "--config", str(fast_config(tmp_path / "fast.yaml"))], cli_env(tmp_path / "home", url))
    assert done.code == 0, done.explain()
    assert "URLSECRET" not in done.output
    run_dir = only_run(out)
    saved = "".join(p.read_text(encoding="utf-8", errors="replace") for p in run_dir.rglob("*") if p.is_file())
    assert "URLSECRET" not in saved and fake_llm.base_url in saved  # stored, but without the credentials


def test_a_server_never_reached_gets_a_short_deadline(monkeypatch):
    """Connection refused before any answer is more likely a wrong port than an outage: the user
    hears so in seconds, not after the 2-minute outage deadline."""
    import socket

    import utils.model.client as client_module

    monkeypatch.setattr(client_module, "UNREACHED_DEADLINE_S", 0.5)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = LLMClient(settings(f"http://127.0.0.1:{port}/v1", backoff_base_s=0.05, backoff_max_s=0.1,
                             retry_deadline_s=5.0))
    started = time.monotonic()
    with pytest.raises(LLMError, match="cannot reach"):
        asyncio.run(llm.complete([{"role": "user", "content": "hi"}], purpose="planning"))
    assert time.monotonic() - started < 3.0
