"""The fake server is judged by the real `openai` SDK, not only by our own client.

Why: the app speaks the chat-completions protocol over httpx itself (importing the SDK cost most of the
time to the first request, README "Model boundary"), so a protocol mistake shared by our client and our
fake server would pass every other test. Here the official client talks to the same fake server: plain
answers, `json_schema` response formats, streaming with usage, OpenAI-style errors and Retry-After.
"""
import asyncio
import json

import pytest

from fakes.fake_llm import FakeLLMServer, Reply

openai = pytest.importorskip("openai")


def sdk(server: FakeLLMServer):
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=10)


def test_plain_and_structured_answers_parse_in_the_sdk():
    async def go(server):
        client = sdk(server)
        try:
            plain = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            server.push(Reply(json={"title": "T", "n": 3}))
            structured = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "json"}],
                response_format={"type": "json_schema", "json_schema": {"name": "X", "strict": True, "schema": {
                    "type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
                    "required": ["title", "n"], "additionalProperties": False}}})
        finally:
            await client.close()
        return plain, structured

    with FakeLLMServer() as server:
        plain, structured = asyncio.run(go(server))
        assert server.requests[1].response_format["json_schema"]["strict"] is True
    assert plain.choices[0].message.content == "ok" and plain.usage.total_tokens > 0
    assert json.loads(structured.choices[0].message.content) == {"title": "T", "n": 3}


def test_streamed_deltas_and_usage_reach_the_sdk():
    async def go(server):
        client = sdk(server)
        try:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "s"}], stream=True,
                stream_options={"include_usage": True})
            parts, usage = [], None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                usage = chunk.usage or usage
            return parts, usage
        finally:
            await client.close()

    with FakeLLMServer() as server:
        server.push(Reply(text="a streamed answer of several chunks", chunk_size=5))
        parts, usage = asyncio.run(go(server))
    assert len(parts) > 1 and "".join(parts) == "a streamed answer of several chunks"
    assert usage is not None and usage.completion_tokens > 0


def test_rate_limit_errors_are_openai_shaped():
    async def go(server):
        client = sdk(server)
        try:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        finally:
            await client.close()

    with FakeLLMServer() as server:
        server.fail_next(429, retry_after=2)
        with pytest.raises(openai.RateLimitError) as info:
            asyncio.run(go(server))
    assert info.value.status_code == 429 and info.value.response.headers.get("retry-after") == "2"
