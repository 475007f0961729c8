"""Bad input, one case at a time, through `main.py`: one clear line on stderr, the exit code the README
documents (2: bad usage or input, nothing sent to a model; 1: the run failed), no traceback unless
`--verbose`, and nothing already done lost.
"""
from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from fakes.fake_llm import Reply
from tests.helpers import cli_env, only_run, read_state, run_dirs, run_main

ENOUGH = "x" * 2001


@dataclass
class Case:
    args: list[str]
    code: int
    says: str                               # a phrase the one error line must contain
    files: dict[str, bytes] = field(default_factory=dict)
    server: Callable | None = None          # responder: the case reaches the model (exit 1 cases)
    closed_port: bool = False


CASES = {
    "empty topic": Case(["", "--example", "blog"], 2, "topic is empty"),
    "whitespace topic": Case(["  \n\t ", "--example", "blog"], 2, "topic is empty"),
    "topic too long": Case([ENOUGH], 2, "limit is 2000"),
    "unknown example": Case(["--example", "nope"], 2, "invalid choice: 'nope'"),
    "missing workflow file": Case(["--workflow-file", "{tmp}/missing.yaml"], 2, "missing.yaml"),
    "malformed config": Case(["--example", "blog", "--config", "{tmp}/c.yaml"], 2, "not valid YAML",
                             {"c.yaml": b"model: [gpt, \n  strategy: {\n"}),
    "wrongly typed config": Case(["--example", "blog", "--config", "{tmp}/c.yaml"], 2, "max_workers",
                                 {"c.yaml": b"max_workers: lots\n"}),
    "config not a mapping": Case(["--example", "blog", "--config", "{tmp}/c.yaml"], 2, "mapping",
                                 {"c.yaml": b"- model\n- strategy\n"}),
    "config unknown key": Case(["--example", "blog", "--config", "{tmp}/c.yaml"], 2, "max_wrokers",
                               {"c.yaml": b"max_wrokers: 3\n"}),
    "config negative backoff": Case(["--example", "blog", "--config", "{tmp}/c.yaml"], 2, "backoff_base_s",
                                    {"c.yaml": b"backoff_base_s: -1\n"}),
    "missing config": Case(["--example", "blog", "--config", "{tmp}/none.yaml"], 2, "not found"),
    "missing csv": Case(["--example", "analysis", "--data", "{tmp}/none.csv"], 2, "not found"),
    "csv is a folder": Case(["--example", "analysis", "--data", "{tmp}"], 2, "not a file"),
    "empty csv": Case(["--example", "analysis", "--data", "{tmp}/d.csv"], 2, "empty", {"d.csv": b""}),
    "one-row csv": Case(["--example", "analysis", "--data", "{tmp}/d.csv"], 2, "at least 2 data rows",
                        {"d.csv": "région,ventes\nÎle,3\n".encode("latin-1")}),  # Latin-1 itself now loads
    "ragged csv": Case(["--example", "analysis", "--data", "{tmp}/d.csv"], 2, "line 3",
                       {"d.csv": b"region,sales\nnorth,3\nsouth\n"}),
    "csv with no column to analyse": Case(["--example", "analysis", "--data", "{tmp}/d.csv"], 2,
                                          "no column can be analysed",
                                          {"d.csv": b"id,name\n" + b"".join(b"%d,person %d\n" % (i, i) for i in range(30))}),
    "ragged whitespace file": Case(["--example", "analysis", "--data", "{tmp}/d.txt"], 2, "line 3 has 2",
                                   {"d.txt": b"a b c\n1 2 3\n4 5\n6 7 8\n"}),
    "missing input": Case(["--example", "report", "--input", "{tmp}/notes.md"], 2, "not found"),
    "output dir is a file": Case(["--example", "blog", "--output-dir", "{tmp}/taken"], 2, "not a folder",
                                 {"taken": b"I am a file\n"}),
    "max-workers 0": Case(["--example", "blog", "--max-workers", "0"], 2, "at least 1"),
    "max-workers -1": Case(["--example", "blog", "--max-workers", "-1"], 2, "at least 1"),
    "max-workers abc": Case(["--example", "blog", "--max-workers", "abc"], 2, "whole number"),
    "resume a folder that is not a run": Case(["--resume", "{tmp}"], 2, "not a run folder"),
    "resume an unknown id": Case(["--resume", "20990101-nothing"], 2, "no run folder"),
    "resume a foreign run.json": Case(["--resume", "{tmp}/fake"], 2, "not written by this app",
                                      {"fake/run.json": b'{"goal": "x"}'}),
    "unreachable base url": Case(["--example", "blog"], 1, "cannot reach", closed_port=True),
    "bad key (401)": Case(["--example", "blog"], 1, "authentication failed",
                          server=lambda req: Reply(status=401)),
    "unknown model (404)": Case(["--example", "blog", "--model", "no-such-model"], 1, "'no-such-model' not found",
                                server=lambda req: Reply(status=404)),
    "server answers non-JSON": Case(["--example", "blog"], 1, "did not answer JSON",
                                    server=lambda req: Reply(body="<html><body>Welcome to nginx</body></html>",
                                                             content_type="text/html")),
}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line_and_the_documented_exit_code(name, fake_llm, tmp_path):
    case = CASES[name]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for rel, blob in case.files.items():
        (inputs / rel).parent.mkdir(parents=True, exist_ok=True)
        (inputs / rel).write_bytes(blob)
    fake_llm.responder = case.server or (lambda req: Reply(text="should never be asked"))
    base_url = closed_port_url() if case.closed_port else fake_llm.base_url
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("backoff_base_s: 0.001\nbackoff_max_s: 0.01\nmax_retries: 1\n")
    out = tmp_path / "runs"
    args = [a.replace("{tmp}", str(inputs)) for a in case.args]
    if "--output-dir" not in args:
        args += ["--output-dir", str(out)]
    if "--config" not in args:
        args += ["--config", str(cfg)]
    done = run_main([*args, "--no-cache"], cli_env(tmp_path / "home", base_url))
    assert done.code == case.code, done.explain()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.explain()
    assert case.says in lines[0], done.explain()
    assert "Traceback" not in done.output
    if case.code == 2:  # bad usage: nothing was sent to a model, no run folder was made
        assert fake_llm.requests == [] and run_dirs(out) == []
    else:  # failed while planning: the run folder still says what happened
        state = read_state(only_run(out))
        assert state["status"] == "failed" and case.says in state["stopped"]
        assert state["workflow"] == "blog" and not state.get("results")


def test_unreadable_csv(tmp_path, fake_llm):
    if os.geteuid() == 0:
        pytest.skip("root can read a chmod 000 file; the folder case covers 'cannot read'")
    data = tmp_path / "locked.csv"
    data.write_text("a,b\n1,2\n")
    data.chmod(0)
    done = run_main(["--example", "analysis", "--data", str(data), "--output-dir", str(tmp_path / "runs")],
                    cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 2 and "cannot read" in done.stderr and "Traceback" not in done.output


def test_verbose_shows_the_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_workers: lots\n")
    done = run_main(["--example", "blog", "--config", str(cfg), "--verbose"], cli_env(tmp_path / "home", None))
    assert done.code == 2 and "Traceback" in done.stderr and "max_workers" in done.stderr


def _digest(run_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_resuming_with_the_wrong_workflow_loses_nothing(tmp_path):
    """`--resume X --example report` on a blog run: refused (exit 2) and the blog run is untouched."""
    out = tmp_path / "runs"
    env = cli_env(tmp_path / "home", None)
    first = run_main(["--example", "blog", "--provider", "offline", "--output-dir", str(out)], env)
    assert first.code == 0, first.explain()
    run_dir = only_run(out)
    before = _digest(run_dir)
    for args in (["--example", "report"], ["--example", "analysis", "--max-workers", "2"]):
        done = run_main(["--resume", str(run_dir), *args, "--output-dir", str(out)], env)
        assert done.code == 2, done.explain()
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "'blog' run" in lines[0] and "Traceback" not in done.output
    assert _digest(run_dir) == before and run_dirs(out) == [run_dir]
