"""The one set of helpers for tests that drive the command line.

Why in-process: 93 % of the suite's time went into starting `python main.py` subprocesses. `run_main`
calls `main.main(argv)` in this process with stdout/stderr/stdin captured and the environment and
working directory swapped, which exercises the same code from flag parsing to the exit code.
Subprocesses stay for what only a process can show (signals, kill -9, a closed pipe, the real
terminal): `start_main` / `run_process`, with SIGINT reset to its default in the child so the Ctrl-C
tests also pass when pytest itself runs in the background (`pytest &` starts it ignored).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY = "sk-test-0123456789"
RUN_TIMEOUT_S = 60
_IN_PROCESS = threading.Lock()  # the process-wide state swapped below is not per-thread


# ---------------------------------------------------------------- environments and files

def clean_env(**extra: str) -> dict[str, str]:
    """The inherited environment without OPENAI_* and ORCH_* (ORCH_ENGINE picks the engine for a
    whole test session, so it stays), plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPENAI_") and not (k.startswith("ORCH_") and k != "ORCH_ENGINE")}
    env.pop("NO_COLOR", None)
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def cli_env(home: Path, base_url: str | None, key: str | None = TEST_KEY, **extra: str) -> dict[str, str]:
    """`clean_env` with ORCH_HOME, NO_COLOR and, when given, the fake server's URL and a test key."""
    env = clean_env(ORCH_HOME=str(home), NO_COLOR="1")
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    if key:
        env["OPENAI_API_KEY"] = key
    env.update(extra)
    return env


def fast_config(path: Path, **settings) -> Path:
    """A --config file with tiny backoffs so retries cost milliseconds."""
    values = {"backoff_base_s": 0.001, "backoff_max_s": 0.01, "max_retries": 2, **settings}
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8")
    return path


def run_dirs(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.iterdir() if p.is_dir()) if out_dir.is_dir() else []


def only_run(out_dir: Path) -> Path:
    dirs = run_dirs(out_dir)
    assert len(dirs) == 1, dirs
    return dirs[0]


def read_state(run_dir: Path) -> dict:
    """The run's state as `--resume` sees it: run.json, plus the journal after it where there is one."""
    state = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    try:
        from utils.run.runstore import JOURNAL, replay
    except ImportError:  # a store without a journal: run.json is the whole state
        return state
    return replay(state, run_dir / JOURNAL)


def done_ids(state: dict) -> set[str]:
    return {tid for tid, r in (state.get("results") or {}).items() if r.get("state") == "done"}


def wait_until(check: Callable[[], object], *, timeout: float = 20.0, what: str = "condition") -> object:
    """Poll `check` (bounded) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def worker_counts(server, *, ok_only: bool = False) -> Counter:
    from tests.scripted import request_kind, task_id
    return Counter(task_id(r) for r in list(server.requests)
                   if request_kind(r) == "worker" and (not ok_only or r.status == 200))


# ---------------------------------------------------------------- running main

@dataclass
class Done:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def explain(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


@contextlib.contextmanager
def _process_state(env: dict[str, str], cwd: Path, stdin: str) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Swap environment, cwd, std streams and logging for one in-process run; restore everything."""
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    streams = sys.stdout, sys.stderr, sys.stdin
    root = logging.getLogger()
    saved_log = root.level, list(root.handlers)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with _IN_PROCESS:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO(stdin)
        try:
            yield out, err
        finally:
            sys.stdout, sys.stderr, sys.stdin = streams
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            root.setLevel(saved_log[0])
            root.handlers[:] = saved_log[1]
            for sig, handler in saved_signals.items():
                signal.signal(sig, handler)


def run_main(args: list[str], env: dict[str, str], *, cwd: Path | None = None, stdin: str = "",
             timeout: float = RUN_TIMEOUT_S) -> Done:
    """`python main.py ARGS` in this process (see the module docstring); `timeout` is unused here and
    kept so a call can switch to `run_process` unchanged."""
    import main as app

    with _process_state(env, cwd or ROOT, stdin) as (out, err):
        try:
            code = app.main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                err.write(exc.code + "\n")
        except KeyboardInterrupt:
            err.write("interrupted\n")
            code = 130
        except Exception as exc:  # what entry() prints for a bug
            err.write(f"error: unexpected {type(exc).__name__}: {exc} (run with --verbose for details)\n")
            code = 1
    return Done(code, out.getvalue(), err.getvalue())


def main_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), *args]


def _default_sigint() -> None:
    """In the child: Ctrl-C as a user's shell delivers it, even if pytest was started with `&`."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_process(args: list[str], env: dict[str, str], *, cwd: Path | None = None, stdin: str | None = None,
                timeout: float = RUN_TIMEOUT_S) -> Done:
    """`python main.py ARGS` as a real subprocess (exit paths and signals are the point)."""
    proc = subprocess.run(main_cmd(*args), cwd=cwd or ROOT, env=env, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=timeout,
                          input=stdin, stdin=subprocess.DEVNULL if stdin is None else None,
                          preexec_fn=_default_sigint)
    return Done(proc.returncode, proc.stdout, proc.stderr)


def start_main(args: list[str], env: dict[str, str], *, cwd: Path | None = None, **popen) -> subprocess.Popen:
    """A running `main.py` subprocess to signal; SIGINT is at its default in the child."""
    options = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                   errors="replace", stdin=subprocess.DEVNULL)
    options.update(popen)
    return subprocess.Popen(main_cmd(*args), cwd=cwd or ROOT, env=env, preexec_fn=_default_sigint, **options)


def state_when(out_dir: Path, predicate: Callable[[dict], bool], proc: subprocess.Popen | None = None,
               timeout: float = 20.0) -> tuple[Path, dict]:
    """Wait until the (single) run's run.json satisfies `predicate`; returns (run dir, state)."""
    found: dict = {}

    def check():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"main.py ended early (exit {proc.returncode})\n{out[-2000:]}\n{err[-2000:]}")
        for run_dir in run_dirs(out_dir):
            try:
                state = read_state(run_dir)
            except (OSError, ValueError):  # not there yet: never half-written (atomic rename)
                continue
            if predicate(state):
                found.update(run_dir=run_dir, state=state)
                return True
        return False

    wait_until(check, timeout=timeout, what="run.json to reach the expected state")
    return found["run_dir"], found["state"]


# ---------------------------------------------------------------- the workflow tests' view of a run

@dataclass
class Run:
    done: Done
    out_dir: Path

    @property
    def code(self) -> int:
        return self.done.code

    @property
    def stdout(self) -> str:
        return self.done.stdout

    @property
    def stderr(self) -> str:
        return self.done.stderr

    def run_dirs(self) -> list[Path]:
        return run_dirs(self.out_dir)

    def run_dir(self) -> Path:
        dirs = self.run_dirs()
        assert len(dirs) == 1, f"expected one run folder, got {dirs}\n{self.explain()}"
        return dirs[0]

    def state(self) -> dict:
        return read_state(self.run_dir())

    def explain(self) -> str:
        return self.done.explain()


def run_app(args: list[str], tmp_path: Path, *, server=None, env: dict[str, str] | None = None,
            out_name: str = "runs", subprocess_: bool = False, timeout: float = RUN_TIMEOUT_S) -> Run:
    """`main.py ARGS` with ORCH_HOME and --output-dir in tmp_path; against `server` (no cache) when
    given, else with the offline provider and no OPENAI_* variables at all."""
    home = tmp_path / "orch_home"
    home.mkdir(exist_ok=True)
    out_dir = tmp_path / out_name
    extra = {"ORCH_HOME": str(home), **(env or {})}
    argv = list(args)
    if "--output-dir" not in args:
        argv += ["--output-dir", str(out_dir)]
    if server is not None:
        extra.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
        argv.append("--no-cache")
    elif "--provider" not in args:
        argv += ["--provider", "offline"]
    runner = run_process if subprocess_ else run_main
    return Run(runner(argv, clean_env(**extra), cwd=tmp_path, timeout=timeout), out_dir)
