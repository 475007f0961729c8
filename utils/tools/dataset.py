"""A user's CSV loaded with DuckDB and profiled: what each column is, and which ones statistics may use.

Why DuckDB: its CSV sniffer finds the delimiter, quoting, header and column types (dates, booleans,
integers) of real-world files, it reads Latin-1 and decimal-comma numbers, and its SQL aggregates
stream a file larger than memory. The file is loaded once per process into a temporary on-disk
database (columnar, so a per-column query reads only that column) and every analysis tool queries it;
nothing is parsed by hand and no column is ever held as a Python list.

Rules a reader can check (also stated in the `load_data` output):
- encoding: UTF-8 (BOM accepted), UTF-16 with a BOM, otherwise Latin-1;
- layout (`layout.py`): whitespace-separated files (statsmodels' raw data files) and a scikit-learn
  metadata first line (`150,4,setosa,...`) are recognised; a file without a header gets the names
  `column1`, `column2`, ...;
- decimal comma: when the delimiter is not a comma and text columns hold numbers like `1.234,5`;
- yes/no columns keep the file's own labels (read as text, never turned into True/False);
- dates: the sniffer's, plus text columns whose every value parses with one of DATE_FORMATS
  (`Jan 1 2000`, `2021-01`, `01/02/2003`: day/month order from the values, see `layout.py`);
- years: an integer column with every value in 1700..2200 is time (a numeric feature), never an ID;
- ID-like columns (excluded from statistics): a name such as `id`, `customer_id` or `OrderID` with
  nearly all values distinct, an integer sequence in the first column (max − min + 1 = rows, all
  distinct, in any order: an order number), a row-number column anywhere (exactly 1, 2, .., n in file
  order, unless its name says time: `t`, `period`, `month`, ...), or text with every value distinct.
  Any other integer sequence outside the first column is data (NIST's Wampler x = 0..20 in the second);
- mostly empty (excluded): more than half of the values missing; constant: one distinct value;
- categorical: text or boolean with at most 50 distinct values; more than that is free text.
A file in which no column can be analysed is refused (ToolError), never an empty success.
"""
from __future__ import annotations

import atexit
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
from utils.tools.layout import (NULLS, ambiguous, convert_dates, head_lines, lit, number_format, one_line, q, sniff,
                                sniff_encoding, sklearn_metadata, sql_options, tokens, whitespace_fields,
                                whitespace_to_tsv)

NUMERIC, CATEGORICAL, BOOLEAN, DATE = "numeric", "categorical", "boolean", "date"
ID, EMPTY, CONSTANT, TEXT = "id", "mostly empty", "constant", "text"
MAX_CATEGORIES = 50          # more distinct values than this: free text, not a category
MAX_TARGET_CLASSES = 20      # a categorical target with more classes is not modelled
MOSTLY_EMPTY = 0.5           # share of missing values above which a column is left out
MAX_COLUMNS = 200            # columns cleaned and analysed (file order); the rest are listed only
EXACT_CELLS = 5_000_000    # up to this many cells distinct counts are exact, above it HyperLogLog
YEARS = (1700, 2200)         # an integer column within this range holds years, never an ID
HUGE = 1e100                 # values beyond this are divided by a power of ten before arithmetic
_ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key)$|^(id|uuid|guid)([_\s.-]|$)|[a-z0-9](ID|Id)$", re.I)
# a 1..n column with such a name counts time steps (a trend, a month number), not rows
_TIME_NAME = re.compile(r"^(t|time|period|trend|step|day|week|month|quarter|year|age|dose|level)s?([_\s.-]|$)", re.I)
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
    year: bool = False           # integer years (1700..2200): time, kept as a numeric feature

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


# ---- the process-wide database ----------------------------------------------------------------

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}
_CACHE: dict[tuple, Dataset] = {}
KEEP_DATASETS = 2


def query_threads(env: dict | None = None) -> int:
    """DuckDB's threads: the CPUs this process was given where something says so (a Ray task with
    `--ray-cpus N` gets OMP_NUM_THREADS=N from Ray), else this machine's cores, at most 4. Two Ray
    goals on one node, each querying with every core, would fight over the cores they were
    scheduled not to share."""
    given = (os.environ if env is None else env).get("OMP_NUM_THREADS", "")
    if given.strip().isdigit() and int(given) > 0:
        return int(given)
    return max(1, min(4, os.cpu_count() or 1))


def connection() -> Any:
    """A cursor on the process's temporary DuckDB database (one cursor per call: thread-safe)."""
    with _LOCK:
        if "db" not in _STATE:
            import duckdb

            folder = tempfile.mkdtemp(prefix="orch-duckdb-")
            db = duckdb.connect(os.path.join(folder, "data.duckdb"), config={
                "memory_limit": os.environ.get("ORCH_DUCKDB_MEMORY", "512MB"),
                "threads": query_threads(),
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

def _load(p: Path) -> Dataset:
    encoding = sniff_encoding(p)
    cur = connection()
    src, lines = p, head_lines(p, encoding)
    fmt_all: dict[str, Any] = {"encoding": encoding}
    base: dict[str, Any] = {"encoding": encoding, "nullstr": NULLS}
    meta = sklearn_metadata(lines)
    try:
        if meta:
            base.update(delim=",", header=False, skip=1, names=meta["names"])
            fmt_all.update(metadata_line=lines[0], class_labels=meta["labels"])
            sniffed = cur.execute(f"SELECT Columns, DateFormat FROM sniff_csv({lit(str(src))}, "
                                  f"{sql_options(**base)})").fetchone()
            delim, header, columns, date_fmt = ",", False, sniffed[0], sniffed[1]
        else:
            delim, header, columns, date_fmt = sniff(cur, src, encoding)
            fields = whitespace_fields(lines)
            one_text_column = len(columns) == 1 and columns[0]["type"] == "VARCHAR"
            mixed_blanks = delim in (" ", "\t") and len(columns) < fields and len({len(tokens(x)) for x in lines}) == 1
            if fields and (one_text_column or mixed_blanks):  # runs of spaces (and tabs) separate the fields
                src = whitespace_to_tsv(p, encoding, _STATE["folder"], fields)
                base["encoding"] = "utf-8"
                fmt_all["layout"] = "whitespace-separated"
                delim, header, columns, date_fmt = sniff(cur, src, "utf-8", delim="\t")
            elif len(columns) == 1:
                _check_single_column(p, encoding)
            base.update(delim=delim, header=header)
            if not header:  # named as a reader counts columns
                base["names"] = [f"column{i}" for i in range(1, len(columns) + 1)]
                fmt_all["header"] = f"none: columns named column1..column{len(columns)}"
        fmt = number_format(cur, lit(str(src)), base, delim, columns)
        # yes/no columns keep the file's labels; dates read day/month-ambiguously are decided below
        as_text = {c["name"]: "VARCHAR" for c in columns if c["type"] == "BOOLEAN"
                   or (ambiguous(date_fmt) and c["type"].startswith(("DATE", "TIMESTAMP")))}
        with _LOCK:
            _STATE["n"] += 1
            table = f"t{_STATE['n']}"
        cur.execute("SET preserve_insertion_order = true")  # rowid = row order in the file
        try:
            cur.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv({lit(str(src))}, {sql_options(**base, **fmt)}"
                        + (f", types={{{', '.join(f'{lit(k)}: {lit(v)}' for k, v in as_text.items())}}}"
                           if as_text else "") + ")")
        finally:
            cur.execute("SET preserve_insertion_order = false")
    except ToolError:
        raise
    except Exception as exc:  # duckdb.Error: a CSV the sniffer or reader cannot take
        if "sniffing" in str(exc):
            _check_single_column(p, encoding)
        raise ToolError(one_line(exc, p.name)) from None
    described = cur.execute(f"DESCRIBE {table}").fetchall()
    names, types = [r[0] for r in described], [r[1] for r in described]
    if header:
        _check_header(names, p.name)
    dates = convert_dates(cur, table, [n for n, t in zip(names, types) if t == "VARCHAR"])
    if dates:
        types = [r[1] for r in cur.execute(f"DESCRIBE {table}").fetchall()]
        fmt_all["date_formats"] = dates
    n_rows = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if n_rows < 2:
        raise ToolError(f"CSV file {p.name} needs at least 2 data rows, found {n_rows}")
    columns_out = _profile(cur, table, names, types, n_rows)
    if not any(c.usable for c in columns_out):
        why = "; ".join(f"{c.name}: {c.note or c.kind}" for c in columns_out[:8])
        raise ToolError(f"CSV file {p.name}: no column can be analysed ({why}"
                        + (f"; … {len(columns_out) - 8} more" if len(columns_out) > 8 else "") + ")")
    fmt_all.update(delimiter=delim, decimal=fmt.get("decimal_separator", "."), thousands=fmt.get("thousands"))
    return Dataset(name=p.name, table=table, n_rows=int(n_rows), columns=columns_out, fmt=fmt_all)


def _check_single_column(p: Path, encoding: str) -> None:
    """The sniffer settles on one column when rows are ragged: name the first bad line instead."""
    with p.open(encoding=encoding, errors="replace", newline="") as fh:
        first = fh.readline()
    delim = max(",;\t|", key=first.count)
    if first.count(delim) == 0:
        return
    header = next(csv.reader([first], delimiter=delim))
    cols = ", ".join(f"{lit(h or f'c{i}')}: 'VARCHAR'" for i, h in enumerate(header))
    try:
        connection().execute(f"SELECT count(*) FROM read_csv({lit(str(p))}, "
                         f"{sql_options(delim=delim, quote=chr(34), escape=chr(34), header=True, auto_detect=False, encoding=encoding)},"
                         f" columns={{{cols}}})").fetchall()
    except Exception as exc:
        raise ToolError(one_line(exc, p.name)) from None


def _check_header(names: list[str], name: str) -> None:
    """A header with a blank name: the reader cannot say what that column is."""
    blank = [i for i, n in enumerate(names) if _AUTO_NAME.match(n)]
    if blank and len(names) > 1:
        raise ToolError(f"CSV file {name} has a header row with no name for column {blank[0] + 1}")


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
    exact = n_rows * len(names) <= EXACT_CELLS
    numbered = _row_numbers(cur, table, [n for n, t in zip(names, types) if "INT" in t.upper()
                                         and ranges.get(n) == (1, n_rows) and counts.get(n, (0,))[0] == n_rows
                                         and not _TIME_NAME.search(n)])
    return [_classify(n, t, n_rows, *counts.get(n, (0, 0)), *ranges.get(n, (None, None)), exact=exact, first=i == 0,
                      row_number=n in numbered) for i, (n, t) in enumerate(zip(names, types))]


def _row_numbers(cur: Any, table: str, cands: list[str]) -> set[str]:
    """The candidates (integers from 1 to n, none missing) that hold exactly 1, 2, .., n in file order."""
    if not cands:
        return set()
    row = cur.execute("SELECT " + ", ".join(f"bool_and({q(n)} = rowid + 1)" for n in cands) + f" FROM {table}").fetchone()
    return {n for n, ok in zip(cands, row) if ok}


def _classify(name: str, sql_type: str, n_rows: int, present: int, distinct: int, lo: Any, hi: Any,
              exact: bool = True, first: bool = False, row_number: bool = False) -> Column:
    kind = _kind_of(sql_type)
    missing = n_rows - present
    col = Column(name=name, kind=kind, sql_type=sql_type, missing=missing, distinct=distinct, minimum=lo, maximum=hi)
    # HyperLogLog counts (large files) are off by a few per cent: a looser bar for "all distinct"
    nearly_all = present > 0 and distinct >= (0.97 if exact else 0.9) * present
    integer = kind == NUMERIC and "INT" in sql_type.upper()
    col.year = integer and present > 0 and YEARS[0] <= lo and hi <= YEARS[1]
    if present == 0 or missing / n_rows > MOSTLY_EMPTY:
        col.kind, col.note = EMPTY, f"{missing / n_rows:.0%} of values missing"
    elif distinct <= 1:
        col.kind, col.note = CONSTANT, "a single value"
    elif kind in (NUMERIC, CATEGORICAL) and _ID_NAME.search(name) and nearly_all:
        col.kind, col.note = ID, "ID-like: its name, and values (nearly) all distinct"
    elif col.year:
        col.note = "years: time, used as a number"
    elif first and integer and nearly_all and present >= 10 and hi - lo + 1 <= 1.03 * present:
        col.kind, col.note = ID, "ID-like: a sequence of distinct integers"
    elif row_number and present >= 10:
        col.kind, col.note = ID, "ID-like: the row numbers 1..n in file order"
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

TARGET_RULE = ("the last numeric column that is not ID-like, years, a date or mostly empty; if there is none, "
               f"the last categorical or yes/no column with 2–{MAX_TARGET_CLASSES} values")


def target_candidates(ds: Dataset) -> list[Column]:
    """Columns a model can predict: numeric, or categorical/boolean with 2..MAX_TARGET_CLASSES values."""
    return [c for c in ds.analysed() if c.kind == NUMERIC
            or (c.kind in (CATEGORICAL, BOOLEAN) and 2 <= c.distinct <= MAX_TARGET_CLASSES)]


def default_target(ds: Dataset) -> str | None:
    """The offline rule (TARGET_RULE); None when no column qualifies."""
    cands = target_candidates(ds)
    numeric = [c for c in cands if c.kind == NUMERIC and not c.year]
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
