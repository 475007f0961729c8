"""Small-CSV parsing with line numbers, for the report's source files (`sources.py`).

The analysis tools load `--data` with DuckDB instead (`dataset.py`): any size, any dialect, no Python
lists per column. This parser stays for sources, whose facts need a `file:line` pointer per row.

A user's CSV is the most common bad input, so every failure becomes one ToolError line that says what
is wrong and where (the first ragged line, the non-UTF-8 byte), instead of a traceback or, worse, a
silently misparsed table. Values are held per column so numeric work is a list -> numpy step.
"""
from __future__ import annotations

import copy
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from utils.errors import ToolError

MISSING = frozenset({"", "na", "n/a", "nan", "null"})
NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass
class Table:
    """A parsed CSV: `values[col]` is a list of float|None (numeric) or str|None (categorical)."""

    name: str                                  # file name, used in pointers and messages
    columns: list[str]
    values: dict[str, list]
    types: dict[str, str]
    n_rows: int
    lines: list[int] = field(default_factory=list)  # physical line number of each data row

    def numeric(self) -> list[str]:
        return [c for c in self.columns if self.types[c] == NUMERIC]

    def categorical(self) -> list[str]:
        return [c for c in self.columns if self.types[c] == CATEGORICAL]

    def missing(self) -> dict[str, int]:
        return {c: sum(v is None for v in self.values[c]) for c in self.columns}

    def present(self, col: str) -> list:
        """The non-missing values of a column, in row order."""
        return [v for v in self.values[col] if v is not None]

    def copy(self) -> "Table":
        return copy.deepcopy(self)


def read_text(path: Path | str, what: str = "file") -> str:
    """Read a file as UTF-8 (a BOM is accepted); anything else is a ToolError, never a guess.

    Guessing an encoding (latin-1 always "works") would turn bad bytes into wrong numbers quietly.
    """
    p = Path(path)
    if not p.exists():
        raise ToolError(f"{what} not found: {p}")
    if not p.is_file():
        raise ToolError(f"{what} is not a regular file: {p}")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ToolError(f"cannot read {what} {p}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ToolError(f"{what} {p.name} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        "re-save it as UTF-8") from None


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def _to_float(cell: str) -> float | None:
    try:
        x = float(cell.strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def parse_csv(text: str, name: str = "data.csv") -> Table:
    """Parse CSV text: header row, then data rows of the same width (blank lines skipped).

    A column is numeric when every non-missing cell parses as a finite float, else categorical.
    Missing cells ("", NA, N/A, NaN, null, any case) become None so imputation can see them.
    """
    if not text.strip():
        raise ToolError(f"CSV file {name} is empty")
    try:
        sample = text[:4096]
        dialect: type[csv.Dialect] | csv.Dialect = csv.excel
        if "," not in sample.splitlines()[0] and any(d in sample for d in ";\t"):
            dialect = csv.Sniffer().sniff(sample, delimiters=";\t")
        reader = csv.reader(text.splitlines(keepends=True), dialect)
        header: list[str] | None = None
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip() for c in row]
                header_line = reader.line_num
                continue
            if len(row) != len(header):
                raise ToolError(f"CSV file {name}: line {reader.line_num} has {len(row)} fields, "
                                f"the header (line {header_line}) has {len(header)}")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise ToolError(f"CSV file {name} is not valid CSV: {e}") from None
    if header is None:
        raise ToolError(f"CSV file {name} has no header row")
    _check_header(header, name)
    if len(rows) < 2:
        raise ToolError(f"CSV file {name} needs at least 2 data rows, found {len(rows)}")
    values: dict[str, list] = {}
    types: dict[str, str] = {}
    for j, col in enumerate(header):
        cells = [r[j] for r in rows]
        present = [c for c in cells if not _is_missing(c)]
        nums = [_to_float(c) for c in present]
        if present and all(x is not None for x in nums):
            types[col] = NUMERIC
            values[col] = [None if _is_missing(c) else _to_float(c) for c in cells]
        else:
            types[col] = CATEGORICAL
            values[col] = [None if _is_missing(c) else c.strip() for c in cells]
    return Table(name=name, columns=header, values=values, types=types, n_rows=len(rows), lines=lines)


def _check_header(header: list[str], name: str) -> None:
    """A header of empty, duplicate or purely numeric names means the file has no real header."""
    if any(not h for h in header):
        raise ToolError(f"CSV file {name} has no header row (column {header.index('') + 1} has no name)")
    if all(_to_float(h) is not None for h in header):
        raise ToolError(f"CSV file {name} has no header row (the first line looks like data: "
                        f"{','.join(header[:4])})")
    seen: set[str] = set()
    for h in header:
        if h in seen:
            raise ToolError(f"CSV file {name} has a duplicate column name {h!r}")
        seen.add(h)
