"""Run history across folders: every run indexed in `$ORCH_HOME/runs.db` (SQLite), like `llm logs`.

Why an index: run folders live wherever `--output-dir` put them, so "what did I run yesterday, what
did it cost, where is it" had no answer short of searching the disk. The index holds one row per run
folder (written when the run starts, updated when it ends, so even a killed run is listed); the
folder stays the source of truth. `orch runs` lists, `orch runs show ID` prints one run, and
`--resume ID` takes the same ID. A broken or locked index never stops a run: it is skipped.
"""
from __future__ import annotations

import contextlib
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from utils.options import home
from utils.errors import UsageError

DB_NAME = "runs.db"
SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, folder TEXT UNIQUE NOT NULL, started REAL NOT NULL,
    workflow TEXT, topic TEXT, status TEXT, calls INTEGER DEFAULT 0, tokens INTEGER DEFAULT 0,
    cost_usd REAL, document TEXT, updated REAL)"""


@contextlib.contextmanager
def _db(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    file = path or home() / DB_NAME
    file.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(file, timeout=5)
    try:
        con.execute(SCHEMA)
        yield con
        con.commit()
    finally:
        con.close()


def record_run(folder: Path, *, workflow: str, topic: str, status: str, info: dict | None = None,
               document: str | None = None) -> int | None:
    """Insert or update the row of `folder`; returns its ID (None when the index cannot be written)."""
    info = info or {}
    tokens = int(info.get("prompt_tokens") or 0) + int(info.get("completion_tokens") or 0)
    key, now = str(Path(folder).resolve()), time.time()
    try:
        with _db() as con:  # ids stay 1, 2, 3...: an update never spends one (no INSERT ... ON CONFLICT)
            row = con.execute("SELECT id FROM runs WHERE folder=?", (key,)).fetchone()
            if row is None:
                row = (con.execute("INSERT INTO runs (folder, started, workflow, topic, status, updated) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", (key, now, workflow, topic, status, now)).lastrowid,)
            con.execute("UPDATE runs SET status=?, updated=? WHERE id=?", (status, now, row[0]))
            if info or document:
                con.execute("UPDATE runs SET calls=?, tokens=?, cost_usd=?, document=? WHERE id=?",
                            (int(info.get("calls") or 0), tokens, info.get("cost_usd"), document, row[0]))
            return int(row[0])
    except (sqlite3.Error, OSError):  # the history is a convenience: never a reason for a run to fail
        return None


def recent_runs(limit: int = 20) -> list[dict[str, Any]]:
    with _db() as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))]


def get_run(ref: str) -> dict[str, Any] | None:
    """The row with ID `ref` (digits), or None."""
    if not str(ref).isdigit():
        return None
    try:
        with _db() as con:
            con.row_factory = sqlite3.Row
            row = con.execute("SELECT * FROM runs WHERE id=?", (int(ref),)).fetchone()
    except (sqlite3.Error, OSError):
        return None
    return dict(row) if row else None


def run_folder(ref: str) -> str:
    """`--resume REF`: a history ID becomes its folder; anything else is passed on as given."""
    if Path(ref).is_dir():
        return ref
    row = get_run(ref)
    return row["folder"] if row else ref


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def runs_table(rows: list[dict[str, Any]]) -> list[str]:
    """`orch runs`: one line per run, newest first."""
    if not rows:
        return [f"No runs yet (the history is {home() / DB_NAME})."]
    head = (f"{'id':>4}  {'when':<16}  {'workflow':<9} {'status':<11} {'calls':>5} {'tokens':>8} {'cost':>8}  "
            "topic · folder")
    lines = [head, "-" * len(head)]
    for r in rows:
        cost = f"${r['cost_usd']:.4f}" if r.get("cost_usd") is not None else "-"
        topic = " ".join(str(r.get("topic") or "").split())
        topic = topic if len(topic) <= 40 else topic[:39] + "…"
        lines.append(f"{r['id']:>4}  {_when(r['started']):<16}  {str(r['workflow'] or '-'):<9} "
                     f"{str(r['status'] or '-'):<11} {r['calls'] or 0:>5} {r['tokens'] or 0:>8,} {cost:>8}  "
                     f"{topic} · {r['folder']}")
    return lines


def run_details(ref: str) -> list[str]:
    """`orch runs show ID`: the run's summary and where its document is."""
    row = get_run(ref)
    if row is None:
        raise UsageError(f"no run with id '{ref}' in the history (orch runs lists them)")
    doc = row.get("document") or (str(Path(row["folder"]) / "output.md")
                                  if (Path(row["folder"]) / "output.md").is_file() else None)
    cost = f"${row['cost_usd']:.4f}" if row.get("cost_usd") is not None else "unknown"
    return [f"run {row['id']}: {row['status']} · {row['workflow']} · {_when(row['started'])}",
            f"  topic: {row['topic']}",
            f"  calls: {row['calls'] or 0} · tokens: {row['tokens'] or 0:,} · cost: {cost}",
            f"  folder: {row['folder']}",
            f"  document: {doc or 'none'}",
            f"  resume: orch --resume {row['id']}"]


def runs_command(args: list[str]) -> int:
    """`orch runs [show ID | --limit N]`; returns the exit code."""
    try:
        if args[:1] == ["show"]:
            if len(args) != 2:
                raise UsageError("usage: orch runs show ID")
            lines = run_details(args[1])
        elif not args or (args[0] == "--limit" and len(args) == 2 and args[1].isdigit()):
            lines = runs_table(recent_runs(int(args[1]) if args else 20))
        else:
            raise UsageError("usage: orch runs [--limit N] | orch runs show ID")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except sqlite3.Error as exc:
        print(f"error: cannot read the run history {home() / DB_NAME}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
