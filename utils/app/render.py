"""How a run looks: the one place that turns progress events into output.

Nodes only emit `Event`s; `main.py` builds a `Display` for the chosen mode and passes it as the run's
`emit`. Four modes: "rich" (live task table on a terminal), "plain" (timestamped lines, no escape
codes: logs, pipes, NO_COLOR), "quiet" (warnings and failures on stderr) and "json" (nothing: main
prints the JSON). rich is imported lazily inside the rich-only methods so `main.py --help` stays fast
and the plain path never loads it.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Mapping

from utils.app.render_plain import (TERMINAL_STATES, PlainView, call_lines, fmt_int, fmt_seconds, notice_line,
                                    plan_event_line, plan_lines, review_line, shorten, summary_details,
                                    summary_line, task_label, task_line, write_line)
from utils.events import Event
from utils.text import for_terminal
from utils.run.results import TaskState

__all__ = ["Display", "choose_mode", "plan_lines", "summary_line", "MODES"]

MODES = ("rich", "plain", "quiet", "json")
STATE_STYLES = {TaskState.WAITING: "dim", TaskState.READY: "cyan", TaskState.RUNNING: "yellow", TaskState.DONE: "green", TaskState.FAILED: "red",
                TaskState.SKIPPED: "magenta", TaskState.PENDING: "dim"}
STATUS_STYLES = {"ok": "bold green", "partial": "bold yellow", TaskState.FAILED: "bold red", "stopped": "bold yellow"}


def choose_mode(*, quiet: bool, json_out: bool, stream: Any = None, env: Mapping[str, str] | None = None) -> str:
    """Pick the display mode: explicit flags win, then anything that is not a real colour terminal
    gets plain lines (escape codes in a log file or a CI page are noise)."""
    stream = sys.stdout if stream is None else stream
    env = os.environ if env is None else env
    if json_out:
        return "json"
    if quiet:
        return "quiet"
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    if not tty or env.get("TERM") == "dumb":  # NO_COLOR: the same display, no colour (rich honours it)
        return "plain"
    return "rich"


@dataclass
class Row:
    id: str
    title: str = ""
    role: str = ""
    state: str = TaskState.WAITING
    worker: int | None = None
    elapsed_s: float = 0.0
    tokens: int = 0
    started: float | None = None     # monotonic time when it started running, for a live clock
    revision: int = 0


class Board:
    """What the live table shows, rebuilt from events. Not locked itself: Display holds the lock."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.goal = ""
        self.phase = ""
        self.calls = self.prompt_tokens = self.completion_tokens = self.cached = 0
        self.retry_events = self.llm_retries = 0
        self.streaming: dict[str, str] = {}  # purpose -> the last characters streamed (--stream)

    @property
    def retries(self) -> int:
        return max(self.retry_events, self.llm_retries)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def apply(self, event: Event) -> None:
        kind, data = event.kind, event.data or {}
        if kind == "plan":
            self._load_plan(data.get("plan") or {})
        elif kind == "task" and data.get("id") is not None:
            self._task(data)
        elif kind == "llm":
            self.calls = int(data.get("calls") or 0)
            self.prompt_tokens = int(data.get("prompt_tokens") or 0)
            self.completion_tokens = int(data.get("completion_tokens") or 0)
            self.cached = int(data.get("cached") or 0)
            self.llm_retries = int(data.get("retries") or 0)
        elif kind == "retry":
            self.retry_events += 1
        elif kind == "delta":  # a streamed piece of a reply; a call's end (its `call` event) clears it
            purpose = str(data.get("purpose") or "model")
            self.streaming[purpose] = (self.streaming.get(purpose, "") + str(data.get("text") or ""))[-400:]
        elif kind == "call":
            self.streaming.pop(str(data.get("purpose") or "model"), None)
        elif kind == "phase":
            self.phase = str(data.get("name") or "")

    def _load_plan(self, plan: dict) -> None:
        """(Re)initialise rows in plan order, keeping the state of ids we already know (replan,
        resume) and any finished row the new plan dropped, so nothing done silently vanishes."""
        self.goal = str(plan.get("goal") or self.goal)
        old, new = self.rows, {}
        for t in plan.get("tasks") or []:
            tid = str(t.get("id"))
            row = old.get(tid) or Row(id=tid)
            row.title, row.role = str(t.get("title") or row.title), str(t.get("role") or row.role)
            new[tid] = row
        for tid, row in old.items():
            if tid not in new and row.state in TERMINAL_STATES:
                new[tid] = row
        self.rows = new

    def _task(self, data: dict) -> None:
        tid = str(data["id"])
        row = self.rows.setdefault(tid, Row(id=tid))
        state = str(data.get("state") or row.state)
        if state == TaskState.RUNNING and (row.state != TaskState.RUNNING or row.started is None):
            row.started = time.monotonic()
        elif state != TaskState.RUNNING:
            row.started = None
        row.state = state
        row.title = str(data.get("title") or row.title)
        row.role = str(data.get("role") or row.role)
        if data.get("worker") is not None:
            row.worker = data["worker"]
        row.elapsed_s = float(data.get("elapsed_s") or 0.0)
        row.tokens = int(data.get("tokens") or 0)
        row.revision = int(data.get("revision") or 0)

    def counts(self) -> tuple[int, int]:
        finished = sum(1 for r in self.rows.values() if r.state in TERMINAL_STATES)
        return finished, len(self.rows)


class Display:
    """The run's `Emit` and its screen. Thread-safe: worker threads and asyncio tasks may call it at
    once. Lock discipline for rich: state changes happen under `self._lock`, but console output
    happens after releasing it, because rich's Live refresh thread holds its own lock while it asks
    us for the table (taking both in opposite orders would deadlock)."""

    def __init__(self, mode: str, *, file: IO[str] | None = None, err_file: IO[str] | None = None,
                 width: int | None = None, show_calls: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown display mode {mode!r} (expected one of {', '.join(MODES)})")
        self.mode = mode
        self.show_calls = show_calls
        self.offline = False   # set by the run: an offline run shows no call or token counts
        self._err_file = err_file
        self.board = Board()
        self._lock = threading.RLock()
        self._live: Any = None
        self._spinners: dict[str, Any] = {}
        self._plain = PlainView(mode, file, err_file) if mode != "rich" else None
        self.console: Any = None
        if mode == "rich":
            from rich.console import Console
            self.console = Console(file=file, force_terminal=None, width=width, highlight=False)

    # ------------------------------------------------------------ the Emit

    def __call__(self, event: Event) -> None:
        if event.kind == "call":  # a model call's prompt and reply: only when asked, on stderr
            with self._lock:
                self.board.apply(event)
                if self.show_calls:
                    for line in call_lines(event.data or {}):
                        self.error_line(line)
            return
        if event.kind == "delta":  # streamed text: shown live on a terminal (rich), nowhere else
            if self.mode == "rich":
                with self._lock:
                    self.board.apply(event)
            return
        with self._lock:
            self.board.apply(event)
            if self._plain is not None:
                self._plain.event(event.kind, event.data or {})
                return
            out = self._rich_lines(event)
        for text, style in out:
            self._print(text, style)

    def error_line(self, text: str) -> None:
        """One line on stderr (errors, --show-calls), neutralised like everything else."""
        write_line(self._err_file or sys.stderr, text)

    def notice(self, message: str, level: str = "info") -> None:
        """A message from main itself (config warnings, where the run folder is) with the same routing."""
        self(Event("notice", {"level": level, "message": message}))

    # ------------------------------------------------------------ context manager (rich live area)

    def __enter__(self) -> "Display":
        if self.mode == "rich" and self._live is None:
            from rich.live import Live
            self._live = Live(console=self.console, get_renderable=self._renderable, refresh_per_second=8,
                              auto_refresh=bool(self.console.is_terminal), transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> bool:
        live, self._live = self._live, None
        if live is not None:
            live.stop()   # leaves the final table on screen (or writes it once to a file)
        return False

    # ------------------------------------------------------------ one-off outputs

    def show_plan(self, plan: dict) -> None:
        if self._plain is not None:
            with self._lock:
                self._plain.show_plan(plan)
            return
        from rich.text import Text
        from rich.tree import Tree
        tree = Tree(Text(for_terminal(f"Plan: {plan.get('goal', '')}"), style="bold"))
        if plan.get("notes"):
            tree.add(Text(for_terminal(f"notes: {shorten(plan['notes'], 160)}"), style="dim"))
        for t in plan.get("tasks") or []:
            tree.add(Text(for_terminal(task_label(t))))
        self.console.print(tree)

    def show_document(self, markdown: str, path: str, *, max_lines: int = 120) -> None:
        if self._plain is not None:
            with self._lock:
                self._plain.show_document(path)
            return
        from rich.markdown import Markdown
        from rich.rule import Rule
        from rich.text import Text
        markdown = for_terminal(markdown)
        lines = markdown.splitlines()
        self.console.print(Rule(Text(str(path), style="dim")))
        if len(lines) <= max_lines:
            self.console.print(Markdown(markdown))
            self.console.print(Text(f"Document: {path}", style="dim"))
        else:
            self.console.print(Markdown("\n".join(lines[:max_lines])))
            self.console.print(Text(f"… full document ({len(lines)} lines): {path}", style="bold"))

    def summary(self, info: dict) -> None:
        if self._plain is not None:
            with self._lock:
                self._plain.summary(info)
            return
        from rich.text import Text
        self.console.print(Text(for_terminal(summary_line(info)),
                                style=STATUS_STYLES.get(str(info.get("status")), "bold")))
        for line in summary_details(info):
            self.console.print(Text(for_terminal(line), style="red" if " failed: " in line else "dim"))

    # ------------------------------------------------------------ rich internals

    def _rich_lines(self, event: Event) -> list[tuple[str, str]]:
        """What a rich-mode event prints above the live area (the table itself shows the rest)."""
        kind, data = event.kind, event.data or {}
        if kind == "review":
            return [(review_line(data), "bold")]
        if kind == "notice":
            return [(notice_line(data), "yellow" if data.get("level") == "warn" else "")]
        if kind == "task" and data.get("state") in (TaskState.FAILED, TaskState.PENDING):
            return [(task_line(data) or "", "red" if data.get("state") == TaskState.FAILED else "dim")]
        if kind == "plan" and data.get("source") == "replan":
            return [(plan_event_line(data), "cyan")]
        if kind == "task" and data.get("state") == TaskState.DONE and ((data.get("result") or {}).get("data") or {}).get("web"):
            return [(task_line(data) or "", "dim")]  # issue 12: a research task's pages used and failed, named
        return []

    def _print(self, text: str, style: str) -> None:
        from rich.text import Text
        self.console.print(Text(for_terminal(text), style=style))

    def _renderable(self) -> Any:
        """Called by Live (its own thread) for every frame: snapshot the board under our lock and
        build fresh renderables; no console calls in here."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            b = self.board
            now = time.monotonic()
            header = Text.assemble(("Phase: ", "bold"), (b.phase or "starting", "bold cyan"))
            if b.goal:
                header.append(f"  ·  {shorten(for_terminal(b.goal), 50)}", style="dim")
            if not b.rows:  # planning: a spinner, not an empty "0/0 tasks" table
                spinner = self._spinners.setdefault("", Spinner("dots", style="cyan"))
                spinner.update(text=Text(f"{b.phase or 'planning'}… {self._totals_text()}".rstrip(), style="dim"))
                return Group(header, spinner)
            # Fits an 80-column terminal: the title takes what the fixed columns (57) leave, at any width.
            table = Table(expand=False, header_style="bold", pad_edge=False, box=None, padding=(0, 1))
            table.add_column("id", no_wrap=True, overflow="ellipsis", max_width=6)
            table.add_column("title", no_wrap=True, overflow="ellipsis", max_width=max(22, self.console.width - 57))
            table.add_column("role", no_wrap=True, overflow="ellipsis", max_width=9)
            table.add_column("state", no_wrap=True, min_width=9, max_width=10)
            table.add_column("w", justify="right", no_wrap=True, max_width=3)
            table.add_column("time", justify="right", no_wrap=True, max_width=8)
            table.add_column("tokens", justify="right", no_wrap=True, max_width=7)
            for r in b.rows.values():
                style = STATE_STYLES.get(r.state, "")
                label = r.state + (f" r{r.revision}" if r.revision else "")
                if r.state == TaskState.RUNNING:
                    spinner = self._spinners.get(r.id)
                    if spinner is None:
                        spinner = self._spinners[r.id] = Spinner("dots", style="yellow")
                    spinner.update(text=Text(label, style=style))
                    state_cell: Any = spinner
                    elapsed = _short_seconds(now - r.started) if r.started is not None else ""
                else:
                    self._spinners.pop(r.id, None)
                    state_cell = Text(label, style=style)
                    elapsed = _short_seconds(r.elapsed_s) if r.state in (TaskState.DONE, TaskState.FAILED) else ""
                table.add_row(Text(for_terminal(r.id)), Text(for_terminal(r.title)),
                              Text(for_terminal(r.role), style="dim"), state_cell,
                              "" if r.worker is None else str(r.worker), elapsed,
                              _short_int(r.tokens) if r.tokens and not self.offline else "")
            finished, total = b.counts()
            footer = Table.grid(padding=(0, 1))
            footer.add_row(ProgressBar(total=max(total, 1), completed=finished, width=20),
                           Text(f"{finished}/{total} tasks", style="bold"))
            totals = Text(self._totals_text(), style="dim", overflow="ellipsis", no_wrap=True)
            streams = [Text(for_terminal(f"{purpose}: …{' '.join(tail.split())[-60:]}"), style="italic dim",
                            overflow="ellipsis", no_wrap=True)
                       for purpose, tail in list(b.streaming.items())[-3:]]
        return Group(header, table, footer, totals, *streams)

    def _totals_text(self) -> str:
        b = self.board
        if self.offline:
            return "offline"
        text = f"{_short_int(b.calls)} calls · {_short_int(b.tokens)} tokens"
        if b.cached:
            text += f" · {_short_int(b.cached)} cached"
        if b.retries:
            text += f" · {b.retries} retr{'y' if b.retries == 1 else 'ies'}"
        return text


def _short_seconds(seconds: float) -> str:
    """Live-table time: "4.2 s" under a minute, "20m34s" above, so the column stays narrow."""
    if seconds < 60:
        return fmt_seconds(seconds)
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 100 else f"{minutes // 60}h{minutes % 60:02d}m"


def _short_int(n: int) -> str:
    """Live-table counts: "9,999", "12.3k", "4.5M" (the summary line keeps exact figures)."""
    n = int(n or 0)
    if n < 10_000:
        return fmt_int(n)
    return f"{n / 1000:.1f}k" if n < 1_000_000 else f"{n / 1_000_000:.1f}M"


def all_table(rows: list[dict], *, quiet: bool = False, file: Any = None) -> None:
    """`--example all`: one line per workflow (status, time, calls, tokens, output) after the runs."""
    out = file or sys.stdout
    header = f"{'workflow':<10} {'status':<12} {'time':>8} {'calls':>6} {'cached':>6} {'tokens':>9}  output"
    lines = [header, "-" * len(header)]
    for r in rows:
        secs = f"{r['seconds']:.1f} s" if r.get("seconds") is not None else "-"
        calls, cached, tokens = ("-", "-", "-") if r.get("offline") else (r["calls"], r.get("cached", 0),
                                                                           f"{r['tokens']:,}")
        lines.append(f"{r['workflow']:<10} {r['status']:<12} {secs:>8} {calls:>6} {cached:>6} {tokens:>9}  "
                     f"{r.get('output') or '-'}")
    if quiet:
        lines = lines[2:]
    print("\n".join(lines), file=out, flush=True)
