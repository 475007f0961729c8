"""`--batch --executor ray` on a local 2-CPU Ray started once for this module (Ray starts slowly on
2 cores): the same goals give the same statuses as in one process, the cluster-wide call limit
holds, and a re-run pays no call. Skipped where Ray is not installed (requirements-ray.txt)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer
from tests.helpers import clean_env, fast_config, run_main
from tests.scripted import Script
from tests.test_batch import ApprovingLiteralServer, batch_lines, write_lines

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    from utils.app.batch_ray import init_kwargs
    ray.init(**init_kwargs(num_cpus=2))
    try:
        yield
    finally:
        ray.shutdown()


def run(tmp_path: Path, server: FakeLLMServer, out: str, *extra: str):
    config = fast_config(tmp_path / "config.yaml", max_concurrency=3)
    env = clean_env(ORCH_HOME=str(tmp_path / "home"), OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
    done = run_main(["--batch", str(tmp_path / "goals.jsonl"), "--output-dir", str(tmp_path / out), "--config",
                     str(config), "--max-workers", "3", "--max-tasks", "2", "--max-revisions", "0", "--json",
                     "--no-cache", *extra], env, cwd=tmp_path)
    return done, json.loads(done.stdout)


def test_ray_gives_the_local_statuses_under_one_cluster_wide_limit(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr("utils.run.timeline.write_pictures", lambda *a, **k: [])  # as in test_batch
    data = Path(__file__).resolve().parent.parent / "examples" / "data" / "sales.csv"
    write_lines(tmp_path / "goals.jsonl", batch_lines(4, data)[:5])  # 4 goals (every workflow) and the bad line 5
    with ApprovingLiteralServer(schema_mode="literal", seed=3) as server:
        server.responder = Script()
        local, local_doc = run(tmp_path, server, "local", "--batch-workers", "2")
        server.reset()
        on_ray, ray_doc = run(tmp_path, server, "ray", "--executor", "ray")
        assert 0 < server.max_in_flight <= 3, server.max_in_flight  # two tasks x 3 workers, one limit of 3
        calls = len(server.requests)
        again, again_doc = run(tmp_path, server, "ray", "--executor", "ray")
        assert len(server.requests) == calls, "a re-run pays no call"
    assert [b["line"] for b in ray_doc["bad_lines"]] == [5] and "goals.jsonl:5" in on_ray.stderr
    assert all(g["status"] == "ok" for g in local_doc["goals"]), [g["error"] for g in local_doc["goals"]]
    statuses = lambda doc: [(g["id"], g["status"], g["workflow"]) for g in doc["goals"]]  # noqa: E731
    assert statuses(ray_doc) == statuses(local_doc) and len(ray_doc["goals"]) == 4, on_ray.explain()
    assert ray_doc["executor"] == "ray" and ray_doc["peak_calls_in_flight"] <= 3
    assert sum(g["calls"] for g in ray_doc["goals"]) == calls
    assert all(Path(g["folder"]).parent == tmp_path / "ray" for g in ray_doc["goals"])
    assert all(g.get("skipped") for g in again_doc["goals"] if g["status"] == "ok")
