"""Plain-text side of the display: pure formatters and the line-by-line writer.

Why a separate module: `render.py` drags in rich lazily for the live table, but logs, pipes, CI and
`NO_COLOR` users get this path, which must never import rich (start-up time) and never write an
escape code. Every formatter here is a pure function of event data, so tests pin the exact wording
without a terminal.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from typing import IO, Any, Callable

from utils.text import for_terminal, scrub, valid_text
from utils.run.results import TaskState

TERMINAL_STATES = (TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED)


# ---------------------------------------------------------------- small formatters

def fmt_seconds(seconds: float | None) -> str:
    """Short human duration: "0.4 s", "12.3 s", "2 min 05 s"."""
    s = float(seconds or 0.0)
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(int(round(s)), 60)
    return f"{minutes} min {rest:02d} s"


def fmt_int(n: int | None) -> str:
    """Thousands separators, so token counts are readable at a glance."""
    return f"{int(n or 0):,}"


def shorten(text: str | None, limit: int) -> str:
    """One line, at most `limit` characters (model feedback and errors can be paragraphs)."""
    one = " ".join(str(text or "").split())
    return one if len(one) <= limit else one[: max(limit - 1, 0)].rstrip() + "…"


def _status_label(info: dict) -> str:
    status = str(info.get("status") or "ok")
    failed, skipped = len(info.get("failed") or []), len(info.get("skipped") or [])
    parts = [f"{failed} failed"] if failed else []
    if skipped:
        parts.append(f"{skipped} skipped")
    return f"{status} ({', '.join(parts)})" if parts and status != "ok" else status


def summary_line(info: dict) -> str:
    """The run's one-line verdict, identical in every human mode (and handy in logs).

    Cost appears only when known (a price table for the model); offline runs say so explicitly so a
    placeholder document is never mistaken for a model's work.
    """
    calls = int(info.get("calls") or 0)
    cached = int(info.get("cached") or 0)
    tokens = int(info.get("prompt_tokens") or 0) + int(info.get("completion_tokens") or 0)
    call_part = f"{fmt_int(calls)} call" + ("" if calls == 1 else "s")
    if cached:
        call_part += f" ({fmt_int(cached)} cached)"
    if info.get("offline"):  # no model was used: no calls, tokens or model name to report
        parts = [_status_label(info), fmt_seconds(info.get("elapsed_s")), "offline: no model called"]
    else:
        parts = [_status_label(info), fmt_seconds(info.get("elapsed_s")), call_part, f"{fmt_int(tokens)} tokens"]
    cost = info.get("cost_usd")
    if cost is not None and not info.get("offline"):
        parts.append(f"${float(cost):.4f}")
    claims = info.get("claims")
    if claims:  # the citation check (utils/run/claims.py): what it checked, what it could not support
        part = f"claims: {fmt_int(claims.get('checked') or 0)} checked, {fmt_int(claims.get('unsupported') or 0)} unsupported"
        uncited = int(claims.get("uncited") or 0)
        parts.append(part + (f", {fmt_int(uncited)} uncited" if uncited else ""))
    if info.get("output_dir"):
        parts.append(str(info["output_dir"]))
    return " · ".join(parts)


def summary_details(info: dict, *, failures: bool = True) -> list[str]:
    """Lines under the summary: what failed and why, what was skipped, how to resume."""
    lines = [f"  {f.get('id')} failed: {shorten(f.get('error'), 200)}"
             for f in (info.get("failed") or [] if failures else [])]
    if info.get("reason") and info.get("status") in ("partial", "unreviewed", "needs-work"):
        lines.append(f"  why: {shorten(info['reason'], 200)}")
    skipped = info.get("skipped") or []
    if skipped:
        lines.append("  skipped: " + ", ".join(str(s) for s in skipped))
    if info.get("resume_hint"):
        lines.append(f"  resume: {info['resume_hint']}")
    return lines


def task_label(task: dict) -> str:
    """`id · title [role] p<priority> ← deps`: the same words in the rich tree and plain lines."""
    label = f"{task.get('id')} · {task.get('title', '')} [{task.get('role', '')}] p{task.get('priority', 3)}"
    deps = task.get("depends_on") or []
    return label + (" ← " + ", ".join(deps) if deps else "")


def plan_lines(plan: dict, *, instructions: bool = False) -> list[str]:
    """The plan as indented text: goal first, then one line per task in plan order (with each
    task's instructions under it when asked: the interactive plan, where /instr sets them)."""
    lines = [f"Plan: {plan.get('goal', '')}"]
    if plan.get("notes"):
        lines.append(f"  notes: {shorten(plan['notes'], 160)}")
    for t in plan.get("tasks") or []:
        lines.append("  " + task_label(t))
        if instructions and str(t.get("instructions") or "").strip():
            lines.append(f"      instructions: {shorten(str(t['instructions']), 300)}")
    return lines


def review_line(data: dict) -> str:
    """"Review round 2: score 7.5/10 — 2 sent back: t3 (too short), t5 (...)"."""
    score = data.get("score")
    head = f"Review round {data.get('round', '?')}: " + (f"score {float(score):.1f}/10" if score is not None
                                                            else "no score")
    revise = data.get("revise") or []
    if not revise:
        return head + " — approved"
    sent = ", ".join(f"{r.get('id')} ({shorten(r.get('feedback'), 60)})" for r in revise)
    verb = "flagged" if data.get("bounded") else "sent back"
    line = f"{head} — {len(revise)} {verb}: {sent}"
    return line + (" (revision limit reached, kept as is)" if data.get("bounded") else "")


def retry_line(data: dict) -> str:
    """"retry 1 for task t3 (writer) in 0.5 s: 429 rate limited"."""
    purpose = f" for {data['purpose']}" if data.get("purpose") else ""
    return (f"retry {data.get('attempt', '?')}{purpose} in {float(data.get('wait_s') or 0):.1f} s: "
            f"{shorten(data.get('reason'), 160)}")


def notice_line(data: dict) -> str:
    prefix = "warning" if data.get("level") == "warn" else "note"
    return f"{prefix}: {data.get('message', '')}"


def task_line(data: dict) -> str | None:
    """A task event as one line, or None for the chatty states (waiting, ready)."""
    tid, state = data.get("id"), data.get("state")
    rev = f", revision {data['revision']}" if data.get("revision") else ""
    if state == TaskState.RUNNING:
        worker = f", worker {data['worker']}" if data.get("worker") is not None else ""
        return f"{tid} running ({data.get('role', '?')}{worker}{rev})"
    if state == TaskState.DONE:
        web = ((data.get("result") or {}).get("data") or {}).get("web")  # issue 12: a research task's pages
        extra = ""
        if isinstance(web, dict):
            from utils.tools.web.research import summary as web_summary
            extra = f"; web: {web_summary(web)}"
        return f"{tid} done in {fmt_seconds(data.get('elapsed_s'))}, {fmt_int(data.get('tokens'))} tokens{extra}"
    if state == TaskState.FAILED:
        return f"{tid} failed: {shorten(data.get('error'), 300)}"
    if state == TaskState.SKIPPED:
        return f"{tid} skipped: {shorten(data.get('error') or 'dependency did not finish', 200)}"
    if state == TaskState.PENDING:
        return f"{tid} not started: {shorten(data.get('error') or 'run stopped', 200)}"
    return None


def call_lines(data: dict, *, limit: int = 2000) -> list[str]:
    """A model call for --show-calls/--verbose: what was asked and what came back (the `call` event)."""
    head = (f"call: {data.get('purpose') or '?'} · {data.get('model') or '?'} · "
            f"{fmt_int(data.get('prompt_tokens'))}+{fmt_int(data.get('completion_tokens'))} tokens · "
            f"{float(data.get('latency_s') or 0):.2f} s" + (" · cached" if data.get("cached") else "")
            + (f" · {data['retries']} retries" if data.get("retries") else ""))
    lines = [head]
    for m in data.get("messages") or []:
        text = str(m.get("content") if isinstance(m, dict) else m)
        lines.append(f"  [{m.get('role', '?') if isinstance(m, dict) else '?'}] "
                     + (text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"))
    if data.get("error"):
        lines.append(f"  [error] {data['error']}")
    elif data.get("reply") is not None:
        reply = str(data["reply"])
        lines.append("  [reply] " + (reply if len(reply) <= limit else reply[:limit] + f"… ({len(reply)} chars)"))
    return lines


def plan_event_line(data: dict) -> str:
    tasks = (data.get("plan") or {}).get("tasks") or []
    return f"plan ({data.get('source', '?')}, round {data.get('round', 0)}): {len(tasks)} tasks"


# ---------------------------------------------------------------- writer

def fit_lines(text: str, width: int) -> list[str]:
    """`text` folded at word boundaries to `width` columns, its indent kept (and two more on the
    following lines); a word longer than the width stays whole rather than being cut mid-word."""
    import textwrap

    indent = text[:len(text) - len(text.lstrip(" "))]
    return textwrap.wrap(text, width=max(width, 20), initial_indent="", subsequent_indent=indent + "  ",
                         break_long_words=False, break_on_hyphens=False, drop_whitespace=True) or [text]


def write_line(stream: IO[str], text: str) -> None:
    """One whole line per write, flushed, surviving consoles that cannot encode "·" or "…". Control
    characters are neutralised here, so no model-written text reaches the terminal raw. On a
    terminal a long line is folded at word boundaries (the terminal itself would cut mid-word);
    a pipe or a file gets it whole, for grep."""
    text = for_terminal(text)
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    if tty:
        import shutil
        width = shutil.get_terminal_size().columns
        if len(text) > width:
            text = "\n".join(fit_lines(text, width))
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:
        enc = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(enc, "replace").decode(enc) + "\n")
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


class PlainView:
    """Line-by-line output for plain, quiet and json modes. The caller (Display) holds the lock.

    plain: everything worth a line, timestamped, on `file`. quiet/json: only warnings and failures, on
    `err_file`, so stdout stays clean for the summary line (quiet) or the JSON (json).
    """

    def __init__(self, mode: str, file: IO[str] | None, err_file: IO[str] | None,
                 clock: Callable[[], str] | None = None) -> None:
        self.mode = mode
        self.file = file if file is not None else sys.stdout
        self.err_file = err_file if err_file is not None else sys.stderr
        self.clock = clock or (lambda: time.strftime("%H:%M:%S"))

    def _out(self, text: str) -> None:
        write_line(self.file, text)

    def _stamp(self, text: str) -> None:
        write_line(self.file, f"[{self.clock()}] {text}")

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if self.mode != "plain":
            if kind == "task" and data.get("state") == TaskState.FAILED:
                write_line(self.err_file, task_line(data) or "")
            elif kind == "notice" and data.get("level") == "warn":
                write_line(self.err_file, notice_line(data))
            return
        line: str | None = None
        if kind == "task":
            line = task_line(data)
        elif kind == "phase":
            line = f"phase: {data.get('name', '?')}"
        elif kind == "plan":
            line = plan_event_line(data)
        elif kind == "review":
            line = review_line(data)
        elif kind == "retry":
            line = retry_line(data)
        elif kind == "notice":
            line = notice_line(data)
        if line is not None:
            self._stamp(line)

    def show_plan(self, plan: dict) -> None:
        if self.mode == "plain":
            for line in plan_lines(plan):
                self._out(line)

    def show_document(self, path: str) -> None:
        if self.mode == "plain":
            self._out(f"Document: {path}")

    def summary(self, info: dict) -> None:
        if self.mode == "plain":
            for line in [summary_line(info), *summary_details(info)]:
                self._out(line)
        elif self.mode == "quiet":  # the one line --quiet promises; failures were reported as they happened
            self._out(summary_line(info))
            for line in summary_details(info, failures=False) if info.get("status") != "ok" else []:
                write_line(self.err_file, line)


class SafeStdout:
    """stdout that survives its reader going away (`main.py ... | head -3`): the first broken pipe
    points the file descriptor at /dev/null and every later write is dropped, so the run finishes
    and saves quietly instead of aborting after paid calls."""

    def __init__(self, stream: Any) -> None:
        self._stream, self.broken = stream, False

    def _guard(self, fn, *args: Any) -> Any:
        if self.broken:
            return None
        try:
            return fn(*args)
        except (BrokenPipeError, ValueError) as exc:  # ValueError: written after close
            self._detach(exc)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EINVAL):
                raise
            self._detach(exc)
        return None

    def _detach(self, exc: BaseException) -> None:
        self.broken = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def write(self, text: str) -> int:
        """Every line the process shows passes the one scrub of secrets, as valid text."""
        return self._guard(self._stream.write, scrub(valid_text(text))) or len(text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def isatty(self) -> bool:
        return not self.broken and bool(self._guard(self._stream.isatty))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
