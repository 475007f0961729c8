"""A user's CSV loaded with DuckDB and profiled: what each column is, and which ones statistics may use.

Why DuckDB: its CSV sniffer finds the delimiter, quoting, header and column types (dates, booleans,
integers) of real-world files, it reads Latin-1 and decimal-comma numbers, and its SQL aggregates
stream a file larger than memory. The file is loaded once per process into a temporary on-disk
database (columnar, so a per-column query reads only that column) and every analysis tool queries it;
nothing is parsed by hand and no column is ever held as a Python list.

Rules a reader can check (also stated in the `load_data` output):
- encoding: UTF-8 (BOM accepted), UTF-16 with a BOM, otherwise Latin-1;
- decimal comma: when the delimiter is not a comma and text columns hold numbers like `1.234,5`;
- ID-like columns (excluded from statistics): a name such as `id`, `customer_id` or `OrderID` with
  nearly all values distinct, an integer sequence (max − min + 1 = rows, all distinct), or text
  with every value distinct;
- mostly empty (excluded): more than half of the values missing; constant: one distinct value;
- categorical: text or boolean with at most 50 distinct values; more than that is free text.
"""
from __future__ import annotations

import atexit
import codecs
import csv
import math
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.errors import ToolError

NUMERIC, CATEGORICAL, BOOLEAN, DATE = "numeric", "categorical", "boolean", "date"
ID, EMPTY, CONSTANT, TEXT = "id", "mostly empty", "constant", "text"
NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "na", "n/a", "None"]
MAX_CATEGORIES = 50          # more distinct values than this: free text, not a category
MAX_TARGET_CLASSES = 20      # a categorical target with more classes is not modelled
MOSTLY_EMPTY = 0.5           # share of missing values above which a column is left out
MAX_COLUMNS = 200            # columns cleaned and analysed (file order); the rest are listed only
EXACT_CELLS = 5_000_000    # up to this many cells distinct counts are exact, above it HyperLogLog
HUGE = 1e100                 # values beyond this are divided by a power of ten before arithmetic
_ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key)$|^(id|uuid|guid)([_\s.-]|$)|[a-z0-9](ID|Id)$", re.I)
_DEC_COMMA = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")
_THOUSANDS_COMMA = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_AUTO_NAME = re.compile(r"^column\d+$")


@dataclass
class Column:
    name: str
    kind: str                    # NUMERIC, CATEGORICAL, BOOLEAN, DATE, ID, EMPTY, CONSTANT, TEXT
    sql_type: str
    missing: int
    distinct: int                # approximate for large files (HyperLogLog)
    note: str = ""               # why it is left out of statistics, when it is
    scale: float = 1.0           # divide by this before sums and products (values near 1e308)
    minimum: Any = None
    maximum: Any = None

    @property
    def usable(self) -> bool:
        """True for columns statistics and models may use."""
        return self.kind in (NUMERIC, CATEGORICAL, BOOLEAN)


@dataclass
class Dataset:
    name: str
    table: str                   # DuckDB table holding the raw rows
    n_rows: int
    columns: list[Column]
    fmt: dict[str, Any]          # encoding, delimiter, decimal separator, thousands separator
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # per-dataset results (cleaning)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise ToolError(f"column {name!r} not in {self.name}; columns: {', '.join(self.names()[:40])}")

    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def of(self, *kinds: str) -> list[Column]:
        return [c for c in self.columns if c.kind in kinds]

    def analysed(self) -> list[Column]:
        """The columns statistics use: usable ones, at most MAX_COLUMNS in file order."""
        return [c for c in self.columns if c.usable][:MAX_COLUMNS]


def q(name: str) -> str:
    """A SQL identifier for any column name (quotes doubled), so odd headers cannot break a query."""
    return '"' + name.replace('"', '""') + '"'


# ---- the process-wide database ----------------------------------------------------------------

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}
_CACHE: dict[tuple, Dataset] = {}
KEEP_DATASETS = 2


def connection() -> Any:
    """A cursor on the process's temporary DuckDB database (one cursor per call: thread-safe)."""
    with _LOCK:
        if "db" not in _STATE:
            import duckdb

            folder = tempfile.mkdtemp(prefix="orch-duckdb-")
            db = duckdb.connect(os.path.join(folder, "data.duckdb"), config={
                "memory_limit": os.environ.get("ORCH_DUCKDB_MEMORY", "512MB"),
                "threads": max(1, min(4, os.cpu_count() or 1)),
                "preserve_insertion_order": False, "temp_directory": os.path.join(folder, "spill")})
            _STATE.update(db=db, folder=folder, n=0)
            atexit.register(_close)
        cur = _STATE["db"].cursor()
    cur.execute("SET enable_progress_bar = false")  # a long query must not draw on the user's terminal
    return cur


def _close() -> None:
    db = _STATE.pop("db", None)
    if db is not None:
        db.close()
        shutil.rmtree(_STATE.get("folder", ""), ignore_errors=True)


def open_dataset(path: Path | str) -> Dataset:
    """Load and profile a CSV once per process (keyed by path, size and mtime); later calls reuse it."""
    p = Path(path)
    if not p.exists():
        raise ToolError(f"CSV file not found: {p}")
    if not p.is_file():
        raise ToolError(f"CSV file is not a regular file: {p}")
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _LOAD_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        ds = _load(p)
        _CACHE[key] = ds
        while len(_CACHE) > KEEP_DATASETS:
            old = _CACHE.pop(next(iter(_CACHE)))
            connection().execute(f"DROP TABLE IF EXISTS {old.table}")
        return ds


_LOAD_LOCK = threading.Lock()


# ---- loading ----------------------------------------------------------------------------------

def _sniff_encoding(p: Path) -> str:
    """UTF-8 when the first MiB decodes as UTF-8 (a character cut at the end is fine), else Latin-1."""
    with p.open("rb") as fh:
        head = fh.read(1 << 20)
    if not head.strip():
        raise ToolError(f"CSV file {p.name} is empty")
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def _opts(**kw: Any) -> str:
    parts = []
    for k, v in kw.items():
        if isinstance(v, bool):
            parts.append(f"{k}={'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            parts.append(f"{k}={v}")
        elif isinstance(v, list):
            parts.append(f"{k}=[" + ", ".join(_lit(x) for x in v) + "]")
        else:
            parts.append(f"{k}={_lit(v)}")
    return ", ".join(parts)


def _lit(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _one_line(exc: Exception, name: str) -> str:
    """DuckDB's multi-line CSV errors as one line that names the line and the problem."""
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    cols = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if line and cols:
        return (f"CSV file {name}: line {line.group(1)} has {cols.group(2)} fields, "
                f"the header (line 1) has {cols.group(1)}")
    first = text.split("\n", 1)[0].removeprefix("Invalid Input Error: ").removeprefix("Conversion Error: ")
    return f"CSV file {name} could not be read: " + (f"line {line.group(1)}: " if line else "") + first[:300]


def _number_format(cur: Any, src: str, base: dict, delim: str, sniffed: list[dict]) -> dict:
    """Decimal comma / thousands separators, judged from the text columns of the first rows."""
    text_cols = {c["name"] for c in sniffed if c["type"] == "VARCHAR"}
    if not text_cols:
        return {}
    cur.execute(f"SELECT * FROM read_csv({src}, {_opts(**base, all_varchar=True)}) LIMIT 2000")
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    decimal_comma = thousands_comma = thousands_dot = False
    for j, n in enumerate(names):
        if n not in text_cols:
            continue
        cells = [r[j].strip() for r in rows if r[j] is not None and r[j].strip() not in NULLS]
        if not cells:
            continue
        if delim != "," and all(_DEC_COMMA.match(c) for c in cells) and any("," in c for c in cells):
            decimal_comma = True
            thousands_dot = thousands_dot or any(re.search(r"\d\.\d{3}", c) for c in cells)
        elif all(_THOUSANDS_COMMA.match(c) for c in cells) and any("," in c for c in cells):
            thousands_comma = True
    if decimal_comma:
        return {"decimal_separator": ",", **({"thousands": "."} if thousands_dot else {})}
    return {"thousands": ","} if thousands_comma else {}


def _load(p: Path) -> Dataset:
    encoding = _sniff_encoding(p)
    cur = connection()
    src = _lit(str(p))
    base: dict[str, Any] = {"encoding": encoding, "nullstr": NULLS, "header": True}
    try:
        sniff = cur.execute(f"SELECT Delimiter, Columns FROM sniff_csv({src}, {_opts(encoding=encoding)})").fetchone()
        delim, sniffed = sniff[0], sniff[1]
        if len(sniffed) == 1:
            _check_single_column(p, encoding)
        base["delim"] = delim
        fmt = _number_format(cur, src, base, delim, sniffed)
        with _LOCK:
            _STATE["n"] += 1
            table = f"t{_STATE['n']}"
        cur.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv({src}, {_opts(**base, **fmt)})")
    except ToolError:
        raise
    except Exception as exc:  # duckdb.Error: a CSV the sniffer or reader cannot take
        if "sniffing" in str(exc):
            _check_single_column(p, encoding)
        raise ToolError(_one_line(exc, p.name)) from None
    described = cur.execute(f"DESCRIBE {table}").fetchall()
    names, types = [r[0] for r in described], [r[1] for r in described]
    _check_header(names, p.name)
    n_rows = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if n_rows < 2:
        raise ToolError(f"CSV file {p.name} needs at least 2 data rows, found {n_rows}")
    columns = _profile(cur, table, names, types, n_rows)
    fmt_all = {"encoding": encoding, "delimiter": delim, "decimal": fmt.get("decimal_separator", "."),
               "thousands": fmt.get("thousands")}
    return Dataset(name=p.name, table=table, n_rows=int(n_rows), columns=columns, fmt=fmt_all)


def _check_single_column(p: Path, encoding: str) -> None:
    """The sniffer settles on one column when rows are ragged: name the first bad line instead."""
    with p.open(encoding=encoding, errors="replace", newline="") as fh:
        first = fh.readline()
    delim = max(",;\t|", key=first.count)
    if first.count(delim) == 0:
        return
    header = next(csv.reader([first], delimiter=delim))
    cols = ", ".join(f"{_lit(h or f'c{i}')}: 'VARCHAR'" for i, h in enumerate(header))
    try:
        connection().execute(f"SELECT count(*) FROM read_csv({_lit(str(p))}, "
                         f"{_opts(delim=delim, quote=chr(34), escape=chr(34), header=True, auto_detect=False, encoding=encoding)},"
                         f" columns={{{cols}}})").fetchall()
    except Exception as exc:
        raise ToolError(_one_line(exc, p.name)) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_header(names: list[str], name: str) -> None:
    """Auto-generated names (column0, column1, ...) mean the first line was data, not a header."""
    if names and (all(_AUTO_NAME.match(n) for n in names) or all(_is_number(n) for n in names)):
        raise ToolError(f"CSV file {name} has no header row (the first line looks like data)")
    blank = [i for i, n in enumerate(names) if _AUTO_NAME.match(n)]
    if blank and len(names) > 1:
        raise ToolError(f"CSV file {name} has no header row (column {blank[0] + 1} has no name)")


# ---- profiling --------------------------------------------------------------------------------

def _kind_of(sql_type: str) -> str:
    t = sql_type.upper()
    if t == "BOOLEAN":
        return BOOLEAN
    if t.startswith(("DATE", "TIMESTAMP", "TIME")):
        return DATE
    if any(t.startswith(x) for x in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                                        "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")):
        return NUMERIC
    return CATEGORICAL


def _profile(cur: Any, table: str, names: list[str], types: list[str], n_rows: int) -> list[Column]:
    """Non-missing count, distinct count, min and max per column. A small table (rows × columns up to
    EXACT_CELLS) is counted exactly in one UNPIVOT query, which stays fast at 2,000 columns; a large
    one with HyperLogLog distinct counts, a chunk of columns per scan."""
    nums = [n for n, t in zip(names, types) if _kind_of(t) == NUMERIC]
    counts: dict[str, tuple[int, int]] = {}
    if n_rows * len(names) <= EXACT_CELLS:
        rows = cur.execute(f"SELECT name, count(value), count(DISTINCT value) FROM (UNPIVOT (SELECT "
                           f"COLUMNS(*)::VARCHAR FROM {table}) ON COLUMNS(*) INTO NAME name VALUE value) "
                           "GROUP BY name").fetchall()
        counts = {r[0]: (int(r[1]), int(r[2])) for r in rows}
    else:
        for start in range(0, len(names), 100):
            part = names[start:start + 100]
            exprs = ", ".join(f"count({q(n)}), approx_count_distinct({q(n)})" for n in part)
            row = cur.execute(f"SELECT {exprs} FROM {table}").fetchone()
            counts.update({n: (int(row[2 * i]), int(row[2 * i + 1])) for i, n in enumerate(part)})
    ranges: dict[str, tuple] = {}
    for start in range(0, len(nums), 500):
        part = nums[start:start + 500]
        row = cur.execute("SELECT " + ", ".join(f"min({q(n)}), max({q(n)})" for n in part) + f" FROM {table}").fetchone()
        ranges.update({n: (row[2 * i], row[2 * i + 1]) for i, n in enumerate(part)})
    return [_classify(n, t, n_rows, *counts.get(n, (0, 0)), *ranges.get(n, (None, None)))
            for n, t in zip(names, types)]


def _classify(name: str, sql_type: str, n_rows: int, present: int, distinct: int, lo: Any, hi: Any) -> Column:
    kind = _kind_of(sql_type)
    missing = n_rows - present
    col = Column(name=name, kind=kind, sql_type=sql_type, missing=missing, distinct=distinct, minimum=lo, maximum=hi)
    nearly_all = present > 0 and distinct >= 0.97 * present
    integer = kind == NUMERIC and "INT" in sql_type.upper()
    if present == 0 or missing / n_rows > MOSTLY_EMPTY:
        col.kind, col.note = EMPTY, f"{missing / n_rows:.0%} of values missing"
    elif distinct <= 1:
        col.kind, col.note = CONSTANT, "a single value"
    elif kind in (NUMERIC, CATEGORICAL) and _ID_NAME.search(name) and nearly_all:
        col.kind, col.note = ID, "ID-like: its name, and values (nearly) all distinct"
    elif integer and nearly_all and present >= 10 and hi - lo + 1 <= 1.03 * present:
        col.kind, col.note = ID, "ID-like: a sequence of distinct integers"
    elif kind == CATEGORICAL and nearly_all and present >= 20:
        col.kind, col.note = ID, "ID-like: text with every value distinct"
    elif kind == CATEGORICAL and distinct > MAX_CATEGORIES:
        col.kind, col.note = TEXT, f"free text ({distinct:,} distinct values)"
    if col.kind == DATE:
        col.note = "dates: range reported, not modelled"
    if col.kind == NUMERIC:
        biggest = max(abs(float(lo)), abs(float(hi)))
        if biggest > HUGE and math.isfinite(biggest):
            col.scale = 10.0 ** math.floor(math.log10(biggest))
    return col


# ---- targets ------------------------------------------------------------------------------------

TARGET_RULE = ("the last numeric column that is not ID-like, a date or mostly empty; if there is none, "
               f"the last categorical or yes/no column with 2–{MAX_TARGET_CLASSES} values")


def target_candidates(ds: Dataset) -> list[Column]:
    """Columns a model can predict: numeric, or categorical/boolean with 2..MAX_TARGET_CLASSES values."""
    return [c for c in ds.analysed() if c.kind == NUMERIC
            or (c.kind in (CATEGORICAL, BOOLEAN) and 2 <= c.distinct <= MAX_TARGET_CLASSES)]


def default_target(ds: Dataset) -> str | None:
    """The offline rule (TARGET_RULE); None when no column qualifies."""
    cands = target_candidates(ds)
    numeric = [c for c in cands if c.kind == NUMERIC]
    pick = (numeric or cands)[-1:] 
    return pick[0].name if pick else None


def check_target(ds: Dataset, name: str) -> Column:
    """The named column, if a model can predict it; otherwise a ToolError that says why not."""
    col = ds.column(name)
    if col not in target_candidates(ds):
        beyond = col.usable and col not in ds.analysed()
        why = f"beyond the {MAX_COLUMNS}-column cap" if beyond else col.note or (f"{col.distinct} distinct values (at most {MAX_TARGET_CLASSES} for a "
                           "categorical target)" if col.kind in (CATEGORICAL, BOOLEAN) else col.kind)
        ok = ", ".join(c.name for c in target_candidates(ds)[:30]) or "none"
        raise ToolError(f"column {name!r} in {ds.name} cannot be a target ({why}); candidates: {ok}")
    return col
