"""The run lifecycle, exact (issue 13) and the app layer's hostile-input cases (issue 15).

In-process where only the app's answer matters; subprocesses for signals, a closed stdout and raw bytes
on stdin, since only a real process shows its exit status and what reaches its file descriptors.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fakes.fake_llm import FakeLLMServer, Reply
from tests.helpers import (ROOT, cli_env, done_ids, fast_config, only_run, read_state, run_dirs, run_main,
                           run_process, start_main, state_when)
from tests.scripted import Script, plan_json, request_kind, task_id
from tests.test_resume import SIX_SECTIONS, Gate

OSC52 = "\x1b]52;c;SGFja2Vk\x07"
CLEAR = "\x1b[2J"


def offline(tmp_path: Path, *args: str, stdin: str = "", **env: str):
    out = tmp_path / "runs"
    return run_main([*args, "--provider", "offline", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", None, None, **env), stdin=stdin), out


def one_line_error(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.code == 2, done.explain()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unexpected" not in lines[0], done.explain()
    assert "Traceback" not in done.output
    return lines[0]


# ---------------------------------------------------------------- --example all --json

def test_example_all_json_prints_one_json_document_and_nothing_else(tmp_path):
    done, out = offline(tmp_path, "--example", "all", "--json")
    assert done.code == 0, done.explain()
    data = json.loads(done.stdout)  # the whole of stdout: no workflow's log before it
    assert [r["workflow"] for r in data["runs"]] == ["blog", "report", "analysis", "project"]
    assert all(r["status"] == "ok" for r in data["runs"]) and data["exit_code"] == 0
    assert len(run_dirs(out)) == 4
    assert done.stderr.count("Offline provider") == 1, done.stderr  # said once, not per workflow


# ---------------------------------------------------------------- flags that conflict or would be ignored

@pytest.mark.parametrize("case", ["topic+all", "topic+resume", "data+blog", "input+blog", "file+example",
                                  "interactive+resume", "interactive+all", "json+quiet"])
def test_conflicting_or_ignored_flags_are_one_line_errors(case, tmp_path):
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("a,b\n1,2\n3,5\n4,4\n", encoding="utf-8")
    saved = ""
    if "resume" in case:  # a real run to resume, so only the conflict can be wrong
        first, _ = offline(tmp_path / "first", "--example", "blog", "--plan-only")
        assert first.code == 0, first.explain()
        saved = str(only_run(tmp_path / "first" / "runs"))
    spec = tmp_path / "w.yaml"
    spec.write_text((ROOT / "examples" / "blog.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    args = {"topic+all": ["Some topic", "--example", "all"],
            "topic+resume": ["Some topic", "--resume", saved],
            "data+blog": ["--example", "blog", "--data", str(csv_file)],
            "input+blog": ["--example", "blog", "--input", str(csv_file)],
            "file+example": ["--workflow-file", str(spec), "--example", "blog"],
            "interactive+resume": ["--interactive", "--resume", saved],
            "interactive+all": ["--interactive", "--example", "all"],
            "json+quiet": ["--example", "blog", "--json", "--quiet"]}[case]
    done, out = offline(tmp_path, *args)
    one_line_error(done)
    assert run_dirs(out) == []


# ---------------------------------------------------------------- --max-workers

def test_max_workers_is_bounded_everywhere_before_any_call(tmp_path, fake_llm):
    fake_llm.responder = Script(plans=[SIX_SECTIONS])
    env = cli_env(tmp_path / "home", fake_llm.base_url)
    out = tmp_path / "runs"
    assert "at most 256" in one_line_error(run_main(["--example", "blog", "--max-workers", "1000000000",
                                                     "--output-dir", str(out)], env))
    cfg = fast_config(tmp_path / "c.yaml", max_workers=10 ** 9)
    assert "max_workers" in one_line_error(run_main(["--example", "blog", "--config", str(cfg),
                                                     "--output-dir", str(out)], env))
    assert fake_llm.requests == [] and run_dirs(out) == []
    # a saved run whose options were tampered with
    first, _ = offline(tmp_path, "--example", "blog", "--plan-only")
    assert first.code == 0, first.explain()
    run_dir = only_run(tmp_path / "runs")
    state = read_state(run_dir)
    state["options"]["max_workers"] = 10 ** 30
    (run_dir / "run.json").write_text(json.dumps(state), encoding="utf-8")
    assert "max_workers" in one_line_error(offline(tmp_path, "--resume", str(run_dir))[0])
    # and at the prompt
    session, _ = offline(tmp_path, "--interactive", stdin="/workers 1000000000\n/workers 3\n/quit\n")
    assert session.code == 0 and "from 1 to 256" in session.stdout and "Workers: 3" in session.stdout


def test_more_workers_than_the_call_limit_raise_the_limit(tmp_path):
    from utils.app.request import make_llm
    from utils.app.settings import build_settings

    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_concurrency: 4\n", encoding="utf-8")
    many = build_settings({"max_workers": 64, "config": str(cfg), "provider": "offline"})
    few = build_settings({"max_workers": 2, "config": str(cfg), "provider": "offline"})
    assert make_llm(many, lambda e: None).settings.max_concurrency == 64
    assert make_llm(few, lambda e: None).settings.max_concurrency == 4


# ---------------------------------------------------------------- Ctrl-C, SIGTERM, a second Ctrl-C

def start_blocked(server: FakeLLMServer, tmp_path: Path, *extra: str):
    """A run whose t4 and t5 hang at the server; returns once t1-t3 are saved as done."""
    gate = Gate({"t4", "t5"})
    server.responder = Script(plans=[SIX_SECTIONS], worker=gate.worker)
    out = tmp_path / "runs"
    proc = start_main(["--example", "blog", "--no-cache", "--output-dir", str(out), "--max-workers", "3",
                       "--config", str(fast_config(tmp_path / "fast.yaml")), *extra],
                      cli_env(tmp_path / "home", server.base_url))

    def ready(state: dict) -> bool:
        in_flight = {task_id(r) for r in list(server.requests) if r.status is None}
        return {"t1", "t2", "t3"} <= done_ids(state) and {"t4", "t5"} <= in_flight

    try:
        run_dir, _ = state_when(out, ready, proc)
    except BaseException:
        proc.kill()
        proc.communicate()
        gate.open()
        raise
    return proc, gate, run_dir


def stop(proc, gate, *signals: int) -> tuple[str, str]:
    try:
        for sig in signals:
            proc.send_signal(sig)
        return proc.communicate(timeout=20)
    finally:
        gate.open()


@pytest.mark.parametrize("as_json", [False, True])
def test_after_ctrl_c_the_summary_says_what_was_done(as_json, fake_llm, tmp_path):
    proc, gate, run_dir = start_blocked(fake_llm, tmp_path, *(["--json"] if as_json else []))
    stdout, stderr = stop(proc, gate, signal.SIGINT)
    text = stdout + stderr
    assert proc.returncode == 130, text
    state = read_state(run_dir)
    done = done_ids(state)
    assert state["status"] == "interrupted" and len(done) >= 3
    if as_json:
        data = json.loads(stdout)
        assert set(data["done"]) == done and data["status"] == "interrupted"
        assert data["resume_hint"] == f"python main.py --resume {run_dir}"
        return
    assert f"{len(done)} of 7 tasks done" in text, text
    assert text.count("--resume") == 1, text  # the hint once
    assert "(interrupted)" not in text


def test_sigterm_is_handled_like_ctrl_c(fake_llm, tmp_path):
    proc, gate, run_dir = start_blocked(fake_llm, tmp_path)
    stdout, stderr = stop(proc, gate, signal.SIGTERM)
    assert proc.returncode == 143, stdout + stderr
    state = read_state(run_dir)
    assert state["status"] == "interrupted" and {"t1", "t2", "t3"} <= done_ids(state)
    assert f"python main.py --resume {run_dir}" in stdout + stderr
    assert "Traceback" not in stdout + stderr


def test_a_second_ctrl_c_exits_130(fake_llm, tmp_path):
    proc, gate, run_dir = start_blocked(fake_llm, tmp_path)
    stdout, stderr = stop(proc, gate, signal.SIGINT, signal.SIGINT)
    assert proc.returncode == 130, stdout + stderr  # not -2 (killed by the signal)


def test_an_interrupted_run_exits_130_at_once_even_with_a_tool_thread_still_busy(tmp_path):
    """After Ctrl-C the state is saved: the process leaves with 130 at once instead of waiting at exit
    for a worker thread (a long tool call) until the user presses Ctrl-C again."""
    code = ("import threading, time, main\n"
            "def interrupted():\n"
            "    threading.Thread(target=time.sleep, args=(30,)).start()  # a tool still running\n"
            "    print('saved', flush=True)\n"
            "    return 130\n"
            "main.main = interrupted\n"
            "main.entry()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=cli_env(tmp_path, None, None),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "saved"
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, proc.stderr.read()


# ---------------------------------------------------------------- a closed stdout never stops a run

def test_a_closed_stdout_never_stops_the_run(fake_llm, tmp_path):
    """`main.py --example blog | head -3`: the reader goes away after the plan; the run finishes."""
    gate = Gate({"t2"})
    fake_llm.responder = Script(plans=[SIX_SECTIONS], worker=gate.worker)
    out = tmp_path / "runs"
    proc = start_main(["--example", "blog", "--no-cache", "--output-dir", str(out),
                       "--config", str(fast_config(tmp_path / "fast.yaml"))],
                      cli_env(tmp_path / "home", fake_llm.base_url), text=False, encoding=None, errors=None)
    try:
        for _ in range(3):
            proc.stdout.readline()
        proc.stdout.close()  # `head -3` has what it wanted
        gate.open()
        proc.wait(timeout=30)
        stderr = proc.stderr.read().decode("utf-8", "replace")
    finally:
        gate.open()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "unexpected" not in stderr and "BrokenPipe" not in stderr
    state = read_state(only_run(out))
    assert state["status"] == "ok" and (only_run(out) / "output.md").is_file()


# ---------------------------------------------------------------- model-written text on the terminal

def test_escape_sequences_from_the_model_never_reach_the_terminal(fake_llm, tmp_path):
    plan = plan_json([("t1", "analyst", []), ("t2", "writer", ["t1"])], goal=f"Goal {OSC52}")
    plan["tasks"][1]["title"] = f"Intro {OSC52}{CLEAR}"
    fake_llm.responder = Script(plans=[plan], worker=lambda tid, req: f"## Part {tid} {OSC52}\n\nText {CLEAR}.")
    out = tmp_path / "runs"
    done = run_main(["--example", "blog", "--no-cache", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 0, done.explain()
    assert "\x1b" not in done.output and "Intro ^[]52;c;" in done.stdout


def test_rich_mode_neutralises_the_plan_tree_table_and_document():
    import io

    from utils.app.render import Display
    from utils.events import Event

    buf = io.StringIO()
    display = Display("rich", file=buf, width=100)
    plan = {"goal": f"G {OSC52}", "tasks": [{"id": "t1", "title": f"T {CLEAR}", "role": "writer",
                                             "depends_on": [], "priority": 1}]}
    display.show_plan(plan)
    display(Event("plan", {"plan": plan}))
    display.console.print(display._renderable())
    display(Event("task", {"id": "t1", "state": "failed", "error": f"boom {OSC52}"}))
    display.show_document(f"# Title {OSC52}\n\nBody {CLEAR}", "out.md")
    assert "\x1b]52" not in buf.getvalue() and CLEAR not in buf.getvalue(), buf.getvalue()


# ---------------------------------------------------------------- the live display

def test_live_table_fits_80_columns_and_planning_shows_a_spinner():
    import io

    from rich.cells import cell_len
    from rich.console import Console

    from utils.app.render import Display
    from utils.events import Event

    display = Display("rich", file=io.StringIO(), width=80)
    probe = Console(file=io.StringIO(), width=80, record=True)
    probe.print(display._renderable())
    assert "0/0 tasks" not in probe.export_text()
    tasks = [{"id": f"task{i}", "title": "A long title about a subject " * 3, "role": "statistician",
              "depends_on": []} for i in range(3)]
    display(Event("plan", {"plan": {"goal": "A goal " * 30, "tasks": tasks}}))
    display(Event("task", {"id": "task0", "state": "running", "worker": 12}))
    display(Event("task", {"id": "task1", "state": "done", "elapsed_s": 1234.5, "tokens": 1234567}))
    display(Event("llm", {"calls": 12345, "prompt_tokens": 9_000_000, "completion_tokens": 1_000_000,
                          "cached": 3, "retries": 4}))
    probe = Console(file=io.StringIO(), width=200, record=True)  # wide, so nothing is folded for us
    probe.print(display._renderable())
    lines = probe.export_text().splitlines()
    assert any("task1" in line for line in lines)
    assert max(cell_len(line.rstrip()) for line in lines) <= 80, "\n".join(lines)


def test_show_calls_prints_prompts_and_replies_on_stderr_only_when_asked():
    import io

    from utils.app.render import Display
    from utils.events import Event

    call = Event("call", {"purpose": "task t1 (writer)", "model": "m1", "reply": "the reply text",
                          "messages": [{"role": "user", "content": f"the prompt {OSC52}"}],
                          "prompt_tokens": 10, "completion_tokens": 5, "latency_s": 0.2, "cached": False,
                          "retries": 0, "error": None})
    quiet_out, quiet_err = io.StringIO(), io.StringIO()
    Display("plain", file=quiet_out, err_file=quiet_err)(call)
    assert quiet_out.getvalue() == quiet_err.getvalue() == ""
    out, err = io.StringIO(), io.StringIO()
    Display("plain", file=out, err_file=err, show_calls=True)(call)
    assert out.getvalue() == ""
    text = err.getvalue()
    assert "task t1 (writer)" in text and "the prompt" in text and "the reply text" in text and "\x1b" not in text


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing spent

def test_bad_inputs_are_one_line_usage_errors(tmp_path, fake_llm):
    fake_llm.responder = Script(plans=[SIX_SECTIONS])
    env = cli_env(tmp_path / "home", fake_llm.base_url)
    out = tmp_path / "runs"
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    deep_cfg = tmp_path / "deep.yaml"
    deep_cfg.write_text("models: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("region,units,price\nnorth,3,9.5\nsouth,4\neast,1,2,3,4\n", encoding="utf-8")
    a_file = tmp_path / "a_file"
    a_file.write_text("x", encoding="utf-8")
    long_spec = tmp_path / "long.yaml"
    spec = yaml.safe_load((ROOT / "examples" / "blog.yaml").read_text(encoding="utf-8"))
    spec["default_topic"] = "word " * 1000
    long_spec.write_text(yaml.safe_dump(spec), encoding="utf-8")
    cases = [["--example", "report", "--input", str(deep_json)],
             ["--example", "blog", "--config", str(deep_cfg)],
             ["caf\udcff topic"],
             ["--example", "blog", "--output-dir", str(a_file / "runs")],
             ["--workflow-file", str(long_spec)],
             ["--example", "report", "--input", str(ragged)],
             ["Summarise these sources", "--input", str(ragged)]]  # before the routing call too
    for args in cases:
        argv = [*args, "--no-cache"] + ([] if "--output-dir" in args else ["--output-dir", str(out)])
        one_line_error(run_main(argv, env))
    assert fake_llm.requests == [], [request_kind(r) for r in fake_llm.requests]  # all before any call
    assert run_dirs(out) == []


def test_a_saved_goal_over_the_topic_limit_is_refused(tmp_path):
    first, out = offline(tmp_path, "--example", "blog", "--plan-only")
    run_dir = only_run(out)
    state = read_state(run_dir)
    state["goal"] = "g" * 1_000_000
    (run_dir / "run.json").write_text(json.dumps(state), encoding="utf-8")
    assert "saved goal" in one_line_error(offline(tmp_path, "--resume", str(run_dir))[0])


def test_a_non_utf8_line_at_the_prompt_breaks_nothing_after_it(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--interactive", "--provider", "offline",
                           "--output-dir", str(tmp_path / "runs")], input=b"/example \xff\xfe\n/help\n/quit\n",
                          capture_output=True, cwd=ROOT, env=cli_env(home, None, None), timeout=60)
    stdout = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, stdout + proc.stderr.decode("utf-8", "replace")
    assert "Commands (any other line is the topic" in stdout
    assert (home / "history").read_text(encoding="utf-8").splitlines()[-1] == "/quit"


# ---------------------------------------------------------------- interactive routes like the CLI

def test_interactive_routes_a_topic_the_same_way_as_the_cli(tmp_path, fake_llm):
    fake_llm.responder = Script(plans=[SIX_SECTIONS], route="report")
    done = run_main(["--interactive", "--output-dir", str(tmp_path / "runs")],
                    cli_env(tmp_path / "home", fake_llm.base_url), stdin="Tell me about durable runs\n/quit\n")
    assert done.code == 0, done.explain()
    assert [request_kind(r) for r in fake_llm.requests][:1] == ["route"]
    assert "Workflow: report (chosen by the model: scripted" in done.stdout


# ---------------------------------------------------------------- the real kaygraph's logs stay quiet

FAKE_KAYGRAPH = '''
"""A stand-in for the real kaygraph package: our core's classes, but a failing exec logs a WARNING
on a logger named after the node class, as the real library does."""
import logging
from utils import kaygraph_core as _core
from utils.kaygraph_core import (AsyncBatchGraph, AsyncBatchNode, AsyncGraph, AsyncNode, AsyncParallelBatchGraph,
                                 AsyncParallelBatchNode, BaseNode, BatchGraph, BatchNode, Config, Graph, Node,
                                 ParallelBatchNode)
__version__ = "0.0-fake"
_sync, _async = _core.Node._exec, _core.AsyncNode._exec

def _exec(self, prep_res):
    try:
        return _sync(self, prep_res)
    except Exception as exc:
        logging.getLogger(type(self).__name__).warning("Node %s failed: %s", type(self).__name__, exc)
        raise

async def _aexec(self, prep_res):
    try:
        return await _async(self, prep_res)
    except Exception as exc:
        logging.getLogger(type(self).__name__).warning("Node %s failed: %s", type(self).__name__, exc)
        raise

_core.Node._exec, _core.AsyncNode._exec = _exec, _aexec
'''


def test_engine_logs_reach_stderr_only_with_verbose(tmp_path, fake_llm):
    fake_llm.responder = lambda req: Reply(status=500, error_message="server down")
    pkg = tmp_path / "fakelib" / "kaygraph"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_KAYGRAPH, encoding="utf-8")
    env = cli_env(tmp_path / "home", fake_llm.base_url, PYTHONPATH=f"{tmp_path / 'fakelib'}:{ROOT}")
    env.pop("ORCH_ENGINE", None)
    common = ["--example", "blog", "--no-cache", "--output-dir", str(tmp_path / "runs"),
              "--config", str(fast_config(tmp_path / "fast.yaml", max_retries=0))]
    quiet = run_process(common, env)
    lines = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert quiet.code != 0 and len(lines) == 1 and lines[0].startswith("error: "), quiet.explain()
    loud = run_process([*common, "--verbose"], env)
    assert "WARNING" in loud.stderr and "failed" in loud.stderr, loud.explain()
    engines = {read_state(d)["meta"]["engine"] for d in run_dirs(tmp_path / "runs")}
    assert engines == {"kaygraph 0.0-fake"}  # the stand-in really was the engine


def test_stream_shows_text_as_it_arrives_on_a_terminal():
    """`--stream`: the client's `delta` events appear live under the table, until the call ends."""
    import io

    from rich.console import Console

    from utils.app.render import Display
    from utils.events import Event

    display = Display("rich", file=io.StringIO(), width=80)
    display(Event("plan", {"plan": {"goal": "g", "tasks": [{"id": "t1", "title": "T", "role": "writer"}]}}))
    for piece in ("Streaming ", "text ", f"arrives{CLEAR}"):
        display(Event("delta", {"purpose": "task t1 (writer)", "text": piece}))
    probe = Console(file=io.StringIO(), width=80, record=True)
    probe.print(display._renderable())
    text = probe.export_text()
    assert "task t1 (writer): …Streaming text arrives" in text and "\x1b" not in text
    display(Event("call", {"purpose": "task t1 (writer)"}))
    probe = Console(file=io.StringIO(), width=80, record=True)
    probe.print(display._renderable())
    assert "Streaming" not in probe.export_text()


def test_one_precedence_rule_flags_env_config_saved_defaults(tmp_path, monkeypatch):
    from utils.app.request import make_llm
    from utils.app.settings import build_settings

    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_workers: 3\nmodel: config-model\nbase_url: http://127.0.0.1:9/v1\n", encoding="utf-8")
    saved = {"max_workers": 5, "max_revisions": 0, "strategy": "static"}
    plain = build_settings({"config": str(cfg)})
    assert plain.run_options(saved)["max_workers"] == 3          # config file beats the saved run
    assert plain.run_options(saved)["max_revisions"] == 0        # saved run beats the defaults
    assert plain.run_options()["max_revisions"] == 1             # defaults
    flagged = build_settings({"config": str(cfg), "max_workers": 7})
    assert flagged.run_options(saved)["max_workers"] == 7         # flags beat everything
    monkeypatch.setenv("ORCH_MODEL", "env-model")
    assert make_llm(plain, lambda e: None).settings.model == "env-model"        # environment beats config
    assert make_llm(build_settings({"config": str(cfg), "model": "flag-model"}),
                    lambda e: None).settings.model == "flag-model"            # flag beats environment
    with pytest.raises(Exception):  # frozen: nothing downstream can change the settings
        plain.quiet = True


def test_show_calls_shows_each_model_calls_prompt_and_reply(fake_llm, tmp_path):
    """End to end once the client emits `call` events (the model boundary's call log)."""
    pytest.importorskip("utils.model.calllog")
    fake_llm.responder = Script(plans=[plan_json([("t1", "analyst", []), ("t2", "writer", ["t1"])])],
                                worker=lambda tid, req: f"## Part {tid}\n\nReply text for {tid}.")
    done = run_main(["--example", "blog", "--no-cache", "--show-calls", "--output-dir", str(tmp_path / "runs")],
                    cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 0, done.explain()
    assert "Do t2" in done.stderr and "Reply text for t2." in done.stderr  # the prompt and the reply
    assert "Do t2" not in done.stdout and "HTTP Request" not in done.stderr
