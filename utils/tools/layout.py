"""How a data file is laid out: encoding, DuckDB's sniffer and number format, and the files where the
sniffer alone reads it wrongly (the loading itself is `dataset._load`).

Real files that ship with statistics packages break a plain CSV reader in known ways, each checked
here with a rule a reader can verify:
- whitespace-separated (statsmodels' raw data files, `'OBS' 'GPA' ...`): the sniffer sees one
  column; when every one of the first HEAD_LINES lines splits on runs of spaces into at least 2
  fields (a line with another count than the first is an error naming it), the file is rewritten once as tab-separated text in the session's temporary
  folder and read from there (quotes around a field are removed, a quoted field may hold spaces);
- a scikit-learn metadata first line (`150,4,setosa,versicolor,virginica`: rows, features, class
  names) above headerless numeric rows of features + 1 fields: the line is skipped, the columns are
  named `column1`..`columnK` and `target`, and the class names are reported;
- dates DuckDB does not sniff (`Jan 1 2000`, `2021-01`, `01/02/2003`): a text column whose every
  value parses with one format of DATE_FORMATS (years 1000..2999) becomes a date column. When both
  the day-first and the month-first reading parse every value, the order is inferred from the
  values: the reading whose dates move least from one row to the next (file order) wins.
"""
from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path
from typing import Any

from utils.errors import ToolError

NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "na", "n/a", "None"]
HEAD_LINES = 50
_TOKEN = re.compile(r'"([^"]*)"|\'([^\']*)\'|(\S+)')
DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%Y-%m", "%Y/%m", "%b %d %Y", "%b %d, %Y", "%B %d %Y", "%B %d, %Y",
                "%d %b %Y", "%d %B %Y", "%b %Y", "%B %Y", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%m-%d-%Y",
                "%d-%m-%Y", "%m/%d/%y", "%d/%m/%y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M"]
_DEC_COMMA = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")
_THOUSANDS_COMMA = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_SWAP = {"%m": "%d", "%d": "%m"}
DATE_SAMPLE = 500


def sniff_encoding(p: Path) -> str:
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


def sql_options(**kw: Any) -> str:
    """DuckDB function options (`k=v, ...`) from Python values, every string quoted."""
    parts = []
    for k, v in kw.items():
        if isinstance(v, bool):
            parts.append(f"{k}={'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            parts.append(f"{k}={v}")
        elif isinstance(v, list):
            parts.append(f"{k}=[" + ", ".join(lit(x) for x in v) + "]")
        else:
            parts.append(f"{k}={lit(v)}")
    return ", ".join(parts)


def one_line(exc: Exception, name: str) -> str:
    """DuckDB's multi-line CSV errors as one line that names the line and the problem."""
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    cols = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if line and cols:
        return (f"CSV file {name}: line {line.group(1)} has {cols.group(2)} fields, "
                f"the header (line 1) has {cols.group(1)}")
    first = text.split("\n", 1)[0].removeprefix("Invalid Input Error: ").removeprefix("Conversion Error: ")
    return f"CSV file {name} could not be read: " + (f"line {line.group(1)}: " if line else "") + first[:300]


def number_format(cur: Any, src: str, base: dict, delim: str, sniffed: list[dict]) -> dict:
    """Decimal comma / thousands separators, judged from the text columns of the first rows."""
    text_cols = {c["name"] for c in sniffed if c["type"] == "VARCHAR"}
    if not text_cols:
        return {}
    cur.execute(f"SELECT * FROM read_csv({src}, {sql_options(**base, all_varchar=True)}) LIMIT 2000")
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


def sniff(cur: Any, src: Path, encoding: str, **kw: Any) -> tuple[str, bool, list[dict], str | None]:
    """DuckDB's reading of the file: (delimiter, has a header, columns, date format)."""
    row = cur.execute(f"SELECT Delimiter, HasHeader, Columns, DateFormat, TimestampFormat FROM sniff_csv("
                      f"{lit(str(src))}, {sql_options(encoding=encoding, nullstr=NULLS, **kw)})").fetchone()
    return row[0], bool(row[1]), row[2], row[3] or row[4]


def head_lines(p: Path, encoding: str, n: int = HEAD_LINES) -> list[str]:
    """The first `n` non-blank lines, without line ends."""
    out: list[str] = []
    with p.open(encoding=encoding, errors="replace", newline="") as fh:
        for line in fh:
            if line.strip():
                out.append(line.rstrip("\r\n"))
                if len(out) >= n:
                    break
    return out


def tokens(line: str) -> list[str]:
    """Fields of a whitespace-separated line; a field in single or double quotes may hold spaces."""
    return [next(g for g in m.groups() if g is not None) for m in _TOKEN.finditer(line)]


def whitespace_fields(lines: list[str]) -> int:
    """The first line's field count when it and every other line split on whitespace into at least 2
    fields, else 0. A line with a different count is then an error (`whitespace_to_tsv`), never a
    silent one-column read."""
    counts = [len(tokens(line)) for line in lines]
    return counts[0] if len(counts) >= 2 and min(counts) >= 2 else 0


def whitespace_to_tsv(p: Path, encoding: str, folder: str, fields: int) -> Path:
    """The file rewritten as UTF-8 tab-separated text (one streaming pass); a ragged line is an error."""
    out = Path(folder) / f"{p.stem}.ws.tsv"
    with p.open(encoding=encoding, errors="replace", newline="") as src, \
            out.open("w", encoding="utf-8", newline="") as dst:
        writer = csv.writer(dst, delimiter="\t", lineterminator="\n")
        for number, line in enumerate(src, 1):
            if not line.strip():
                continue
            row = tokens(line)
            if len(row) != fields:
                raise ToolError(f"file {p.name}: line {number} has {len(row)} whitespace-separated fields, "
                                f"line 1 has {fields}")
            writer.writerow(row)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sklearn_metadata(lines: list[str]) -> dict[str, Any] | None:
    """`n_rows,n_features[,class names]` above numeric rows of n_features + 1 fields; None otherwise."""
    if len(lines) < 2:
        return None
    first = [x.strip() for x in lines[0].split(",")]
    if len(first) < 2 or not all(x.isdigit() for x in first[:2]):
        return None
    n_rows, n_features = int(first[0]), int(first[1])
    rows = [line.split(",") for line in lines[1:]]
    if n_features < 1 or any(len(r) != n_features + 1 or not all(_is_number(x) for x in r) for r in rows):
        return None
    labels = first[2:]
    if len(first) == n_features + 1 and all(_is_number(x) for x in labels):
        return None  # the first line is a data row like the others
    return {"rows": n_rows, "features": n_features, "labels": labels,
            "names": [f"column{i}" for i in range(1, n_features + 1)] + ["target"]}


def ambiguous(fmt: str | None) -> bool:
    """A day/month format DuckDB may have picked from a sample (`01/02/2003` reads both ways)."""
    return bool(fmt) and "%d" in fmt and "%m" in fmt and not fmt.startswith("%Y")


def _swapped(fmt: str) -> str:
    return re.sub(r"%[md]", lambda m: _SWAP[m.group(0)], fmt)


def q(name: str) -> str:
    """A SQL identifier for any column name (quotes doubled), so odd headers cannot break a query."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def date_format(cur: Any, table: str, name: str) -> str | None:
    """The one DATE_FORMATS entry that parses every value of a text column (years 1000..2999); None if none."""
    x = f"trim({q(name)})"
    sample = f"(SELECT {q(name)} FROM {table} WHERE {q(name)} IS NOT NULL LIMIT {DATE_SAMPLE})"
    row = cur.execute("SELECT count(*), " + ", ".join(f"count_if(try_strptime({x}, {lit(f)}) IS NULL)"
                                                     for f in DATE_FORMATS) + f" FROM {sample}").fetchone()
    if not row[0]:
        return None
    fits = [f for f, bad in zip(DATE_FORMATS, row[1:]) if bad == 0]
    whole = [f for f in fits if _parses_all(cur, table, x, f)]
    if not whole:
        return None
    fmt = whole[0]
    other = _swapped(fmt)
    if other != fmt and other in whole:
        fmt = min((fmt, other), key=lambda f: (_jumps(cur, table, x, f), f != fmt))
    return fmt


def _parses_all(cur: Any, table: str, x: str, fmt: str) -> bool:
    d = f"try_strptime({x}, {lit(fmt)})"
    bad, lo, hi = cur.execute(f"SELECT count_if({x} IS NOT NULL AND {d} IS NULL), min(year({d})), max(year({d})) "
                              f"FROM {table}").fetchone()
    return bad == 0 and lo is not None and 1000 <= lo and hi <= 2999


def _jumps(cur: Any, table: str, x: str, fmt: str) -> float:
    """Total days between consecutive rows' dates (file order) under one reading of the values."""
    d = f"try_strptime({x}, {lit(fmt)})"
    row = cur.execute(f"SELECT sum(abs(epoch(d) - epoch(p))) FROM (SELECT {d} AS d, lag({d}) OVER "
                      f"(ORDER BY rowid) AS p FROM {table})").fetchone()
    return float(row[0] or 0.0)


def convert_dates(cur: Any, table: str, names: list[str]) -> dict[str, str]:
    """Turn each text column of `names` that holds dates into a DATE (or TIMESTAMP) column; {name: format}."""
    done: dict[str, str] = {}
    for name in names:
        fmt = date_format(cur, table, name)
        if fmt is None:
            continue
        kind = "TIMESTAMP" if "%H" in fmt else "DATE"
        cur.execute(f"ALTER TABLE {table} ALTER COLUMN {q(name)} SET DATA TYPE {kind} USING "
                    f"CAST(try_strptime(trim({q(name)}), {lit(fmt)}) AS {kind})")
        done[name] = fmt
    return done
