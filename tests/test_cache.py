"""On-disk response cache: stable keys, layout, atomic writes, nothing secret stored."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from utils.model.cache import ResponseCache, cache_key, default_home

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


class A(BaseModel):
    x: int


class B(BaseModel):
    x: str


def key(**kw):
    base = {"model": "m", "messages": MSGS, "temperature": 0.3, "max_tokens": None, "schema": None}
    return cache_key(**{**base, **kw})


def test_key_is_stable_and_canonical():
    reordered = [{"content": m["content"], "role": m["role"]} for m in MSGS]
    assert key() == key(messages=reordered)
    assert len(key()) == 64


def test_key_changes_with_what_changes_the_answer():
    k = key()
    assert len({k, key(model="m2"), key(temperature=0.0), key(max_tokens=100), key(schema=A), key(schema=B),
                key(messages=MSGS[:1])}) == 7


def test_put_get_roundtrip_and_layout(tmp_path: Path):
    cache = ResponseCache(tmp_path)
    k = key()
    assert cache.get(k) is None
    cache.put(k, model="m", text="hi", prompt_tokens=3, completion_tokens=1)
    path = tmp_path / "cache" / k[:2] / f"{k}.json"
    assert path.is_file()
    entry = cache.get(k)
    assert entry["text"] == "hi" and entry["prompt_tokens"] == 3 and entry["completion_tokens"] == 1
    assert set(json.loads(path.read_text())) <= {"model", "text", "prompt_tokens", "completion_tokens", "stored"}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind


def test_corrupt_entry_is_a_miss(tmp_path: Path):
    cache = ResponseCache(tmp_path)
    k = key()
    cache.path_for(k).parent.mkdir(parents=True)
    cache.path_for(k).write_text("{not json")
    assert cache.get(k) is None
    cache.put(k, model="m", text="fresh", prompt_tokens=1, completion_tokens=1)
    assert cache.get(k)["text"] == "fresh"


def test_unwritable_home_is_silently_skipped(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = ResponseCache(blocker)  # cache dir would have to live under a regular file
    cache.put(key(), model="m", text="t", prompt_tokens=1, completion_tokens=1)
    assert cache.get(key()) is None


def test_default_home_reads_env_each_call(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "one"))
    assert default_home() == tmp_path / "one"
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "two"))
    assert default_home() == tmp_path / "two"
    assert ResponseCache().root == tmp_path / "two" / "cache"
    monkeypatch.delenv("ORCH_HOME")
    assert default_home() == Path.home() / ".orchestrator"


def test_key_covers_the_provider_and_the_server():
    k = key(provider="openai", base_url="http://127.0.0.1:8001/v1")
    assert k != key(provider="openai", base_url="http://127.0.0.1:8002/v1")
    assert k != key(provider="other", base_url="http://127.0.0.1:8001/v1")
    assert k == key(provider="openai", base_url="http://127.0.0.1:8001/v1")
