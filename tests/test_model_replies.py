"""The model boundary against hostile and odd replies (issue 27) and honest protocol handling (issue 22).

Every case is a real HTTP exchange with the fake server (fakes/fake_faults.py writes the hostile
answers) and is bounded by short deadlines: a hang shows up as a failed assertion on time, not as a
stuck suite.
"""
from __future__ import annotations

import asyncio
import functools
import json
import time
import zlib

import pytest

from fakes.fake_faults import drip, events, gzipped, pings
from fakes.fake_llm import FakeLLMServer, Reply
from tests.conftest import TEST_API_KEY
from tests.helpers import clean_env, run_main
from tests.scripted import Script, plan_json, request_kind
from tests.test_llm import USER, Verdict, ask, client, error_of
from tests.test_workflows import run_main as run_app
from utils.errors import UsageError
from utils.events import Collector
from utils.model.client import CONTINUE
from utils.model.settings import settings_from_env
from utils.model.tokens import estimate_tokens, messages_tokens
from utils.model.transport import MAX_REPLY_BYTES, Transport, tls_context


@functools.cache
def zeros_gzip(n: int) -> bytes:
    """n zero bytes, gzipped, without holding them in memory."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * 1_000_000
    return b"".join([*(z.compress(block) for _ in range(n // len(block))), z.flush()])


def timed(fn):
    """fn's result and wall time, the SDK already loaded (its first import is not the server's time)."""
    tls_context()
    started = time.monotonic()
    out = fn()
    return out, time.monotonic() - started


# -- #27.3: every model call has a whole-call deadline ----------------------------------------------
def test_a_reply_dripping_a_byte_at_a_time_hits_the_call_deadline(fake_llm, tmp_path):
    fake_llm.responder = lambda req: Reply(write=drip(0.15))  # each read comes well within timeout_s
    msg, took = timed(lambda: error_of(client(fake_llm, tmp_path, timeout_s=0.5, max_retries=1)))
    assert "no answer from" in msg and "within 0.5s after 2 attempts" in msg
    assert took < 2.0 and len(fake_llm.requests) == 2


def test_an_sse_stream_of_pings_hits_the_call_deadline(fake_llm, tmp_path):
    fake_llm.responder = lambda req: Reply(write=pings(0.1))
    msg, took = timed(lambda: error_of(client(fake_llm, tmp_path, timeout_s=0.5, max_retries=0, stream=True)))
    assert "within 0.5s after 1 attempt" in msg and took < 1.5


# -- #27.4: caps apply to decoded bytes as they stream ----------------------------------------------
@pytest.mark.parametrize("status", [200, 500])
def test_a_gzip_bomb_stops_at_the_cap(fake_llm, tmp_path, status):
    fake_llm.push(Reply(write=gzipped(zeros_gzip(20_000_000), layers=1, status=status, pre=1)))
    msg = error_of(client(fake_llm, tmp_path, max_retries=0))
    assert f"larger than {MAX_REPLY_BYTES:,} bytes decoded" in msg and len(fake_llm.requests) == 1


def test_a_gzipped_reply_twice_over_is_read(fake_llm, tmp_path):
    body = json.dumps({"choices": [{"message": {"content": "packed"}, "finish_reason": "stop"}]}).encode()
    fake_llm.push(Reply(write=gzipped(body, layers=2)))
    assert ask(client(fake_llm, tmp_path)).text == "packed"


# -- #27.6: odd reply shapes; usage that is not sane is estimated ------------------------------------
def reply_with(usage=None, content="fine text", choices=None) -> Reply:
    data = {"model": "fake-model", "usage": usage,
            "choices": choices if choices is not None else [{"message": {"content": content}, "finish_reason": "stop"}]}
    return Reply(body=json.dumps(data).replace('"NAN"', "NaN").replace('"INF"', "Infinity"),
                 content_type="application/json")


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": "12", "completion_tokens": "3"}, {"prompt_tokens": "INF", "completion_tokens": "NAN"},
    {"prompt_tokens": 1e999, "completion_tokens": -7_000_000_000}, {"prompt_tokens": 5.5, "completion_tokens": True},
    [1], "x"])
def test_insane_usage_is_estimated(fake_llm, tmp_path, usage):
    fake_llm.push(reply_with(usage=usage))
    out = ask(client(fake_llm, tmp_path))
    assert out.text == "fine text"
    assert (out.prompt_tokens, out.completion_tokens) == (messages_tokens(USER), estimate_tokens("fine text"))


def test_cached_tokens_of_an_odd_shape_are_zero(fake_llm, tmp_path):
    fake_llm.push(reply_with(usage={"prompt_tokens": 40, "completion_tokens": 2, "prompt_tokens_details": "x"}))
    out = ask(client(fake_llm, tmp_path))
    assert (out.prompt_tokens, out.completion_tokens, out.cached_tokens) == (40, 2, 0)


def test_negative_usage_cannot_defeat_the_token_budget(fake_llm, tmp_path):
    fake_llm.responder = lambda req: Reply(text="x" * 400, usage={"prompt_tokens": -3_500_000_000,
                                                                  "completion_tokens": -3_500_000_000})
    llm = client(fake_llm, tmp_path, max_tokens_total=1000)
    with pytest.raises(Exception, match="token budget of 1000 reached"):
        for _ in range(20):
            ask(llm, max_tokens=100)
    assert 0 < llm.totals.prompt_tokens + llm.totals.completion_tokens <= 1000


def test_content_as_a_list_of_parts_is_joined(fake_llm, tmp_path):
    fake_llm.push(reply_with(content=[{"type": "text", "text": "Part one, "}, {"type": "image_url"},
                                      {"type": "text", "text": "part two."}]))
    assert ask(client(fake_llm, tmp_path)).text == "Part one, part two."


def test_odd_stream_chunks_are_skipped_not_fatal(fake_llm, tmp_path):
    fake_llm.push(Reply(write=events({"choices": ["x"]}, {"choices": [{"delta": "text"}]}, {"usage": [1]},
                                     {"choices": [{"delta": {"content": [{"type": "text", "text": "Hel"}]}}]},
                                     {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]})))
    out = ask(client(fake_llm, tmp_path, stream=True))
    assert out.text == "Hello" and out.completion_tokens == estimate_tokens("Hello")


def test_a_reply_without_choices_or_as_html_is_not_json(fake_llm, tmp_path):
    fake_llm.push(Reply(body='{"object": "chat.completion"}', content_type="application/json"))
    assert "did not answer JSON" in error_of(client(fake_llm, tmp_path))


# -- #27.7: a stream that ends without a finish reason is incomplete --------------------------------
@pytest.mark.parametrize("done", [False, True])
def test_a_stream_cut_short_is_retried_then_failed(fake_llm, tmp_path, done):
    fake_llm.responder = lambda req: Reply(write=events({"choices": [{"delta": {"content": "Half a sec"}}]},
                                                        done=done))
    msg = error_of(client(fake_llm, tmp_path, stream=True, max_retries=1))
    assert "ended before the reply was finished" in msg and "after 2 attempts" in msg
    assert len(fake_llm.requests) == 2


def test_a_stream_cut_once_then_whole_is_done(fake_llm, tmp_path):
    fake_llm.push(Reply(write=events({"choices": [{"delta": {"content": "Half"}}]}, done=False)))
    fake_llm.push(Reply(text="Whole answer.", chunk_size=4))
    assert ask(client(fake_llm, tmp_path, stream=True)).text == "Whole answer."


# -- #27.2: a lone surrogate becomes U+FFFD where it enters -----------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_a_lone_surrogate_is_replaced_and_cached(fake_llm, orch_home, stream):
    raw = '{"choices": [{"message": {"content": "bad \\ud800 char"}, "delta": {"content": "bad \\ud800 char"}, ' \
          '"finish_reason": "stop"}]}'
    fake_llm.push(Reply(write=events(raw)) if stream else Reply(body=raw, content_type="application/json"))
    out = ask(client(fake_llm, None, cache=True, stream=stream))
    assert out.text == "bad \ufffd char" and out.text.encode("utf-8")
    assert ask(client(fake_llm, None, cache=True, stream=stream)).cached  # the cache write did not fail


# -- #27.9: a 500 with an HTML page is not retried for the whole deadline; a base URL with CR/LF ------
def test_a_500_html_page_gets_a_few_tries_not_the_deadline(fake_llm, tmp_path):
    fake_llm.responder = lambda req: Reply(status=500, body="<html><body>Internal Server Error</body></html>")
    msg = error_of(client(fake_llm, tmp_path, max_retries=None, retry_deadline_s=120.0))
    assert "server error 500" in msg and "(HTML error page)" in msg and "after 3 attempts" in msg


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1\r\nX-Evil: 1", "http://127.0.0.1:9/v1\n"])
def test_a_base_url_with_a_line_break_is_refused(url, tmp_path):
    with pytest.raises(UsageError, match="control characters"):
        settings_from_env({}, {}, env={"OPENAI_BASE_URL": url})
    with pytest.raises(UsageError, match="control characters"):
        settings_from_env({"base_url": url}, {}, env={})


def test_a_base_url_with_a_line_break_exits_2_before_any_call(fake_llm, tmp_path):
    done = run_main(["--example", "blog", "--output-dir", str(tmp_path / "runs")],
                    clean_env(ORCH_HOME=str(tmp_path / "home"), OPENAI_API_KEY=TEST_API_KEY,
                              OPENAI_BASE_URL=fake_llm.base_url + "\r\n"), cwd=tmp_path)
    assert done.code == 2 and "control characters" in done.stderr and "Traceback" not in done.output
    assert not fake_llm.requests and not fake_llm.other_requests


# -- #22.2: only a 400 naming response_format switches to JSON in the prompt ------------------------
@pytest.mark.parametrize("status, message", [
    (400, "Invalid model name passed in model=gpt-4o-mni"), (400, "Incorrect API key provided"),
    (422, "messages: field required")])
def test_an_unrelated_400_is_an_error_without_the_fallback_note(fake_llm, tmp_path, status, message):
    fake_llm.fail_next(status, message=message)
    events_ = Collector()
    msg = error_of(client(fake_llm, tmp_path, emit=events_), schema=Verdict, purpose="planning")
    assert msg.startswith("planning: request rejected by") and message in msg
    assert not events_.of("notice") and len(fake_llm.requests) == 1


def test_a_422_on_json_schema_switches_to_the_prompt(fake_llm, tmp_path):
    fake_llm.fail_next(422, message="json_schema is not supported by this backend")
    fake_llm.push({"id": "a", "score": 1})
    events_ = Collector()
    assert ask(client(fake_llm, tmp_path, emit=events_), schema=Verdict).data.id == "a"
    assert "does not accept response_format" in events_.of("notice")[0]["message"]


# -- #22.2: wait hints ------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{"retry-after-ms": "300"}, {"llm_provider-retry-after": "0.3"},
                                     {"x-ratelimit-reset-requests": "300ms"}])
def test_a_429_waits_as_told(fake_llm, tmp_path, headers):
    fake_llm.push(Reply(status=429, headers=headers))
    events_ = Collector()
    ask(client(fake_llm, tmp_path, emit=events_, backoff_max_s=5.0))
    first, second = fake_llm.requests
    assert second.t_in - first.t_out >= 0.29 and 0.3 <= events_.of("retry")[0]["wait_s"] <= 0.32


# -- #22.2: a reply cut at max_tokens --------------------------------------------------------------
def cut_then_rest(pieces: list[str]):
    """A responder writing `pieces` one per call, each but the last cut at max_tokens."""
    def respond(req):
        so_far = req.messages[-2]["content"] if req.messages[-1]["content"] == CONTINUE else ""
        n = next(i for i in range(len(pieces)) if "".join(pieces[:i]) == so_far)
        return Reply(text=pieces[n], finish_reason="length" if n < len(pieces) - 1 else "stop")
    return respond


@pytest.mark.parametrize("stream", [False, True])
def test_a_text_reply_cut_at_max_tokens_is_continued(fake_llm, tmp_path, stream):
    fake_llm.responder = cut_then_rest(["The tide comes ", "in slowly and goes ", "out again."])
    events_ = Collector()
    out = ask(client(fake_llm, tmp_path, emit=events_, stream=stream), purpose="task t2 (writer)")
    assert out.text == "The tide comes in slowly and goes out again."
    last = fake_llm.requests[-1].messages
    assert last[-2] == {"role": "assistant", "content": "The tide comes in slowly and goes "}
    assert last[-1]["content"] == CONTINUE and len(fake_llm.requests) == 3
    notes = [n["message"] for n in events_.of("notice")]
    assert len(notes) == 2 and "task t2 (writer) was cut at max_tokens" in notes[0]


def test_a_structured_reply_cut_at_max_tokens_names_max_tokens(fake_llm, tmp_path):
    fake_llm.push(Reply(text='{"id": "t1", "sco', finish_reason="length"))
    msg = error_of(client(fake_llm, tmp_path), schema=Verdict, purpose="review")
    assert msg.startswith("review: the structured reply was cut at max_tokens") and len(fake_llm.requests) == 1


def test_a_section_cut_at_max_tokens_is_whole_in_output_md(fake_llm, tmp_path):
    plan = plan_json([("t1", "writer", [])], goal="Write about tides")
    script = Script(plans=[plan])

    def respond(req):
        if request_kind(req) != "worker":
            return script(req)
        return cut_then_rest(["## Tides\n\nThe tide comes in sl", "owly and goes out again."])(req)

    fake_llm.responder = respond
    run = run_app(["--example", "blog", "--max-revisions", "0"], tmp_path, server=fake_llm)
    assert run.code == 0, run.stderr
    doc = (run.run_dir() / "output.md").read_text(encoding="utf-8")
    assert "The tide comes in slowly and goes out again." in doc and "cut at max_tokens" in run.stdout + run.stderr


# -- #22.2: a custom base URL without a model asks the server's /models -----------------------------
def test_a_custom_server_without_a_model_uses_its_only_one(fake_llm, tmp_path):
    fake_llm.models = ["llama3.1:8b"]
    settings = settings_from_env({"base_url": fake_llm.base_url}, {}, env={})
    assert settings.model is None
    events_ = Collector()
    llm = client(fake_llm, tmp_path, emit=events_, model=None)
    ask(llm)
    ask(llm)
    assert [r.model for r in fake_llm.requests] == ["llama3.1:8b"] * 2 and len(fake_llm.other_requests) == 1
    assert "using llama3.1:8b, the only model" in events_.of("notice")[0]["message"]


def test_a_custom_server_with_several_models_lists_them(fake_llm, tmp_path):
    fake_llm.models = ["a-model", "b-model", "c-model"]
    msg = error_of(client(fake_llm, tmp_path, model=None))
    assert "offers 3 models: a-model, b-model, c-model; choose one with --model" in msg
    assert not fake_llm.requests


def test_a_refused_key_on_models_is_named_as_a_key_problem(fake_llm, tmp_path):
    fake_llm.require_key = "sk-the-right-one"
    msg = error_of(client(fake_llm, tmp_path, model=None))
    assert "authentication failed" in msg and "did not answer a list of models" not in msg
    assert not fake_llm.requests


def test_a_run_against_a_custom_server_without_model_uses_its_model(fake_llm, tmp_path):
    fake_llm.models = ["qwen2.5:7b"]
    fake_llm.responder = Script(plans=[plan_json([("t1", "writer", [])])])
    run = run_app(["--example", "blog", "--max-revisions", "0"], tmp_path, server=fake_llm)
    assert run.code == 0, run.stderr
    assert {r.model for r in fake_llm.requests} == {"qwen2.5:7b"} and "qwen2.5:7b" in run.stdout + run.stderr
    # ...and every request went through the official SDK
    assert all(r.headers.get("user-agent", "").startswith("AsyncOpenAI/Python") for r in fake_llm.requests)


# -- #22.1: ?api-version= base URLs and Azure --------------------------------------------------------
def test_a_query_in_the_base_url_goes_with_every_request(fake_llm, tmp_path):
    llm = client(fake_llm, tmp_path, base_url=fake_llm.base_url + "?api-version=2024-06-01")
    ask(llm)
    assert fake_llm.requests[0].query == "api-version=2024-06-01"
    assert llm.base_url == fake_llm.base_url  # shown without the query


def test_an_azure_host_gets_the_azure_client():
    import openai

    settings = settings_from_env({"base_url": "https://acme.openai.azure.com/?api-version=2024-06-01",
                                  "api_key": "k", "model": "gpt-4o"}, {}, env={})
    sdk = Transport(settings)._new_client()
    assert isinstance(sdk, openai.AsyncAzureOpenAI)
    asyncio.run(sdk.close())
