"""Run folders: slugs that cannot escape, atomic writes, merging event-saved and shared results."""
import json

import pytest

from utils.errors import UsageError
from utils.events import Event
from utils.run.runstore import RunStore, atomic_write, load_run, merge_results, new_run_dir, slugify


@pytest.mark.parametrize("topic", ["../../etc/passwd", "a/b\\c", "..", "   ", "ünïcödé ✓ topic", "x" * 300])
def test_slug_is_safe(topic):
    slug = slugify(topic)
    assert slug and len(slug) <= 40 and all(c.isalnum() or c == "-" for c in slug) and ".." not in slug


def test_new_run_dir_stays_inside_output_dir(tmp_path):
    run = new_run_dir(tmp_path, "../../escape", "blog")
    assert run.parent == tmp_path and run.is_dir()
    assert new_run_dir(tmp_path, "../../escape", "blog") != run  # same second: a unique name


def test_new_run_dir_on_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="cannot write to output folder"):
        new_run_dir(tmp_path / "f", "t", "blog")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write(tmp_path / "a.json", "1")
    atomic_write(tmp_path / "a.json", "2")
    assert (tmp_path / "a.json").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_store_saves_each_task_and_artifacts_from_events(tmp_path):
    store = RunStore(tmp_path)
    store(Event("plan", {"plan": {"goal": "g", "tasks": []}}))
    result = {"id": "t1", "state": "done", "output": "x", "finished": 1.0, "artifacts": {"t1-c.png": b"\x89PNG"}}
    store(Event("task", {"id": "t1", "state": "done", "result": result}))
    saved = load_run(tmp_path)
    assert saved["plan"]["goal"] == "g" and saved["results"]["t1"]["artifacts"] == ["t1-c.png"]
    assert (tmp_path / "t1-c.png").read_bytes() == b"\x89PNG"
    # a task that never started does not overwrite finished work
    store(Event("task", {"id": "t1", "state": "pending", "result": {"id": "t1", "state": "pending"}}))
    assert load_run(tmp_path)["results"]["t1"]["state"] == "done"


def test_merge_prefers_latest_but_never_replaces_done_with_pending():
    saved = {"a": {"state": "done", "finished": 5}, "b": {"state": "done", "finished": 5}}
    current = {"a": {"state": "pending", "finished": 9}, "b": {"state": "done", "finished": 7, "revision": 1},
               "c": {"state": "failed", "finished": 1}}
    merged = merge_results(saved, current)
    assert merged["a"]["finished"] == 5 and merged["b"]["revision"] == 1 and merged["c"]["state"] == "failed"


def test_load_run_refuses_foreign_folders(tmp_path):
    with pytest.raises(UsageError, match="not a run folder"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(UsageError, match="not written by this app"):
        load_run(tmp_path)
