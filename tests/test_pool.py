"""The model client's connection pool (utils/model/pool.py) against the real fake server."""
from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
import time

import httpcore
import pytest

from fakes.fake_llm import FakeLLMServer, Reply
from utils.model.pool import ClaimingPool, new_client
from utils.model.transport import tls_context

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def pool_of(client) -> ClaimingPool:
    return client._transport._pool


async def post(client, server: FakeLLMServer) -> dict:
    resp = await client.post(server.base_url + "/chat/completions", json=BODY)
    resp.raise_for_status()
    return resp.json()


def in_a_row(server: FakeLLMServer, n: int, context=None) -> tuple[int, int]:
    """n requests one after another on one client: (connections opened, idle on the shelf after)."""
    async def go():
        client = new_client(5.0, context or tls_context())
        try:
            for _ in range(n):
                await post(client, server)
            return pool_of(client).opened, len(pool_of(client)._idle)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_the_client_gets_the_claiming_pool():
    """If an httpx upgrade moved `_pool`, new_client would silently fall back: this says so."""
    assert isinstance(pool_of(new_client(5.0, tls_context())), ClaimingPool)


def test_one_idle_connection_is_handed_to_one_request_only():
    """The bug it replaces: httpcore gave the idle connection to every request of a burst."""
    pool = ClaimingPool(None)
    origin = httpcore.Origin(b"http", b"127.0.0.1", 9)
    first, _ = pool._claim(origin)
    first.is_idle = lambda: True  # as after a finished response on a kept-alive connection
    first.has_expired = lambda: False
    assert pool._give_back(first)
    a, _ = pool._claim(origin)
    b, _ = pool._claim(origin)
    assert a is first and b is not first and pool.opened == 2


def test_sequential_requests_reuse_one_connection(fake_llm: FakeLLMServer):
    assert in_a_row(fake_llm, 4) == (1, 1)
    assert len(fake_llm.completed()) == 4


def test_a_connection_the_server_closes_is_not_reused():
    with FakeLLMServer(keep_alive=False) as server:
        assert in_a_row(server, 3) == (3, 0)


def test_a_burst_after_a_warm_request_runs_at_once_on_its_own_connections(fake_llm: FakeLLMServer):
    release = threading.Event()
    n = 8

    async def go():
        client = new_client(5.0, tls_context())
        try:
            await post(client, fake_llm)  # leaves one idle keep-alive connection
            fake_llm.push(*[Reply(text=f"r{i}", wait_for=release) for i in range(n)])
            burst = asyncio.gather(*(post(client, fake_llm) for _ in range(n)))
            deadline = time.monotonic() + 5
            while fake_llm.max_in_flight < n and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            release.set()
            replies = await burst
            return [r["choices"][0]["message"]["content"] for r in replies], pool_of(client)
        finally:
            release.set()
            await client.aclose()

    texts, pool = asyncio.run(go())
    assert sorted(texts) == sorted(f"r{i}" for i in range(n))
    assert fake_llm.max_in_flight == n  # all in flight together: none waited for another's connection
    assert pool.opened == n  # the warm one reused, n - 1 new
    assert not pool._open  # aclose closed every connection


def test_a_streamed_response_ending_its_connection_leaves_nothing_open(fake_llm: FakeLLMServer):
    """The fake server ends each event stream by closing the connection, as many servers do."""
    async def go():
        client = new_client(5.0, tls_context())
        try:
            for _ in range(3):
                async with client.stream("POST", fake_llm.base_url + "/chat/completions",
                                         json={**BODY, "stream": True}) as resp:
                    assert resp.status_code == 200
                    assert "data:" in (await resp.aread()).decode()
                assert not pool_of(client)._open  # closed as soon as the stream was, not at aclose
            return pool_of(client).opened
        finally:
            await client.aclose()

    assert asyncio.run(go()) == 3


def test_an_unsupported_scheme_is_refused_as_httpcore_would():
    async def go():
        client = new_client(5.0, tls_context())
        try:
            await client.get("ftp://127.0.0.1:9/x")
        finally:
            await client.aclose()

    import httpx

    with pytest.raises(httpx.UnsupportedProtocol):
        asyncio.run(go())


def _self_signed(folder) -> tuple[str, str]:
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_through_the_pool_verifies_the_server(tmp_path):
    """TLS is httpcore's, with the context given: a trusted certificate works and keeps its
    connection alive; the shared default context refuses a self-signed one."""
    import httpx

    cert, key = _self_signed(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    with FakeLLMServer(tls=server_side) as server:
        assert in_a_row(server, 3, ssl.create_default_context(cafile=cert)) == (1, 1)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            in_a_row(server, 1, tls_context())
