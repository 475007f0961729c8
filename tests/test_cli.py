"""The command line as a user meets it: `main.py` (in-process; a subprocess for the terminal, help and
version), against the fake server or offline.

Covers the entry points (`--example`, a free-text topic, `--plan-only`, `--json`, `--quiet`), what the
terminal gets (no escape codes off a TTY or with NO_COLOR, the rich display on a real pseudo-terminal),
help and version, a failing task's exit code and summary, and config-file precedence.
"""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

import main as app
from fakes.fake_llm import FakeLLMServer, Reply
from tests.scripted import Script, plan_json, request_kind, worker_requests
from tests.helpers import ROOT, clean_env
from tests.test_workflows import run_main

SMALL_BLOG = plan_json([("t1", "analyst", [], 1), ("t2", "writer", ["t1"], 2), ("t3", "writer", ["t1"])],
                       goal="Write about testing")
FAILING_BLOG = plan_json([("t1", "analyst", [], 1), ("t2", "writer", ["t1"], 2), ("t3", "writer", ["t2"]),
                          ("t4", "writer", ["t1"])], goal="Write about testing")
SMALL_ANALYSIS = plan_json([("load", "loader", [], 1), ("stats", "statistician", ["load"], 2),
                            ("interpret", "interpreter", ["stats"])], goal="Analyse the data")
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78DEHM])")


def worker_text(tid: str, req) -> str:
    return f"## Section {tid}\n\nScripted text for {tid}."


def only_run_dir(out_dir: Path) -> Path:
    dirs = [p for p in out_dir.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


# ---------------------------------------------------------------- entry points

def test_example_blog(fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.responder = Script(plans=[SMALL_BLOG], worker=worker_text)
    run = run_main(["--example", "blog"], tmp_path, server=fake_llm)
    assert run.code == 0, run.explain()
    state = run.state()
    assert state["workflow"] == "blog" and state["status"] == "ok"
    assert [t["id"] for t in state["plan"]["tasks"]] == ["t1", "t2", "t3"]
    assert state["meta"]["version"] == app.__version__
    doc = (run.run_dir() / "output.md").read_text(encoding="utf-8")
    assert "Scripted text for t2." in doc and "Scripted text for t3." in doc
    # plain output: the plan, task progress, the document path and the summary line
    assert "t2 · Title t2 [writer] p2 ← t1" in run.stdout
    assert re.search(r"t3 done in [\d.]+ s", run.stdout)
    assert f"Document: {run.run_dir() / 'output.md'}" in run.stdout
    summary = [line for line in run.stdout.splitlines() if line.startswith("ok · ")]
    assert len(summary) == 1 and str(run.run_dir()) in summary[0] and "calls" in summary[0]
    assert "offline" not in summary[0]


def test_free_text_topic_picks_the_workflow_and_says_so(fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.responder = Script(plans=[SMALL_ANALYSIS], worker=worker_text)
    sample = Path(__file__).resolve().parent.parent / "examples" / "data" / "sales.csv"
    run = run_main(["Analyse the data in sales csv", "--data", str(sample)], tmp_path, server=fake_llm)
    assert run.code == 0, run.explain()
    notice = [line for line in run.stdout.splitlines() if "Workflow: analysis" in line]
    assert len(notice) == 1, run.stdout
    state = run.state()
    assert state["workflow"] == "analysis" and state["goal"] == "Analyse the data in sales csv"
    assert Path(state["inputs"]["data"]).name == "sales.csv"
    assert state["results"]["stats"]["data"]["rows"] == 200
    assert state["status"] == "ok"


def test_json_output_is_only_json(fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.responder = Script(plans=[SMALL_BLOG], worker=worker_text)
    run = run_main(["--example", "blog", "--json"], tmp_path, server=fake_llm)
    assert run.code == 0, run.explain()
    data = json.loads(run.stdout)  # the whole of stdout, nothing else
    assert data["status"] == "ok" and data["exit_code"] == 0 and data["workflow"] == "blog"
    assert [(t["id"], t["state"]) for t in data["tasks"]] == [("t1", "done"), ("t2", "done"), ("t3", "done")]
    assert Path(data["document"]).is_file() and Path(data["run_json"]).is_file()
    assert data["calls"] == len(fake_llm.requests)
    assert data["prompt_tokens"] > 0 and data["completion_tokens"] > 0
    assert data["failed"] == [] and data["skipped"] == [] and data["offline"] is False
    state = json.loads(Path(data["run_json"]).read_text(encoding="utf-8"))
    assert state["totals"]["calls"] == data["calls"]


def test_plan_only_makes_no_worker_calls(fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.responder = Script(plans=[SMALL_BLOG], worker=worker_text)
    run = run_main(["--example", "blog", "--plan-only"], tmp_path, server=fake_llm)
    assert run.code == 0, run.explain()
    assert [request_kind(r) for r in fake_llm.requests] == ["plan"]
    run_dir = run.run_dir()
    state = run.state()
    assert [t["id"] for t in state["plan"]["tasks"]] == ["t1", "t2", "t3"]
    assert state["options"]["plan_only"] is True
    assert not state.get("results")
    assert state["status"] == "planned"
    doc = (run_dir / "output.md").read_text(encoding="utf-8")  # the planned DAG (issue 14), no document
    assert "```mermaid\ngraph LR" in doc and "--> " in doc and (run_dir / "plan.png").read_bytes()[:4] == b"\x89PNG"
    assert "t2 · Title t2 [writer] p2 ← t1" in run.stdout


def test_quiet_prints_only_the_summary_line(fake_llm: FakeLLMServer, tmp_path: Path):
    """--help promises "only errors and the final summary line": exactly that, on stdout."""
    fake_llm.responder = Script(plans=[SMALL_BLOG], worker=worker_text)
    run = run_main(["--example", "blog", "--quiet"], tmp_path, server=fake_llm)
    assert run.code == 0, run.explain()
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ok · ") and str(run.run_dir()) in lines[0], lines
    assert " calls · " in lines[0] and " tokens" in lines[0]
    assert run.stderr.strip() == ""


# ---------------------------------------------------------------- what the terminal gets

@pytest.mark.parametrize("no_color", [False, True])
def test_no_escape_codes_off_a_terminal(no_color: bool, fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.responder = Script(plans=[SMALL_BLOG], worker=worker_text)
    env = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
    if no_color:
        env["NO_COLOR"] = "1"
    run = run_main(["--example", "blog"], tmp_path, server=fake_llm, env=env)
    assert run.code == 0, run.explain()
    assert "\x1b" not in run.stdout and "\x1b" not in run.stderr
    assert "ok · " in run.stdout


def run_in_pty(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
               timeout: float = 60) -> tuple[int, str]:
    """Run main.py (offline) on a pseudo-terminal 160 columns wide; returns (exit code, raw output)."""
    import fcntl
    import pty
    import struct
    import termios

    home = tmp_path / "orch_home"
    home.mkdir(exist_ok=True)
    cmd = [sys.executable, str(ROOT / "main.py"), *args, "--provider", "offline",
           "--output-dir", str(tmp_path / "runs")]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    full_env = clean_env(ORCH_HOME=str(home), TERM="xterm-256color", COLUMNS="160", LINES="50", **(env or {}))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=full_env,
                            start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("main.py on a pty did not finish:\n" + b"".join(chunks).decode("utf-8", "replace"))
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer to the pty has gone
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_rich_display_on_a_terminal(tmp_path: Path):
    code, raw = run_in_pty(["--example", "blog"], tmp_path)
    text = ANSI.sub("", raw).replace("\r", "")
    assert code == 0, text
    assert "\x1b[" in raw  # the rich display really ran
    for tid in ("t1", "t2", "t3", "t4", "t5", "t6"):
        assert re.search(rf"\b{tid}\b", text), tid
    assert re.search(r"^ok · .* · offline: no model called", text, re.MULTILINE), text[-2000:]
    assert not re.search(r"\bcalls\b", text)  # offline: no call counts as if a model ran
    assert "Traceback" not in text


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_no_color_on_a_terminal_is_the_same_display_without_colour(tmp_path: Path):
    """Issue 24.7: NO_COLOR asks for no colour, not for another display (it used to switch to the log)."""
    code, raw = run_in_pty(["--example", "blog"], tmp_path, env={"NO_COLOR": "1"})
    assert code == 0, raw
    assert "t6 done in" not in raw and "ok · " in raw  # the rich display, not the plain log
    colours = [p for sgr in re.findall(r"\x1b\[([0-9;]*)m", raw) for p in sgr.split(";")
               if p.isdigit() and (30 <= int(p) <= 38 or 40 <= int(p) <= 48 or 90 <= int(p) <= 107)]
    assert not colours, colours[:10]


# ---------------------------------------------------------------- help and version

def test_help_lists_groups_and_every_flag(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--help"], capture_output=True, text=True,
                          cwd=tmp_path, env=clean_env(COLUMNS="100"), timeout=30)
    assert proc.returncode == 0 and proc.stderr == ""
    out = proc.stdout
    for group in ("what to run:", "orchestration:", "model:", "input and output:"):
        assert f"\n{group}\n" in out, group
    squashed = "".join(out.split())
    for action in app.build_parser()._actions:
        for flag in action.option_strings:
            assert flag in out, flag
        assert action.help and action.help.strip(), f"{action.option_strings or action.dest} has no help"
        assert "".join(action.help.split()) in squashed, action.help
    assert "Exit codes" in out


def test_version_shows_app_engine_and_openai(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--version"], capture_output=True, text=True,
                          cwd=tmp_path, env=clean_env(), timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    assert len(out.splitlines()) == 1
    assert f"orchestrator {app.__version__}" in out
    assert re.search(r"engine (builtin|kaygraph)\b", out), out
    assert f"httpx {metadata.version('httpx')}" in out


# ---------------------------------------------------------------- failures and configuration

def test_a_failing_task_exits_1_and_the_summary_names_it(fake_llm: FakeLLMServer, tmp_path: Path):
    def worker(tid: str, req):
        if tid == "t2":
            return Reply(status=400, error_message="This model cannot write section t2.")
        return worker_text(tid, req)

    fake_llm.responder = Script(plans=[FAILING_BLOG], worker=worker)
    run = run_main(["--example", "blog"], tmp_path, server=fake_llm)
    assert run.code == 1, run.explain()
    assert len(worker_requests(fake_llm, "t2")) == 1  # a 400 is not retried
    assert worker_requests(fake_llm, "t3") == []
    state = run.state()
    states = {tid: r["state"] for tid, r in state["results"].items()}
    assert states == {"t1": "done", "t2": "failed", "t3": "skipped", "t4": "done"}
    assert "cannot write section t2" in state["results"]["t2"]["error"]
    assert state["status"] == "partial"
    lines = run.stdout.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("partial (1 failed, 1 skipped) · "))
    details = "\n".join(lines[summary + 1:])
    assert re.search(r"^\s+t2 failed: .*cannot write section t2", details, re.MULTILINE), details
    assert re.search(r"^\s+skipped: t3$", details, re.MULTILINE), details
    doc = (run.run_dir() / "output.md").read_text(encoding="utf-8")
    assert "task `t2` failed" in doc and "Scripted text for t4." in doc


def test_config_max_retries_zero_fails_a_500_at_once(fake_llm: FakeLLMServer, tmp_path: Path):
    def worker(tid: str, req):
        return Reply(status=500) if tid == "t2" else worker_text(tid, req)

    config = tmp_path / "orch.yaml"
    config.write_text("max_retries: 0\n", encoding="utf-8")
    fake_llm.responder = Script(plans=[SMALL_BLOG], worker=worker)
    run = run_main(["--example", "blog", "--config", str(config)], tmp_path, server=fake_llm)
    assert run.code == 1, run.explain()
    assert len(worker_requests(fake_llm, "t2")) == 1
    state = run.state()
    assert state["results"]["t2"]["state"] == "failed" and "500" in state["results"]["t2"]["error"]
    assert state["totals"]["retries"] == 0
    assert re.search(r"^\s+t2 failed: ", run.stdout, re.MULTILINE)


def test_flags_override_the_config_file(tmp_path: Path):
    config = tmp_path / "orch.yaml"
    config.write_text("max_workers: 1\nstrategy: static\nmax_revisions: 0\n", encoding="utf-8")
    run = run_main(["--example", "blog", "--config", str(config), "--max-workers", "2"], tmp_path)
    assert run.code == 0, run.explain()
    state = run.state()
    assert state["options"]["max_workers"] == 2          # flag beats file
    assert state["options"]["strategy"] == "static"      # file beats default
    assert state["options"]["max_revisions"] == 0
    assert state["meta"]["strategy"] == "static"
    workers = {r["worker"] for r in state["results"].values()}
    assert workers <= {1, 2}


def test_cost_is_estimated_from_configured_prices_and_per_role_models_are_used(fake_llm: FakeLLMServer,
                                                                                tmp_path: Path):
    fake_llm.responder = Script(plans=[SMALL_BLOG], worker=worker_text)
    config = tmp_path / "orch.yaml"
    config.write_text("model: base-model\nmodels: {writer: writer-model, planner: planner-model}\n"
                      "prices:\n  base-model: {input: 1000, output: 1000}\n"
                      "  writer-model: {input: 1000, output: 1000}\n"
                      "  planner-model: {input: 1000, output: 1000}\n", encoding="utf-8")
    run = run_main(["--example", "blog", "--config", str(config)], tmp_path, server=fake_llm)
    assert run.code == 0, run.explain()
    models = {request_kind(r) + ":" + (r.model or "") for r in fake_llm.requests}
    assert {"plan:planner-model", "worker:writer-model", "worker:base-model"} <= models
    totals = run.state()["totals"]
    expected = (totals["prompt_tokens"] + totals["completion_tokens"]) * 1000 / 1e6
    assert totals["cost_usd"] == pytest.approx(expected, rel=1e-3)
    summary = [line for line in run.stdout.splitlines() if line.startswith("ok · ")][0]
    assert f"${totals['cost_usd']:.4f}"[:5] in summary
