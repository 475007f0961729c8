"""Run folders: safe slugs, atomic writes (umask, fsync'd folder), the journal that run.json and
--resume are derived from (written off the calling thread, torn tails, stray temporaries), chart
files replaced by a revision, calls.jsonl, and the schema + hash checks on load."""
import json
import os
import stat
import threading

import pytest

from utils.errors import UsageError
from utils.events import Event
from utils.run import runstore
from utils.run.results import ENDED, TaskResult, TaskState
from utils.run.runstore import CALLS, JOURNAL, RunStore, atomic_write, load_run, new_run_dir, slugify
from utils.dag import DependencyCycle, find_cycle, topo_order

OPTIONS = {"strategy": "dependency", "max_workers": 2, "max_tasks": 12, "max_revisions": 1, "max_rounds": 6,
           "context_budget": 6000, "model": None, "planner_model": None, "reviewer_model": None,
           "plan_only": False, "max_tokens_total": None}
PLAN = {"goal": "g", "tasks": [{"id": "t1", "title": "One", "role": "writer"},
                               {"id": "t2", "title": "Two", "role": "writer", "depends_on": ["t1"]}]}


def base_state(**over) -> dict:
    return {"goal": "Write about quirks", "workflow": "blog", "options": dict(OPTIONS),
            "inputs": {"inputs": [], "data": None}, "status": "running", **over}


def result(tid: str, state: str = "done", **over) -> dict:
    return {"id": tid, "title": tid, "role": "writer", "state": state, "output": f"text {tid}",
            "finished": 1.0, "artifacts": {}, **over}


def started_store(run_dir, **over) -> RunStore:
    store = RunStore(run_dir)
    store.save(base_state(**over))
    return store


@pytest.fixture
def no_timed_checkpoints(monkeypatch):
    monkeypatch.setattr(runstore, "CHECKPOINT_EVERY_S", 1e9)


# ---------------------------------------------------------------- names and atomic writes

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


def test_written_files_get_the_users_umask_not_0600(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write(tmp_path / "output.md", "# doc\n")
    assert stat.S_IMODE((tmp_path / "output.md").stat().st_mode) == 0o666 & ~mask


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(runstore.os, "fsync", spy)
    atomic_write(tmp_path / "run.json", "{}")
    assert synced == [False, True]  # the file, then its folder (after the rename)


def test_write_document_strips_control_characters(tmp_path):
    path = RunStore(tmp_path).write_document("# T\x1b[31m\n\nbody\x07 ok\r\nend\x00\n")
    text = path.read_text(encoding="utf-8")
    assert "\x1b" not in text and "\x07" not in text and "\x00" not in text and "body ok\nend" in text


# ---------------------------------------------------------------- the journal

def test_events_go_to_the_journal_and_load_replays_what_run_json_lacks(tmp_path, no_timed_checkpoints):
    store = started_store(tmp_path)
    store(Event("plan", {"plan": PLAN, "round": 0}))
    store(Event("llm", {"calls": 3, "prompt_tokens": 30}))
    store(Event("task", {"id": "t1", "state": "done", "result": result("t1")}))
    store.flush()
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert "t1" not in (on_disk.get("results") or {}), "run.json must not be rewritten after every task"
    lines = [json.loads(x) for x in (tmp_path / JOURNAL).read_text().splitlines()]
    assert [x["k"] for x in lines] == ["set", "plan", "task"] and [x["seq"] for x in lines] == [1, 2, 3]
    loaded = load_run(tmp_path)  # run.json + the journal lines after it
    assert loaded["results"]["t1"]["output"] == "text t1" and loaded["totals"]["calls"] == 3
    assert loaded["plan"]["tasks"][1]["depends_on"] == ["t1"] and loaded["journal_seq"] == 3
    store.save({"status": "ok"})
    assert json.loads((tmp_path / "run.json").read_text())["results"]["t1"]["state"] == "done"


def test_recording_an_event_never_waits_for_the_disk(tmp_path, no_timed_checkpoints):
    """The caller (the event loop) only queues: with the writer thread held, 200 task events still
    return at once, and nothing is written until the writer is released."""
    store = started_store(tmp_path)
    gate, held = threading.Event(), threading.Event()
    store._writer_().call(lambda: (held.set(), gate.wait(10)))
    assert held.wait(5)
    size = (tmp_path / JOURNAL).stat().st_size
    for i in range(200):
        store(Event("task", {"id": f"t{i}", "state": "done", "result": result(f"t{i}")}))
    assert (tmp_path / JOURNAL).stat().st_size == size
    gate.set()
    store.flush()
    assert len(load_run(tmp_path)["results"]) == 200


def test_a_torn_journal_tail_is_ignored_then_trimmed_on_resume(tmp_path):
    store = started_store(tmp_path)
    store(Event("task", {"id": "t1", "state": "done", "result": result("t1")}))
    store.close()
    with (tmp_path / JOURNAL).open("a") as fh:  # kill -9 in the middle of a line
        fh.write('{"k": "task", "seq": 9, "result": {"id": "t9", "sta')
    state = load_run(tmp_path)
    assert set(state["results"]) == {"t1"}
    again = RunStore(tmp_path, state)
    again(Event("task", {"id": "t2", "state": "done", "result": result("t2")}))
    again.close()
    assert all(json.loads(x) for x in (tmp_path / JOURNAL).read_text().splitlines())
    assert set(load_run(tmp_path)["results"]) == {"t1", "t2"}


def test_stray_temporary_files_are_cleaned_on_resume(tmp_path):
    started_store(tmp_path).close()
    (tmp_path / ".run.json.k1ll9x.tmp").write_text('{"half')
    (tmp_path / ".t3-chart.png.zz.tmp").write_bytes(b"\x89P")
    RunStore(tmp_path, load_run(tmp_path))
    assert not list(tmp_path.glob(".*.tmp"))


def test_pending_never_replaces_done(tmp_path):
    store = started_store(tmp_path)
    store(Event("task", {"id": "t1", "state": "done", "result": result("t1")}))
    store(Event("task", {"id": "t1", "state": "pending", "result": result("t1", "pending", output="")}))
    store.flush()
    assert load_run(tmp_path)["results"]["t1"]["state"] == "done"


def test_reviews_and_rounds_are_kept(tmp_path):
    store = started_store(tmp_path)
    store(Event("plan", {"plan": PLAN, "round": 2, "source": "replan"}))
    store(Event("review", {"round": 1, "score": 4, "revise": [{"id": "t2", "feedback": "more"}], "rerun": ["t2"]}))
    store(Event("review", {"round": 2, "score": 9, "revise": [], "rerun": []}))
    store.flush()
    state = load_run(tmp_path)
    assert state["rounds"] == 2 and state["revisions_done"] == 1 and len(state["reviews"]) == 2


def test_a_redrawn_chart_replaces_the_old_file(tmp_path):
    store = started_store(tmp_path)
    first = result("t1", artifacts={"t1-chart.png": b"\x89PNG old", "t1-extra.png": b"\x89PNG x"})
    store(Event("task", {"id": "t1", "state": "done", "result": first}))
    revised = result("t1", artifacts={"t1-chart.png": b"\x89PNG new"}, revision=1)
    store(Event("task", {"id": "t1", "state": "done", "result": revised}))
    store.flush()
    assert (tmp_path / "t1-chart.png").read_bytes() == b"\x89PNG new"
    assert not (tmp_path / "t1-extra.png").exists(), "a chart the revision no longer draws is stale"
    assert load_run(tmp_path)["results"]["t1"]["artifacts"] == ["t1-chart.png"]


def test_call_events_are_saved_to_calls_jsonl(tmp_path):
    store = started_store(tmp_path)
    store(Event("call", {"purpose": "task t1 (writer)", "model": "m", "prompt_tokens": 5, "status": "ok"}))
    store(Event("call", {"purpose": "review round 1", "model": "m", "prompt_tokens": 7, "status": "ok"}))
    store.flush()
    calls = [json.loads(x) for x in (tmp_path / CALLS).read_text().splitlines()]
    assert [c["purpose"] for c in calls] == ["task t1 (writer)", "review round 1"]


# ---------------------------------------------------------------- load: schema and recorded files

def test_load_run_refuses_foreign_folders(tmp_path):
    with pytest.raises(UsageError, match="not a run folder"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(UsageError, match="not written by this app"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text('{"format": "orchestrator-run/1", "x": ' + "[" * 20000 + "]" * 20000 + "}")
    with pytest.raises(UsageError, match="nested too deeply"):
        load_run(tmp_path)


@pytest.mark.parametrize("field, value, where", [
    ("results", ["t1"], "results"),
    ("results", {"t1": {"id": "t1", "state": "exploded"}}, "results.t1.state"),
    ("plan", "do everything", "plan"),
    ("plan", {"goal": "g", "tasks": {"id": "t1"}}, "plan.tasks"),
    ("options", ["dependency"], "options"),
    ("options", {**OPTIONS, "max_workers": "many"}, "options.max_workers"),
    ("reviews", {"round": 1}, "reviews"),
    ("workflow", "../../../tmp/evil.yaml", "workflow"),
])
def test_a_run_json_of_the_wrong_shape_is_a_one_line_error(tmp_path, field, value, where):
    state = {"format": runstore.FORMAT, **base_state(), field: value}
    (tmp_path / "run.json").write_text(json.dumps(state))
    with pytest.raises(UsageError) as exc:
        load_run(tmp_path)
    assert str(exc.value).startswith("--resume: ") and f": {where}" in str(exc.value)
    assert "\n" not in str(exc.value)


def _run_with_input(tmp_path, content: str = "name;value\nx;1\n"):
    source = tmp_path / "notes.csv"
    source.write_text(content)
    from utils.run.runfile import file_hashes

    inputs = {"inputs": [str(source)], "data": None}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    store = RunStore(run_dir)
    store.save(base_state(inputs=inputs, hashes=file_hashes(inputs, None)))
    store.close()
    return run_dir, source


def test_resume_reads_recorded_inputs_only_while_their_hash_matches(tmp_path):
    run_dir, source = _run_with_input(tmp_path)
    assert load_run(run_dir)["inputs"]["inputs"] == [str(source)]
    source.write_text("name;value\nx;2\n")
    with pytest.raises(UsageError, match="has changed since the run started"):
        load_run(run_dir)


def test_a_tampered_run_json_cannot_point_at_other_files(tmp_path):
    run_dir, _ = _run_with_input(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    for key, value in (("inputs", {"inputs": [str(secret)], "data": None}),
                       ("workflow_file", str(tmp_path / "other.yaml"))):
        state = json.loads((run_dir / "run.json").read_text())
        state[key] = value
        (run_dir / "run.json").write_text(json.dumps(state))
        with pytest.raises(UsageError, match="did not record"):
            load_run(run_dir)


# ---------------------------------------------------------------- task states, results, order

def test_task_state_is_a_str_enum_and_results_count_revisions():
    from utils.run.plan import Task

    assert TaskState.DONE == "done" and "done" in ENDED and f"{TaskState.FAILED}" == "failed"
    assert json.dumps({"s": TaskState.SKIPPED}) == '{"s": "skipped"}'
    task = Task(id="t1", title="One", role="writer")
    assert TaskResult.start(task).revision == 0
    again = TaskResult.start(task, {"state": "done", "revision": 1}).as_dict()
    assert again["revision"] == 2 and again["state"] == "pending" and again["artifacts"] == {}


def test_one_topological_order_with_ties_by_key_and_named_cycles():
    deps = {"a": [], "b": ["a"], "c": [], "d": ["b", "c", "outside"]}
    assert topo_order(deps) == ["a", "b", "c", "d"]
    assert topo_order(deps, key=lambda n: {"a": 2, "b": 0, "c": 1, "d": 0}[n]) == ["c", "a", "b", "d"]
    with pytest.raises(DependencyCycle) as exc:
        topo_order({"a": ["c"], "b": ["a"], "c": ["b"], "x": []})
    assert exc.value.cycle[0] == exc.value.cycle[-1] and set(exc.value.cycle) == {"a", "b", "c"}
    assert find_cycle({"a": ["a"]}) == ["a", "a"] and find_cycle(deps) is None

