"""A `--batch` file read into goals: JSON Lines (one object a line) or CSV (a `goal` column).

Why each line becomes command-line flags: a goal in a batch must be checked exactly as the same goal
typed on the command line, so its keys are turned into the flags they name and parsed by the
command line's own parser (types, choices, ranges), then merged over the batch's own flags. A bad
line (not JSON, no goal, an unknown key, a bad value, an id used twice) is reported with its line
number and skipped; it never stops the others.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from utils.errors import UsageError
from utils.files import read_user_text

# keys a line may have, besides `goal` and `id`: each is the command-line flag of the same name
PATH_KEYS = ("data", "inputs", "workflow_file")
LINE_KEYS = ("example", "workflow_file", "data", "inputs", "target", "team", "start_date", "strategy",
             "max_workers", "max_tasks", "max_revisions", "max_rounds", "context_budget", "model",
             "max_tokens_total", "no_web", "plan_only")
FLAG_OF = {"inputs": "--input"}
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_GOALS = 100_000


@dataclass
class Goal:
    """One goal of a batch: where it is in the file, its key (id, or a hash of the line) and the
    flags it adds to the batch's own."""
    line: int
    key: str
    id: str | None
    goal: str
    flags: dict[str, Any] = field(default_factory=dict)


@dataclass
class BadLine:
    line: int
    error: str


def read_batch(path: Path, parse_line: Callable[[list[str]], dict]) -> tuple[list[Goal], list[BadLine]]:
    """The goals of a batch file and its bad lines. An unreadable file is a UsageError."""
    text = read_user_text(path, "--batch", max_bytes=MAX_FILE_BYTES, encoding="utf-8-sig")
    rows = _csv_rows(text) if path.suffix.lower() == ".csv" else _jsonl_rows(text)
    goals, bad, seen = [], [], {}
    base = path.resolve().parent
    for line, row in rows:
        try:
            if isinstance(row, str):
                raise ValueError(row)
            goal = to_goal(line, row, parse_line, base)
            if goal.key in seen:
                raise ValueError(f"the same goal as line {seen[goal.key]}" if goal.id is None
                                 else f"id '{goal.id}' is already used on line {seen[goal.key]}")
        except ValueError as exc:
            bad.append(BadLine(line, str(exc)))
            continue
        seen[goal.key] = line
        goals.append(goal)
        if len(goals) > MAX_GOALS:
            raise UsageError(f"--batch: more than {MAX_GOALS} goals in {path}")
    if not goals and not bad:
        raise UsageError(f"--batch: {path} has no goals")
    return goals, bad


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict | str]]:
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            yield n, f"not a JSON object ({exc.msg})"
            continue
        yield n, row if isinstance(row, dict) else f"not a JSON object (a {type(row).__name__})"


def _csv_rows(text: str) -> Iterator[tuple[int, dict | str]]:
    reader = csv.DictReader(text.splitlines(keepends=True))
    if "goal" not in (reader.fieldnames or []):
        raise UsageError("--batch: the CSV has no 'goal' column")
    line = 1
    for row in reader:
        start, line = line + 1, reader.line_num
        if None in row:
            yield start, "more cells than the header has columns"
            continue
        # empty cells are absent; `inputs` holds several paths separated by ';'
        cells = {k: v.strip() for k, v in row.items() if k and v is not None and v.strip()}
        if "inputs" in cells:
            cells["inputs"] = [p.strip() for p in cells["inputs"].split(";") if p.strip()]
        yield start, cells


def to_goal(line: int, row: dict, parse_line: Callable[[list[str]], dict], base: Path) -> Goal:
    """A row (a JSON object or CSV cells) as a Goal, its values checked by the command line's parser."""
    unknown = sorted(set(row) - {"goal", "id", *LINE_KEYS})
    if unknown:
        raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                         f"(known: goal, id, {', '.join(LINE_KEYS)})")
    goal = row.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        raise ValueError("no goal (a non-empty text under 'goal')")
    ident = row.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int)) or not str(ident).strip()):
        raise ValueError("'id' must be a non-empty text or number")
    argv: list[str] = []
    for key in LINE_KEYS:
        if key in row and row[key] is not None:
            argv += _flag(key, row[key], base)
    try:
        parsed = parse_line([*argv, "--", goal])
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    flags = {k: v for k, v in parsed.items() if v not in (None, False) and k != "topic"}
    key = f"id:{ident}" if ident is not None else "line:" + hashlib.sha256(
        json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]
    return Goal(line=line, key=key, id=None if ident is None else str(ident), goal=goal, flags=flags)


def _flag(key: str, value: Any, base: Path) -> list[str]:
    flag = FLAG_OF.get(key, "--" + key.replace("_", "-"))
    if key in ("no_web", "plan_only"):
        if not isinstance(value, bool):
            raise ValueError(f"'{key}' must be true or false")
        return [flag] if value else []
    values = value if key == "inputs" and isinstance(value, list) else [value]
    out = []
    for v in values:
        if isinstance(v, (dict, list)) or isinstance(v, bool):
            raise ValueError(f"'{key}' must be a text{' or a list of texts' if key == 'inputs' else ''}")
        text = str(v)
        if key in PATH_KEYS:  # relative to the batch file, so a batch runs the same from anywhere
            text = str(base / Path(text).expanduser()) if not Path(text).expanduser().is_absolute() else text
        out += [flag, text]
    return out
