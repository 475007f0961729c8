"""How a batch looks: one live table of goals with an overall bar (rich, on a terminal), a line per
goal as it ends (plain: logs, pipes, NO_COLOR), nothing but errors and the last line (quiet), or
nothing (json: the batch prints one document).

Each goal's run gets a silent `GoalDisplay`: the ordinary Display in its json mode (so the run's
Board still follows its plan, tasks and tokens), with the run's own warnings kept off the terminal,
where a hundred runs would drown each other; a goal's error ends up in its summary row.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

from utils.app.render import Display
from utils.app.render_plain import fmt_int, shorten, write_line
from utils.events import Event
from utils.run.results import TaskState

SNAPSHOT_EVERY_S = 0.3
STATE_STYLES = {"queued": "dim", "routing": "cyan", "resuming": "cyan", TaskState.RUNNING: "yellow", "ok": "green",
                "partial": "yellow", "stopped": "yellow", TaskState.FAILED: "red", "crashed": "red", "interrupted": "red"}
MAX_ROWS = 30  # rows of the live table: goals running first, then the latest to end


class _Drop:
    """A stream that keeps nothing (a batch's runs write no lines of their own)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class GoalDisplay(Display):
    """One goal's silent display; `on_change` gets its progress (state, workflow, tasks done and
    planned, tokens), at most every SNAPSHOT_EVERY_S seconds plus at every change of state."""

    def __init__(self, on_change: Callable[[dict], None]) -> None:
        super().__init__("json", file=_Drop(), err_file=_Drop())
        self._on_change = on_change
        self._state: dict[str, Any] = {}
        self._sent = 0.0

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        if event.kind in ("plan", "task", "llm") and time.monotonic() - self._sent >= SNAPSHOT_EVERY_S:
            self.change()

    def change(self, final: bool = False, **state: Any) -> None:
        self._state.update(state)
        with self._lock:
            rows = list(self.board.rows.values())
            tokens = self.board.tokens
        self._sent = time.monotonic()
        self._on_change({**self._state, "done": sum(1 for r in rows if r.state == TaskState.DONE), "tasks": len(rows),
                         "tokens": tokens})


class BatchView:
    """The batch's screen, refreshed by the driver from the goals' Progress."""

    def __init__(self, mode: str, *, total: int, finished: int = 0, file: Any = None) -> None:
        self.mode, self.total, self.before = mode, total, finished
        self.file = file or sys.stdout
        self._live: Any = None
        self._progress: dict = {}
        self._said: set[str] = set()
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def start(self, progress: dict) -> None:
        self._progress = progress
        if self.mode == "rich" and self._live is None and progress:
            from rich.console import Console
            from rich.live import Live
            console = Console(file=self.file, highlight=False)
            self._live = Live(console=console, get_renderable=self._renderable, refresh_per_second=4,
                              auto_refresh=bool(console.is_terminal), transient=False)
            self._live.start()

    def refresh(self, progress: dict) -> None:
        """Plain mode: a line for each goal that ended since the last call."""
        self._progress = progress
        if self.mode != "plain":
            return
        for key, p in list(progress.items()):
            if p.row is not None and key not in self._said:
                self._said.add(key)
                write_line(self.file, f"[{time.strftime('%H:%M:%S')}] {self.before + len(self._said)}/{self.total} "
                                      + goal_line(p.row))

    def stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        goals = list(self._progress.values())
        ended = [p for p in goals if p.row is not None]
        running = [p for p in goals if p.row is None and p.state != "queued"]
        shown = (running + list(reversed(ended)))[:MAX_ROWS]
        table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))
        for name, kw in (("line", {"justify": "right"}), ("goal", {"max_width": 36}), ("state", {}),
                         ("workflow", {}), ("tasks", {"justify": "right"}), ("tokens", {"justify": "right"})):
            table.add_column(name, no_wrap=True, overflow="ellipsis", **kw)
        for p in shown:
            table.add_row(str(p.job.line), Text(shorten(p.job.id or p.job.goal, 36)),
                          Text(p.state, style=STATE_STYLES.get(p.state, "")), p.workflow or "",
                          f"{p.done}/{p.tasks}" if p.tasks else "", fmt_int(p.tokens) if p.tokens else "")
        finished = self.before + len(ended)
        failed = sum(1 for p in ended if p.row["status"] != "ok")
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(self.total, 1), completed=finished, width=30),
                    Text(f"{finished}/{self.total} goals · {len(running)} running"
                         + (f" · {failed} not ok" if failed else "")
                         + f" · {fmt_int(sum(p.tokens for p in goals))} tokens"
                         + f" · {time.monotonic() - self._started:.0f} s", style="bold"))
        return Group(table, bar)


def goal_line(row: dict) -> str:
    """One goal's end as a line: status, workflow, calls, tokens, where its folder is."""
    who = f"line {row.get('line')}" + (f" ({row['id']})" if row.get("id") else "")
    text = (f"{row['status']:<8} {who}: {shorten(str(row.get('goal') or ''), 50)} · {row.get('workflow') or '-'} · "
            f"{row.get('calls') or 0} calls · {fmt_int(int(row.get('tokens') or 0))} tokens")
    if row.get("folder"):
        text += f" · {row['folder']}"
    if row.get("error") and row["status"] != "ok":
        text += f" · {shorten(str(row['error']), 160)}"
    return text


def final_lines(doc: dict, *, quiet: bool = False) -> list[str]:
    """The end of a batch: the goals that were not ok, then one summary line."""
    goals = doc["goals"]
    lines = [] if quiet else [goal_line(r) for r in goals if r["status"] != "ok"]
    counted = ", ".join(f"{n} {status}" for status, n in sorted(doc["counts"].items()))
    skipped = sum(1 for r in goals if r.get("skipped"))
    bad = len(doc["bad_lines"])
    tokens = sum(int(r.get("tokens") or 0) for r in goals if not r.get("skipped"))
    lines.append(f"batch: {len(goals)} goals ({counted or 'none run'})"
                 + (f", {skipped} already done before" if skipped else "")
                 + (f", {bad} bad line{'s' if bad != 1 else ''} skipped" if bad else "")
                 + f" · {fmt_int(tokens)} tokens · {doc['seconds']:.1f} s · {doc['summary_csv']}")
    return lines
