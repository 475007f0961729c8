"""The app through a real gateway: a LiteLLM proxy in front of the fake server.

Why: a gateway rewrites what the app sees (its own error bodies and status codes, its own header
names for the upstream's wait, its own `/models`), and the fake server alone only shows what we
thought a server would say. The proxy runs from its own virtual environment (its dependency pins
are not the app's): `.ci/run` installs it and points `ORCH_TEST_LITELLM` at its `litellm` command.
Without that variable the tests skip, saying so; with it set to a missing command they fail.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer, Reply
from tests.helpers import cli_env, only_run, read_state, run_main

# One proxy for the whole session: it takes ~25 s of CPU to start, and `--dist loadgroup` would
# otherwise spread the module over both test processes and start it twice.
pytestmark = [pytest.mark.xdist_group("litellm"), pytest.mark.integration]

MASTER_KEY = "sk-gateway-master-5f1c"
UPSTREAM_KEY = "sk-upstream-9a2e"
STARTUP_S = 90


def _litellm() -> str:
    command = os.environ.get("ORCH_TEST_LITELLM")
    if not command:
        pytest.skip("no LiteLLM proxy: set ORCH_TEST_LITELLM to its `litellm` command (.ci/run does)")
    found = shutil.which(command)
    assert found, f"ORCH_TEST_LITELLM={command} is not an executable"
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_alive(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the LiteLLM proxy exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health/liveliness", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the LiteLLM proxy did not start within {STARTUP_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """(fake server, proxy base URL): one proxy for the module, its upstream the fake server."""
    command = _litellm()
    folder = tmp_path_factory.mktemp("litellm")
    server = FakeLLMServer(schema_mode="literal", models=["fake-model"]).start()
    config = folder / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fake-model\n"
        "    litellm_params:\n"
        "      model: openai/fake-model\n"
        f"      api_base: {server.base_url}\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "litellm_settings:\n"
        "  num_retries: 0\n"
        "  request_timeout: 30\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n", encoding="utf-8")
    port = _free_port()
    log = folder / "proxy.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ORCH_"))}
    env.update(LITELLM_LOG="ERROR", NO_DOCS="True", DISABLE_ADMIN_UI="True", LITELLM_TELEMETRY="False")
    with log.open("w") as out:
        proc = subprocess.Popen([command, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_alive(url, proc, log)
        yield server, url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.stop()


def _run(gateway, tmp_path: Path, *args: str, key: str = MASTER_KEY, first: Reply | None = None,
         backoff_max_s: float = 0.05):
    server, url = gateway
    server.reset()
    if first is not None:
        server.push(first)
    env = cli_env(tmp_path / "home", url, key)
    config = tmp_path / "fast.yaml"
    config.write_text(f"backoff_base_s: 0.01\nbackoff_max_s: {backoff_max_s}\nmax_retries: 2\n", encoding="utf-8")
    out = tmp_path / "runs"
    done = run_main(["--example", "blog", "--no-cache", "--config", config, "--output-dir", out, *args],
                    env, cwd=tmp_path, timeout=120)
    return done, out


def test_a_whole_run_goes_through_the_gateway_and_names_the_gateways_only_model(gateway, tmp_path):
    """No --model with a custom base URL: the gateway's /models lists one model, which is used."""
    server, _ = gateway
    done, out = _run(gateway, tmp_path)
    assert done.code in (0, 1), done.explain()  # 1: the literal reviewer may score the draft low
    state = read_state(only_run(out))
    assert state["meta"]["model"] == "fake-model"
    assert (only_run(out) / "output.md").is_file()
    upstream = server.completed()
    assert upstream, "no request reached the upstream through the gateway"
    assert all({k.lower(): v for k, v in r.headers.items()}.get("authorization") == f"Bearer {UPSTREAM_KEY}" for r in upstream)
    assert len(upstream) == state["totals"]["calls"]
    assert MASTER_KEY not in done.stdout + done.stderr


def test_a_wrong_key_is_named_as_such_and_no_call_is_made(gateway, tmp_path):
    server, _ = gateway
    done, _ = _run(gateway, tmp_path, "--model", "fake-model", key="sk-wrong-key-000")
    assert done.code != 0
    assert "authentication failed" in done.stderr + done.stdout, done.explain()
    assert "response_format" not in done.stderr + done.stdout
    assert "sk-wrong-key-000" not in done.stderr + done.stdout
    assert server.completed() == []


def test_a_wrong_key_without_model_names_the_key_not_the_model_list(gateway, tmp_path):
    done, _ = _run(gateway, tmp_path, key="sk-wrong-key-000")
    assert done.code != 0
    text = done.stderr + done.stdout
    assert "authentication failed" in text, text
    assert "did not answer a list of models" not in text


def test_a_wrong_model_name_is_not_taken_for_a_missing_json_schema(gateway, tmp_path):
    server, _ = gateway
    done, _ = _run(gateway, tmp_path, "--model", "no-such-model")
    text = done.stderr + done.stdout
    assert done.code != 0
    assert "no-such-model" in text
    assert "response_format" not in text and "JSON in the prompt" not in text
    assert server.completed() == []


def test_the_upstreams_rate_limit_wait_is_read_through_the_gateway(gateway, tmp_path):
    """The upstream answers 429 with Retry-After: 1 on the first call; the gateway passes the wait
    on under its own header name; the app waits about that long, then finishes with no failed task."""
    server, _ = gateway
    started = time.monotonic()
    done, out = _run(gateway, tmp_path, "--model", "fake-model", backoff_max_s=5.0,
                     first=Reply(status=429, headers={"Retry-After": "1"}, error_message="slow down"))
    elapsed = time.monotonic() - started
    assert done.code in (0, 1), done.explain()
    statuses = [r.status for r in server.requests]
    assert statuses[0] == 429 and 200 in statuses[1:], (statuses, [r.path for r in server.requests][:5], done.explain())
    retried = server.requests[1].t_in - server.requests[0].t_in
    assert retried >= 0.9, f"the retry came {retried:.2f}s after a 429 asking for 1s"
    assert elapsed < 30
    state = read_state(only_run(out))
    assert not [t for t in state["results"].values() if t.get("state") == "failed"]


def test_streamed_replies_through_the_gateway_are_whole(gateway, tmp_path):
    """`--stream`: the gateway re-frames the upstream's SSE; every task's text arrives whole."""
    server, _ = gateway
    done, out = _run(gateway, tmp_path, "--model", "fake-model", "--stream")
    assert done.code in (0, 1), done.explain()
    assert any(r.body.get("stream") for r in server.completed()), "nothing was streamed upstream"
    state = read_state(only_run(out))
    planned = {t["id"] for t in state["plan"]["tasks"]}
    results = [t for t in state["results"].values() if t["id"] in planned]
    assert results and all(t["state"] == "done" and t["output"] for t in results), results
    # a task the streamed plan started and the repaired plan dropped is on record as discarded, not done
    dropped = [t for t in state["results"].values() if t["id"] not in planned]
    assert all(t["state"] == "skipped" and t["error"].startswith("discarded") for t in dropped), dropped
    document = (only_run(out) / "output.md").read_text(encoding="utf-8")
    assert all(t["output"].strip()[:40] in document for t in results if t["role"] != "analyst")
