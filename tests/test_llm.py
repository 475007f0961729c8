"""LLMClient against a real HTTP fake server through the real `openai` SDK.

Backoffs are tiny so the retry tests stay fast; concurrency is proven with a barrier in the server,
never with sleeps in the test.
"""
from __future__ import annotations

import asyncio
import datetime
import email.utils
import socket
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from tests.conftest import TEST_API_KEY
from fakes.fake_llm import FakeLLMServer, Reply
from utils.errors import BudgetExceeded, LLMError, UsageError
from utils.events import Collector
from utils.model.client import LLMClient, LLMSettings, make_model
from utils.model.offline import OfflineModel
from utils.model.settings import settings_from_env
from utils.model.offline import LABEL

USER = [{"role": "system", "content": "You write."}, {"role": "user", "content": "Write one line about tea."}]


class Verdict(BaseModel):
    id: str
    score: int = Field(ge=0, le=10)


def client(server: FakeLLMServer, home: Path, *, emit=None, **kw) -> LLMClient:
    settings = LLMSettings(provider="openai", model="fake-model", base_url=server.base_url, api_key=TEST_API_KEY,
                           backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5.0, max_retries=2, cache=False)
    for name, value in kw.items():
        setattr(settings, name, value)
    return LLMClient(settings, emit=emit or Collector(), home=home)


def ask(llm: LLMClient, messages=USER, **kw):
    return asyncio.run(llm.complete(messages, **kw))


def error_of(llm: LLMClient, messages=USER, **kw) -> str:
    with pytest.raises(LLMError) as err:
        ask(llm, messages, **kw)
    msg = str(err.value)
    assert TEST_API_KEY not in msg and "\n" not in msg
    return msg


# -- text ------------------------------------------------------------------------------------------
def test_plain_text(fake_llm, tmp_path):
    fake_llm.push(Reply(text="Tea is calm in a cup.", usage={"prompt_tokens": 11, "completion_tokens": 6}))
    llm = client(fake_llm, tmp_path)
    out = ask(llm)
    assert out.text == "Tea is calm in a cup." and out.data is None
    assert (out.prompt_tokens, out.completion_tokens, out.model) == (11, 6, "fake-model")
    req = fake_llm.requests[0]
    assert req.messages == USER and req.model == "fake-model" and not req.stream and req.response_format is None
    assert req.headers["authorization"] == f"Bearer {TEST_API_KEY}"


def test_streamed_text_with_usage(fake_llm, tmp_path):
    fake_llm.push(Reply(text="Streaming works piece by piece.", usage={"prompt_tokens": 9, "completion_tokens": 7},
                        chunk_size=4))
    out = ask(client(fake_llm, tmp_path, stream=True))
    assert out.text == "Streaming works piece by piece."
    assert (out.prompt_tokens, out.completion_tokens) == (9, 7)
    req = fake_llm.requests[0]
    assert req.stream and req.body["stream_options"] == {"include_usage": True}


def test_streamed_pieces_are_emitted_as_they_arrive(fake_llm, tmp_path):
    """`--stream` shows text as it arrives: each SSE delta becomes a `delta` event for the display."""
    events = []
    fake_llm.push(Reply(text="Streaming works piece by piece.", chunk_size=4))
    out = ask(client(fake_llm, tmp_path, stream=True, emit=events.append), purpose="task t1 (writer)")
    deltas = [e.data for e in events if e.kind == "delta"]
    assert len(deltas) >= 5 and "".join(d["text"] for d in deltas) == out.text
    assert {d["purpose"] for d in deltas} == {"task t1 (writer)"}
    events.clear()
    fake_llm.push("Not streamed.")
    ask(client(fake_llm, tmp_path, emit=events.append))
    assert not [e for e in events if e.kind == "delta"]


def test_think_block_is_stripped(fake_llm, tmp_path):
    fake_llm.push("<think>let me see {draft}</think>\nFinal answer.")
    assert ask(client(fake_llm, tmp_path)).text == "Final answer."


def test_placeholder_key_for_local_servers(fake_llm, tmp_path):
    settings = settings_from_env({"base_url": fake_llm.base_url}, {}, env={})
    assert settings.provider == "openai" and settings.api_key is None
    asyncio.run(LLMClient(settings, home=tmp_path).complete(USER))
    assert fake_llm.requests[0].headers["authorization"] == "Bearer not-needed"


# -- structured output -----------------------------------------------------------------------------
def test_schema_via_response_format(fake_llm, tmp_path):
    fake_llm.push({"id": "t1", "score": 7})
    llm = client(fake_llm, tmp_path)
    out = ask(llm, schema=Verdict)
    assert out.data == Verdict(id="t1", score=7)
    rf = fake_llm.requests[0].response_format
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == "Verdict"
    assert llm.json_schema_supported is True


def test_fallback_when_server_refuses_json_schema(fake_llm, tmp_path):
    fake_llm.refuse_json_schema = True
    fake_llm.responder = lambda req: {"id": "t2", "score": 4}
    events = Collector()
    llm = client(fake_llm, tmp_path, emit=events)
    assert ask(llm, schema=Verdict).data == Verdict(id="t2", score=4)
    first, second = fake_llm.requests
    assert first.status == 400 and first.response_format["type"] == "json_schema"
    assert second.status == 200 and second.response_format is None
    assert "JSON Schema" in second.messages[0]["content"]  # the schema moved into the system prompt
    assert second.messages[0]["content"].startswith(USER[0]["content"]) and second.messages[1:] == USER[1:]
    assert llm.json_schema_supported is False and events.of("notice")
    ask(llm, schema=Verdict)  # remembered: no second refusal
    assert len(fake_llm.requests) == 3 and fake_llm.requests[2].response_format is None


@pytest.mark.parametrize("reply", [
    'Here is my verdict:\n```json\n{"id": "t3", "score": 5}\n```',
    'Sure. {"id": "t3", "score": 5} Let me know if you need more.',
    "```yaml\nid: t3\nscore: 5\n```",
    "id: t3\nscore: 5\n",
])
def test_lenient_parsing_needs_no_repair(fake_llm, tmp_path, reply):
    fake_llm.push(reply)
    assert ask(client(fake_llm, tmp_path), schema=Verdict).data == Verdict(id="t3", score=5)
    assert len(fake_llm.requests) == 1


def test_repair_round_trip_shows_the_validation_error(fake_llm, tmp_path):
    fake_llm.push({"id": "t4", "score": 42}, {"id": "t4", "score": 9})
    llm = client(fake_llm, tmp_path)
    out = ask(llm, schema=Verdict, purpose="task t4 (writer)")
    assert out.data.score == 9
    first, second = fake_llm.requests
    assert second.messages[:len(first.messages)] == first.messages
    assert second.messages[-2] == {"role": "assistant", "content": '{"id": "t4", "score": 42}'}
    assert "score: Input should be less than or equal to 10" in second.messages[-1]["content"]
    assert llm.totals.calls == 2 and out.prompt_tokens == llm.totals.prompt_tokens  # both calls counted


def test_persistent_bad_output_names_the_purpose(fake_llm, tmp_path):
    fake_llm.responder = lambda req: "I'd rather write a poem about tea."
    msg = error_of(client(fake_llm, tmp_path), schema=Verdict, purpose="task t3 (writer)")
    assert msg.startswith("task t3 (writer): model output did not match the schema:")
    assert len(fake_llm.requests) == 2


def test_a_breakdown_whose_references_stay_wrong_is_repaired_and_says_so(fake_llm, tmp_path):
    """What a schema cannot say (references between items) is salvaged after the model's repair,
    as a plan is: the dependency named by title becomes its id, the one naming nothing is dropped,
    and both the notice and the breakdown's own text say what changed."""
    from utils.run.outputs import WorkBreakdown

    bad = {"summary": "Launch.", "work_items": [
        {"id": "db", "name": "Design the database", "estimate_days": 2, "role": "backend"},
        {"id": "api", "name": "Build the API", "estimate_days": 3, "role": "backend",
         "depends_on": ["Design the database", "auth-service"]}]}
    fake_llm.push(bad, bad)
    events = Collector()
    out = ask(client(fake_llm, tmp_path, emit=events), schema=WorkBreakdown, purpose="task b (breakdown)")
    assert len(fake_llm.requests) == 2  # the model was asked to repair it first
    assert [(w.id, w.depends_on) for w in out.data.work_items] == [("db", []), ("api", ["db"])]
    notice = " ".join(e["message"] for e in events.of("notice"))
    assert notice.startswith("task b (breakdown): repaired after the model's repair failed")
    assert "'auth-service'" in notice and "'auth-service'" in out.data.markdown()
    assert "auth-service" not in str(out.data.model_dump())

    cached = client(fake_llm, tmp_path, emit=events, cache=True)  # the cache keeps the reply it was mended from
    fake_llm.push(bad, bad)
    ask(cached, schema=WorkBreakdown, purpose="task b (breakdown)")
    again = ask(client(fake_llm, tmp_path, emit=events, cache=True), schema=WorkBreakdown, purpose="task b (breakdown)")
    assert len(fake_llm.requests) == 4 and again.cached  # a re-run is served from the cache, mended the same way
    assert again.data.model_dump() == out.data.model_dump() and "'auth-service'" in again.data.markdown()


def test_a_reply_that_salvage_cannot_fix_still_fails(fake_llm, tmp_path):
    from utils.run.outputs import WorkBreakdown

    fake_llm.responder = lambda req: '{"summary": "x", "work_items": [{"id": "a", "name": "A", "estimate_days": 0, "role": "qa"}]}'
    msg = error_of(client(fake_llm, tmp_path), schema=WorkBreakdown, purpose="task b (breakdown)")
    assert msg.startswith("task b (breakdown): model output did not match the schema:") and "estimate_days" in msg


# -- retries ---------------------------------------------------------------------------------------
def test_429_with_retry_after_then_success(fake_llm, tmp_path):
    fake_llm.fail_next(429, retry_after=0)
    events = Collector()
    llm = client(fake_llm, tmp_path, emit=events)
    assert ask(llm).text == "ok"
    assert [r.status for r in fake_llm.requests] == [429, 200]
    assert llm.totals.retries == 1
    (retry,) = events.of("retry")
    assert retry["attempt"] == 1 and "429" in retry["reason"]


def test_retry_after_is_honoured_but_capped(fake_llm, tmp_path):
    fake_llm.fail_next(429, retry_after=0.2)
    fake_llm.push(Reply(status=503, headers={"Retry-After": "3600"}))
    events = Collector()
    llm = client(fake_llm, tmp_path, emit=events, backoff_max_s=0.3)
    ask(llm)
    first, second, third = fake_llm.requests
    assert second.t_in - first.t_out >= 0.19  # waited for the server's Retry-After
    # an hour is capped at backoff_max_s, and jitter (at most base * 2**attempt) is added on top
    assert 0.3 <= [e["wait_s"] for e in events.of("retry")][1] <= 0.3 + 0.02 + 0.001


def test_500_then_success(fake_llm, tmp_path):
    fake_llm.fail_next(500)
    llm = client(fake_llm, tmp_path)
    assert ask(llm).text == "ok"
    assert [r.status for r in fake_llm.requests] == [500, 200]
    assert llm.totals.calls == 1 and llm.totals.retries == 1


def test_dropped_connection_is_retried(fake_llm, tmp_path):
    fake_llm.push(Reply(drop_connection=True))
    assert ask(client(fake_llm, tmp_path)).text == "ok"
    assert len(fake_llm.requests) == 2


def test_timeout_is_retried_then_fails(fake_llm, tmp_path):
    fake_llm.responder = lambda req: Reply(latency=2.0)
    msg = error_of(client(fake_llm, tmp_path, timeout_s=0.3, max_retries=1), purpose="planning")
    assert msg.startswith("planning: no answer from") and "within 0.3s after 2 attempts" in msg
    assert len(fake_llm.requests) == 2


def test_persistent_500_gives_a_clear_error(fake_llm, tmp_path):
    fake_llm.fail_next(500, n=10, message="upstream overloaded")
    msg = error_of(client(fake_llm, tmp_path))
    assert msg == f"server error 500 from {fake_llm.base_url} after 3 attempts: upstream overloaded"
    assert len(fake_llm.requests) == 3


def test_401_is_not_retried(fake_llm, tmp_path):
    fake_llm.require_key = "sk-the-right-one"
    msg = error_of(client(fake_llm, tmp_path))
    assert msg == "authentication failed (check OPENAI_API_KEY)"
    assert len(fake_llm.requests) == 1


def test_404_is_not_retried(fake_llm, tmp_path):
    fake_llm.fail_next(404)
    msg = error_of(client(fake_llm, tmp_path), model="no-such-model")
    assert msg.startswith(f"model 'no-such-model' not found at {fake_llm.base_url}")
    assert len(fake_llm.requests) == 1


def test_other_400_is_a_clear_error(fake_llm, tmp_path):
    fake_llm.fail_next(400, message="max_tokens is too large")
    msg = error_of(client(fake_llm, tmp_path), purpose="task t1 (writer)")
    assert msg.startswith("task t1 (writer): request rejected by") and "max_tokens is too large" in msg


DEEP_BODY = '{"choices": ' + "[" * 20000 + "]" * 20000 + "}"


@pytest.mark.parametrize("stream, body", [(False, "<html><body>Welcome to nginx!</body></html>"),
                                          (True, "<html><body>Welcome to nginx!</body></html>"),
                                          (False, DEEP_BODY), (True, "data: " + DEEP_BODY + "\n\n")])
def test_non_json_body(fake_llm, tmp_path, stream, body):
    """A body nested 20,000 deep is refused before json.loads recurses: not JSON we can use."""
    fake_llm.push(Reply(body=body))
    msg = error_of(client(fake_llm, tmp_path, stream=stream))
    assert msg.startswith(f"server at {fake_llm.base_url} did not answer JSON")
    assert len(fake_llm.requests) == 1


def test_unreachable_base_url(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = LLMSettings(provider="openai", base_url=f"http://127.0.0.1:{port}/v1", api_key=TEST_API_KEY,
                           max_retries=1, backoff_base_s=0.01, backoff_max_s=0.02, cache=False)
    with pytest.raises(LLMError) as err:
        asyncio.run(LLMClient(settings, home=tmp_path).complete(USER, purpose="task t9 (writer)"))
    assert str(err.value).startswith(f"task t9 (writer): cannot reach http://127.0.0.1:{port}/v1 after 2 attempts")


# -- limits, totals, cache, budget -----------------------------------------------------------------
def test_concurrency_limit_is_never_exceeded(fake_llm, tmp_path):
    barrier = threading.Barrier(3, timeout=5)  # each group of 3 must be in flight together

    def respond(req):
        barrier.wait()
        return Reply(text="ok", latency=0.05)

    fake_llm.responder = respond
    llm = client(fake_llm, tmp_path, max_concurrency=3)

    async def many():
        return await asyncio.gather(*[llm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(12)])

    assert len(asyncio.run(many())) == 12
    assert 2 <= fake_llm.max_in_flight <= 3
    assert len(fake_llm.completed()) == 12


def test_usage_totals_add_up(fake_llm, tmp_path):
    fake_llm.push(Reply(text="a", usage={"prompt_tokens": 100, "completion_tokens": 10}),
                  Reply(text="b", usage={"prompt_tokens": 200, "completion_tokens": 20}))
    events = Collector()
    llm = client(fake_llm, tmp_path, emit=events, prices={"fake-model": {"input": 1.0, "output": 10.0}})
    ask(llm)
    ask(llm)
    t = llm.totals_dict()
    assert (t["calls"], t["prompt_tokens"], t["completion_tokens"], t["cached"]) == (2, 300, 30, 0)
    assert t["cost_usd"] == pytest.approx((300 * 1.0 + 30 * 10.0) / 1e6)
    assert t["seconds"] > 0
    assert events.of("llm")[-1] == t and len(events.of("llm")) == 2


def test_cache_hit_makes_no_request(fake_llm, orch_home):
    fake_llm.push({"id": "c1", "score": 3})
    first = client(fake_llm, None, cache=True)
    assert ask(first, schema=Verdict).data.id == "c1"
    second = client(fake_llm, None, cache=True)
    out = ask(second, schema=Verdict)
    assert out.cached and out.data == Verdict(id="c1", score=3)
    assert len(fake_llm.requests) == 1
    assert (second.totals.cached, second.totals.calls) == (1, 0)
    files = list((orch_home / "cache").rglob("*.json"))
    assert len(files) == 1 and TEST_API_KEY not in files[0].read_text()
    fake_llm.push({"id": "c2", "score": 1})
    assert ask(second, schema=Verdict, temperature=0.9).data.id == "c2"  # a different request is a miss
    assert len(fake_llm.requests) == 2


def test_budget_exceeded_before_calling(fake_llm, tmp_path):
    fake_llm.push(Reply(text="a", usage={"prompt_tokens": 600, "completion_tokens": 50}))
    llm = client(fake_llm, tmp_path, max_tokens_total=1000)
    ask(llm, max_tokens=100)
    with pytest.raises(BudgetExceeded, match=r"token budget of 1000 reached \(used 650\)"):
        ask(llm, max_tokens=400)
    assert len(fake_llm.requests) == 1


def test_api_key_never_in_errors(fake_llm, tmp_path):
    llm = client(fake_llm, tmp_path)
    fake_llm.fail_next(401, message=f"Incorrect API key provided: {TEST_API_KEY}")
    error_of(llm)
    fake_llm.fail_next(400, message=f"bad request from {TEST_API_KEY}")
    assert "***" in error_of(llm)
    fake_llm.fail_next(500, n=3, message=f"crash {TEST_API_KEY}")
    error_of(llm)
    assert TEST_API_KEY not in repr(llm.settings)


def test_client_survives_separate_event_loops(fake_llm, tmp_path):
    llm = client(fake_llm, tmp_path)
    assert ask(llm).text == "ok" and ask(llm).text == "ok"


# -- settings and offline --------------------------------------------------------------------------
def test_settings_resolution_order(monkeypatch):
    env = {"OPENAI_API_KEY": "k", "ORCH_MODEL": "env-model", "OPENAI_BASE_URL": ""}
    s = settings_from_env({}, {"model": "cfg-model", "timeout_s": 9, "strategy": "ignored"}, env=env)
    assert (s.provider, s.model, s.timeout_s, s.base_url) == ("openai", "env-model", 9, None)
    s = settings_from_env({"model": "flag-model"}, {"model": "cfg-model"}, env=env)
    assert s.model == "flag-model"
    assert settings_from_env({}, {"model": "cfg-model"}, env={}).provider == "offline"
    assert settings_from_env({"provider": "offline"}, {}, env=env).api_key is None
    with pytest.raises(UsageError):
        settings_from_env({"provider": "openai"}, {}, env={})
    with pytest.raises(UsageError):
        settings_from_env({"provider": "bogus"}, {}, env=env)


def test_llm_env_fixture_selects_the_fake_server(llm_env, tmp_path):
    settings = settings_from_env({})
    assert settings.provider == "openai" and settings.base_url == llm_env.base_url
    asyncio.run(LLMClient(settings, home=tmp_path).complete(USER))
    assert len(llm_env.completed()) == 1


def test_offline_provider_is_labelled_and_deterministic(tmp_path):
    asked = []
    standins = lambda purpose, schema: asked.append((purpose, schema)) or {"id": "t1", "score": 8}  # noqa: E731
    llm = make_model(LLMSettings(), home=tmp_path, standins=standins)
    assert isinstance(llm, OfflineModel) and llm.offline
    messages = [{"role": "user", "content": "# Goal\nA tea guide\n\n# Your task [t1]: Brew basics\nExplain steeping."}]
    a = asyncio.run(llm.complete(messages, purpose="task t1 (writer)"))
    b = asyncio.run(llm.complete(messages, purpose="task t1 (writer)"))
    assert a.text == b.text and a.offline and a.text.startswith(LABEL)
    assert "Brew basics" in a.text and "Explain steeping." in a.text and "A tea guide" in a.text
    assert asked == []  # text calls get the placeholder, never a stand-in
    out = asyncio.run(llm.complete(messages, schema=Verdict, purpose="review round 1"))
    assert out.data == Verdict(id="t1", score=8) and asked == [("review round 1", Verdict)]
    assert llm.totals.calls == 3 and llm.totals.prompt_tokens > 0
    llm.standins = lambda purpose, schema: {"id": "t1", "score": 80}
    with pytest.raises(LLMError, match="offline stand-in did not match"):
        asyncio.run(llm.complete(messages, schema=Verdict))


# -- the fake server's own coordination helpers ------------------------------------------------------
def test_fake_server_wait_for_and_models(fake_llm, tmp_path):
    import json
    import urllib.request

    release = threading.Event()
    fake_llm.push(Reply(text="first", wait_for=release))

    def second(req):
        release.set()  # the first request is still held: both are in flight now
        return "second"

    fake_llm.responder = second
    llm = client(fake_llm, tmp_path)

    async def both():
        first = asyncio.create_task(llm.complete([{"role": "user", "content": "a"}]))
        while not fake_llm.requests and not first.done():  # the first request reaches the server first
            await asyncio.sleep(0)
        return await asyncio.gather(first, llm.complete([{"role": "user", "content": "b"}]))

    texts = [c.text for c in asyncio.run(both())]
    assert texts == ["first", "second"] and fake_llm.max_in_flight == 2
    with urllib.request.urlopen(f"{fake_llm.base_url}/models", timeout=5) as resp:
        assert "fake-model" in [m["id"] for m in json.load(resp)["data"]]


def test_wait_hint_header_forms():
    from utils.model.reply import wait_hint

    assert wait_hint({"retry-after-ms": "250"}) == 0.25
    assert wait_hint({"Retry-After": "2"}) == 2.0
    assert wait_hint({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a past date
    assert 3590 < wait_hint({"retry-after": email.utils.format_datetime(
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1), usegmt=True)}) <= 3600
    assert wait_hint({"llm_provider-retry-after": "7"}) == 7.0  # LiteLLM passes the upstream's wait on so
    assert wait_hint({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}) == 360.0
    assert wait_hint({"x-ratelimit-reset-tokens": "20ms"}) == pytest.approx(0.02)
    assert wait_hint({"retry-after": "soon"}) is None and wait_hint({}) is None
    assert wait_hint({"retry-after": "inf", "x-ratelimit-reset-requests": "1h2m"}) == 3720.0


# -- the lean client: cache key, hard budget, call log, cached tokens, early SDK import ---------------
def test_two_servers_with_the_same_model_name_do_not_share_answers(orch_home):
    with FakeLLMServer() as one, FakeLLMServer() as two:
        one.push("from one")
        two.push("from two")
        assert ask(client(one, None, cache=True)).text == "from one"
        assert ask(client(two, None, cache=True)).text == "from two"  # not the first server's answer
        assert ask(client(one, None, cache=True)).cached  # the same server still hits
    assert len(one.requests) == 1 and len(two.requests) == 1


def _metered_by_max_tokens(req):
    """A server that writes 2,000 tokens unless `max_tokens` stops it earlier, like a real one."""
    limit = req.body.get("max_tokens") or 2000
    return Reply(text="x" * (4 * limit), usage={"prompt_tokens": 25, "completion_tokens": limit})


def test_token_budget_is_a_hard_cap_for_concurrent_calls(fake_llm, tmp_path):
    fake_llm.responder = _metered_by_max_tokens
    llm = client(fake_llm, tmp_path, max_tokens_total=4000, max_concurrency=8)

    async def four():
        return await asyncio.gather(*[llm.complete([{"role": "user", "content": f"part {i} " * 100}])
                                      for i in range(4)], return_exceptions=True)

    results = asyncio.run(four())
    spent = llm.totals.prompt_tokens + llm.totals.completion_tokens
    assert spent <= 4000, spent  # it was 8,200 when calls sent no max_tokens
    assert all(r.body.get("max_tokens") for r in fake_llm.requests)  # each call sends what it reserved
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert refused and "reserved by calls in flight" in str(refused[0])
    assert len(fake_llm.requests) + len(refused) == 4


def test_call_log_covers_answered_cached_failed_and_offline_calls(fake_llm, orch_home):
    events = Collector()
    secret_prompt = [{"role": "user", "content": f"my key is {TEST_API_KEY}, summarise tea"}]
    fake_llm.push(Reply(text="Tea, briefly.", usage={"prompt_tokens": 12, "completion_tokens": 3,
                                                     "prompt_tokens_details": {"cached_tokens": 8}}))
    llm = client(fake_llm, None, emit=events, cache=True,
                 prices={"fake-model": {"input": 1.0, "output": 10.0, "cached_input": 0.1}})
    ask(llm, secret_prompt, purpose="task t1 (writer)")
    ask(llm, secret_prompt, purpose="task t1 (writer)")  # cached
    fake_llm.fail_next(500, n=3)
    with pytest.raises(LLMError):
        ask(llm, USER, purpose="task t2 (writer)")
    offline = make_model(LLMSettings(), emit=events)
    asyncio.run(offline.complete(USER, purpose="task t3 (writer)"))
    first, cached, failed, off = events.of("call")
    assert set(first) == {"purpose", "model", "messages", "reply", "prompt_tokens", "completion_tokens",
                          "cached_tokens", "latency_s", "cached", "offline", "retries", "error", "cost_usd"}
    assert (first["purpose"], first["reply"], first["prompt_tokens"], first["cached_tokens"]) == \
        ("task t1 (writer)", "Tea, briefly.", 12, 8)
    assert first["latency_s"] > 0 and not first["cached"] and first["error"] is None
    assert cached["cached"] and cached["reply"] == "Tea, briefly."
    # cost_usd (report.html's table of calls): what this call cost at the configured prices; a cache
    # hit, a failed call and the offline model cost nothing, so none is claimed for them
    assert first["cost_usd"] == pytest.approx((4 * 1.0 + 8 * 0.1 + 3 * 10.0) / 1e6)
    assert cached["cost_usd"] is None and failed["cost_usd"] is None and off["cost_usd"] is None
    assert failed["retries"] == 2 and "server error 500" in failed["error"] and failed["reply"] is None
    assert off["offline"] and off["reply"].startswith(LABEL)
    import json
    assert TEST_API_KEY not in json.dumps(events.of("call")) and "***" in first["messages"][0]["content"]


def test_cached_prompt_tokens_are_counted_and_priced(fake_llm, tmp_path):
    fake_llm.push(Reply(text="a", usage={"prompt_tokens": 1000, "completion_tokens": 100,
                                         "prompt_tokens_details": {"cached_tokens": 600}}),
                  Reply(text="b", usage={"prompt_tokens": 1000, "completion_tokens": 100,
                                         "prompt_tokens_details": {"cached_tokens": 600}}))
    priced = client(fake_llm, tmp_path, prices={"fake-model": {"input": 1.0, "output": 10.0, "cached_input": 0.1}})
    out = ask(priced)
    assert out.cached_tokens == 600 and priced.totals_dict()["cached_tokens"] == 600
    assert priced.totals.cost_usd == pytest.approx((400 * 1.0 + 600 * 0.1 + 100 * 10.0) / 1e6)
    plain = client(fake_llm, tmp_path, prices={"fake-model": {"input": 1.0, "output": 10.0}})
    ask(plain)
    assert plain.totals.cost_usd == pytest.approx((1000 * 1.0 + 100 * 10.0) / 1e6)  # no cached price: input price


def test_the_sdk_import_starts_when_the_client_is_made():
    import subprocess
    import sys

    code = ("import sys, threading\n"
            "from utils.model.client import LLMClient\nfrom utils.model.settings import LLMSettings\n"
            "assert 'openai' not in sys.modules\n"
            "LLMClient(LLMSettings(provider='openai', base_url='http://127.0.0.1:9/v1'))\n"
            "t = [t for t in threading.enumerate() if t.name == 'http-import']\n"
            "t[0].join(30) if t else None\n"
            "import utils.model.preload as tr\n"
            "print('openai' in sys.modules, len(tr._tls))\n")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True 1", done.stderr  # the SDK imported and the CA bundle loaded


@pytest.mark.parametrize("argv, env, starts", [
    (["--example", "blog"], {"OPENAI_API_KEY": "sk-x"}, True),
    (["--example", "blog", "--base-url", "http://127.0.0.1:9/v1"], {}, True),
    (["--example", "blog", "--provider", "offline"], {"OPENAI_API_KEY": "sk-x"}, False),
    (["--example", "blog"], {}, False),
])
def test_main_starts_the_sdk_import_right_after_the_flags_when_a_model_will_be_called(argv, env, starts,
                                                                                    monkeypatch):
    import main as app
    from utils.model import preload

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ORCH_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = []
    monkeypatch.setattr(preload, "preload_http", lambda: started.append(True))
    monkeypatch.setattr("utils.app.cli.run_cli", lambda *a, **k: 0)
    assert app.main(argv) == 0 and bool(started) is starts


def test_every_client_shares_one_tls_context_that_verifies():
    import ssl

    from utils.model import transport

    ctx = transport.tls_context()
    assert ctx is transport.tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname  # a shared context, still verifying
