"""Shared fixtures: a real fake LLM server, an isolated ORCH_HOME, and an environment pointing at it.

Tests never touch the network or the user's ~/.orchestrator: `orch_home` redirects caches and config
to a temp dir, and `llm_env` points the OpenAI settings at the fake server on 127.0.0.1.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer

TEST_API_KEY = "sk-test-SECRET-123456"
# ORCH_HOME is set by `orch_home`; ORCH_ENGINE picks the node library for a whole test session.
KEEP_ORCH_VARS = {"ORCH_HOME", "ORCH_ENGINE"}


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A started fake OpenAI-compatible server; stopped after the test."""
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ORCH_HOME so caches, history and config never leak between tests or into ~."""
    home = tmp_path / "orch_home"
    home.mkdir()
    monkeypatch.setenv("ORCH_HOME", str(home))
    return home


@pytest.fixture
def llm_env(fake_llm: FakeLLMServer, orch_home: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    """OPENAI_* pointing at the fake server with a recognisable secret key; other ORCH_* vars cleared."""
    for name in list(os.environ):
        if name.startswith("ORCH_") and name not in KEEP_ORCH_VARS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    return fake_llm


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no model configured and a private ORCH_HOME, whatever the machine has.

    A developer's real OPENAI_API_KEY must never reach a test (or the network); tests that want a
    model point at the fake server themselves. Subprocesses inherit this environment.
    """
    for name in list(os.environ):
        if name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "NO_COLOR") or (
                name.startswith("ORCH_") and name != "ORCH_ENGINE"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCH_HOME", str(tmp_path_factory.mktemp("orch_home_default")))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each `xdist_group` on one test process under `--dist loadgroup` (pytest.ini).

    Why here: xdist marks a grouped test by appending `@group` to its id, and its scheduler keeps
    ids with one suffix together. xdist 3.8 writes the id into `item._nodeid`, which pytest 9 no
    longer reads (the id is `item._id`), so the groups were silently spread over both processes: two
    local Rays and two LiteLLM proxies started, each costing tens of seconds. Only in a worker of a
    loadgroup run, and only where the suffix is missing, so a fixed xdist makes this a no-op.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if not names or item.nodeid.endswith(suffix):
            continue
        if hasattr(item, "_id"):  # pytest >= 9: a structured id
            from _pytest.nodeid import NodeId
            item._id = NodeId.parse(item.nodeid + suffix)
        else:
            item._nodeid = item.nodeid + suffix
