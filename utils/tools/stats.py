"""Statistics as SQL over the loaded dataset: every figure is one DuckDB aggregate.

Nothing is cleaned: no value is clipped, winsorised or filled in. Descriptive figures (`describe_*`,
`column_summary`, `outliers`, correlations) and the rows the charts and the model read (`sample`)
come from the raw table, so every table and chart shows the data as it is. Columns with values
beyond 1e100 are divided by a power of ten before sums, so numbers near the float limit (1e308)
never overflow to inf.
Outliers (beyond the 1.5×IQR fences) are reported with their row numbers, never changed.
"""
from __future__ import annotations

import math
from typing import Any

from utils.tools.dataset import BOOLEAN, CATEGORICAL, DATE, NUMERIC, Column, Dataset, connection, q

MAX_CORR_COLUMNS = 30     # correlations: the target and the 29 columns most correlated with it
TOP_CATEGORIES = 20
OUTLIER_ROWS = 10         # outliers listed by row per column (the farthest); all are counted
MODEL_ROWS = 100_000      # models and charts use at most this many rows (a fixed hash-ordered sample)
_ONE_QUERY_CELLS = 5_000_000
EXACT_QUANTILE_ROWS = 2_000_000  # quartiles above this many rows are t-digest estimates (said in the output)


def _scaled(col: Column, expr: str | None = None) -> str:
    e = f"CAST({expr or q(col.name)} AS DOUBLE)"
    return e if col.scale == 1.0 else f"({e} / {col.scale!r})"


def _quartiles(cur: Any, source: str, cols: list[Column], n_rows: int) -> dict[str, tuple]:
    """(q1, median, q3) in scaled units: exact (linear interpolation) up to EXACT_QUANTILE_ROWS rows, one
    query for a small file and one per column for a larger one (an exact quantile holds the column's
    values in memory); above that DuckDB's t-digest `approx_quantile`, whose memory does not grow."""
    out: dict[str, tuple] = {}
    if not cols:
        return out
    groups = [cols] if n_rows * len(cols) <= _ONE_QUERY_CELLS else [[c] for c in cols]
    fn = "quantile_cont" if n_rows <= EXACT_QUANTILE_ROWS else "approx_quantile"
    for group in groups:
        exprs = ", ".join(f"{fn}({_scaled(c)}, [0.25, 0.5, 0.75])" for c in group)
        row = cur.execute(f"SELECT {exprs} FROM {source}").fetchone()
        for c, qs in zip(group, row):
            out[c.name] = tuple(float(x) for x in qs) if qs else (math.nan,) * 3
    return out


def describe_numeric(ds: Dataset) -> dict[str, dict]:
    """Per numeric column, on the raw values as in the file (missing values left out, nothing clipped or
    filled): count, missing, mean, sample SD, min, quartiles, max and the number of 1.5×IQR outliers.
    Cached per dataset: preprocess, describe and the model's `columns` all read it (a 2,000-column
    file took a scan of seconds each time)."""
    with ds.lock:
        if "describe_numeric" in ds.cache:
            return ds.cache["describe_numeric"]
    cur = connection()
    nums = [c for c in ds.analysed() if c.kind == NUMERIC]
    out: dict[str, dict] = {}
    if not nums:
        return out
    exprs = []
    for c in nums:
        x = _scaled(c)
        exprs += [f"count({q(c.name)})", f"avg({x})", f"stddev_samp({x})", f"min({x})", f"max({x})"]
    row = cur.execute(f"SELECT {', '.join(exprs)} FROM {ds.table}").fetchone()
    quart = raw_quartiles(ds)
    far = outliers(ds)
    for i, c in enumerate(nums):
        n, mean, std, lo, hi = row[5 * i: 5 * i + 5]
        q1, med, q3 = quart[c.name]
        s = c.scale
        out[c.name] = {"count": int(n), "missing": ds.n_rows - int(n), "mean": _num(mean, s),
                       "std": _num(std, s) if n > 1 else None, "min": _num(lo, s), "q1": _num(q1, s),
                       "median": _num(med, s), "q3": _num(q3, s), "max": _num(hi, s),
                       "outliers": far[c.name]["count"] if c.name in far else 0}
    with ds.lock:
        ds.cache["describe_numeric"] = out
    return out


def raw_quartiles(ds: Dataset) -> dict[str, tuple]:
    """(q1, median, q3) of each analysed numeric column's raw values, in scaled units; cached per dataset."""
    with ds.lock:
        if "raw_quartiles" not in ds.cache:
            nums = [c for c in ds.analysed() if c.kind == NUMERIC]
            ds.cache["raw_quartiles"] = _quartiles(connection(), ds.table, nums, ds.n_rows)
        return ds.cache["raw_quartiles"]


def column_summary(ds: Dataset) -> dict[str, dict]:
    """analysis.json's `columns`: {name: {n, missing, mean, sd, min, max}} per analysed numeric column,
    on the raw data (n = values present; sd = sample SD, None below two values)."""
    return {name: {"n": d["count"], "missing": d["missing"], "mean": d["mean"], "sd": d["std"],
                   "min": d["min"], "max": d["max"]} for name, d in describe_numeric(ds).items()}


def outliers(ds: Dataset, listed: int = OUTLIER_ROWS) -> dict[str, dict]:
    """Values beyond the 1.5×IQR fences, reported and never changed: per numeric column with any, the
    fences, the count below and above, and the `listed` farthest as {row, value, beyond, iqrs}: row 1 is
    the file's first data row, `beyond` the distance past the fence, `iqrs` that distance in IQRs.
    Cached per dataset (the describe and preprocess tools both report it)."""
    with ds.lock:
        if "outliers" in ds.cache:
            return ds.cache["outliers"]
    cur = connection()
    quart = raw_quartiles(ds)
    out: dict[str, dict] = {}
    fenced = []   # (column, iqr, lower fence, upper fence)
    for c in (c for c in ds.analysed() if c.kind == NUMERIC):
        q1, _, q3 = quart[c.name]
        iqr = q3 - q1
        if iqr > 0 and math.isfinite(iqr):
            fenced.append((c, iqr, q1 - 1.5 * iqr, q3 + 1.5 * iqr))
    counts = []   # one scan counts every column's outliers (a query per column took seconds at 2,000 columns)
    for start in range(0, len(fenced), 500):
        part = fenced[start:start + 500]
        counts += cur.execute("SELECT " + ", ".join(f"count_if({_scaled(c)} < {lo!r}), count_if({_scaled(c)} > {hi!r})"
                                                    for c, _, lo, hi in part) + f" FROM {ds.table}").fetchone()
    for k, (c, iqr, lo, hi) in enumerate(fenced):
        low, high = counts[2 * k], counts[2 * k + 1]
        if not (low or high):
            continue
        x = _scaled(c)
        beyond = f"CASE WHEN {x} < {lo!r} THEN {lo!r} - {x} ELSE {x} - {hi!r} END"
        rows = cur.execute(f"SELECT rowid + 1, {x}, {beyond} FROM {ds.table} WHERE {x} < {lo!r} OR {x} > {hi!r} "
                           f"ORDER BY 3 DESC, 1 LIMIT {int(listed)}").fetchall()
        out[c.name] = {"count": int(low + high), "low": int(low), "high": int(high),
                       "lower_fence": _num(lo, c.scale), "upper_fence": _num(hi, c.scale),
                       "rows": [{"row": int(r), "value": _num(v, c.scale), "beyond": _num(b, c.scale),
                                 "iqrs": float(b) / iqr} for r, v, b in rows]}
    with ds.lock:
        ds.cache["outliers"] = out
    return out


def _num(x: Any, scale: float) -> float | None:
    """A scaled figure back in the column's units; None when it cannot be a finite float."""
    if x is None:
        return None
    v = float(x) * scale
    return v if math.isfinite(v) else None


def describe_categorical(ds: Dataset) -> dict[str, dict]:
    """The most frequent values of each category column, with the file's own labels, and its missing count."""
    cur = connection()
    out: dict[str, dict] = {}
    for c in ds.analysed():
        if c.kind in (CATEGORICAL, BOOLEAN):
            rows = cur.execute(f"SELECT CAST({q(c.name)} AS VARCHAR), count(*) FROM {ds.table} WHERE {q(c.name)} "
                               f"IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_CATEGORIES}").fetchall()
            out[c.name] = {"n_unique": c.distinct, "missing": c.missing, "counts": {str(k): int(v) for k, v in rows}}
    return out


def describe_dates(ds: Dataset) -> dict[str, dict]:
    cur = connection()
    out = {}
    for c in ds.of(DATE):
        lo, hi = cur.execute(f"SELECT min({q(c.name)}), max({q(c.name)}) FROM {ds.table}").fetchone()
        out[c.name] = {"from": str(lo), "to": str(hi), "missing": c.missing}
    return out


def correlation_columns(ds: Dataset, target: str | None) -> tuple[list[Column], str]:
    """At most MAX_CORR_COLUMNS numeric columns, and the rule that chose them (said in the output)."""
    nums = [c for c in ds.analysed() if c.kind == NUMERIC]
    if len(nums) <= MAX_CORR_COLUMNS:
        return nums, "all numeric columns"
    t = next((c for c in nums if c.name == target), None)
    if t is None:
        return nums[:MAX_CORR_COLUMNS], f"the first {MAX_CORR_COLUMNS} numeric columns (of {len(nums)})"
    others = [c for c in nums if c is not t]
    r = with_target(ds, t, others)
    ranked = sorted(others, key=lambda c: -abs(r.get(c.name) or 0.0))[:MAX_CORR_COLUMNS - 1]
    return [t] + [c for c in others if c in ranked], (
        f"{target} and the {MAX_CORR_COLUMNS - 1} columns most correlated with it (of {len(nums)} numeric)")


def with_target(ds: Dataset, target: Column, others: list[Column]) -> dict[str, float | None]:
    """Pearson r of each column with the target on the raw values (pairwise-complete rows), in one scan."""
    if not others:
        return {}
    view = ds.table
    exprs = ", ".join(f"corr({_scaled(target)}, {_scaled(c)})" for c in others)
    row = connection().execute(f"SELECT {exprs} FROM {view}").fetchone()
    return {c.name: _finite(r) for c, r in zip(others, row)}


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def correlation_matrix(ds: Dataset, cols: list[Column]) -> list[list[float | None]]:
    """Pearson r for every pair in one scan, on the raw values with pairwise-complete rows (a row missing
    either value is left out of that pair only), as pandas' `DataFrame.corr()`; a constant column has no
    correlation (None), not NaN."""
    view = ds.table
    pairs = [(i, j) for i in range(len(cols)) for j in range(i + 1, len(cols))]
    m: list[list[float | None]] = [[1.0 if i == j else None for j in range(len(cols))] for i in range(len(cols))]
    if pairs:
        exprs = ", ".join(f"corr({_scaled(cols[i])}, {_scaled(cols[j])})" for i, j in pairs)
        row = connection().execute(f"SELECT {exprs} FROM {view}").fetchone()
        for (i, j), r in zip(pairs, row):
            m[i][j] = m[j][i] = _finite(r)
    return m


def sample(ds: Dataset, names: list[str], limit: int = MODEL_ROWS, where: str | None = None) -> dict[str, Any]:
    """Up to `limit` rows of `names` (those matching the SQL condition `where`) as numpy arrays, a
    missing value masked, in a fixed order (a hash of the row's values): the same file always gives
    the same sample, and so the same model and charts. The file's values: nothing is filled or clipped."""
    cols = ", ".join(q(n) for n in names)
    cur = connection()
    cur.execute(f"SELECT {cols} FROM {ds.table} {'WHERE ' + where if where else ''} "
                f"ORDER BY hash({cols}), {cols} LIMIT {int(limit)}")
    return cur.fetchnumpy()

