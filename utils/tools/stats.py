"""Cleaning and statistics as SQL over the loaded dataset: every figure is one DuckDB aggregate.

Cleaning rule (applied by every later tool, through one view): numeric missing -> median, categorical
missing -> most frequent value (ties: alphabetical), numeric values beyond the 1.5×IQR fences are
clipped to the fence (no clipping when the IQR is 0). Columns with values beyond 1e100 are divided
by a power of ten before sums, so numbers near the float limit (1e308) never overflow to inf.
"""
from __future__ import annotations

import math
from typing import Any

from utils.tools.dataset import BOOLEAN, CATEGORICAL, DATE, NUMERIC, Column, Dataset, connection, q

MAX_CORR_COLUMNS = 30     # correlations: the target and the 29 columns most correlated with it
TOP_CATEGORIES = 20
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


def cleaning(ds: Dataset) -> dict[str, dict]:
    """Per analysed column, what cleaning does (computed once per dataset, then cached)."""
    with ds.lock:
        if "cleaning" in ds.cache:
            return ds.cache["cleaning"]
        cur = connection()
        cols = ds.analysed()
        nums = [c for c in cols if c.kind == NUMERIC]
        quart = _quartiles(cur, ds.table, nums, ds.n_rows)
        plan: dict[str, dict] = {}
        counts = []
        for c in nums:
            q1, med, q3 = quart[c.name]
            iqr = q3 - q1
            lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
            plan[c.name] = {"type": NUMERIC, "imputed": c.missing, "fill": med * c.scale, "scale": c.scale,
                            "lower_fence": _num(lo, c.scale), "upper_fence": _num(hi, c.scale), "lo": lo, "hi": hi,
                            "clipping": "applied" if iqr > 0 else "skipped (IQR is 0)",
                            "clipped_low": 0, "clipped_high": 0}
            if iqr > 0:
                counts += [f"count_if({_scaled(c)} < {lo!r})", f"count_if({_scaled(c)} > {hi!r})"]
        if counts:
            row = cur.execute(f"SELECT {', '.join(counts)} FROM {ds.table}").fetchone()
            it = iter(row)
            for c in nums:
                if plan[c.name]["clipping"] == "applied":
                    plan[c.name]["clipped_low"], plan[c.name]["clipped_high"] = int(next(it)), int(next(it))
        for c in cols:
            if c.kind in (CATEGORICAL, BOOLEAN):
                fill = _mode(cur, ds.table, c) if c.missing else None
                plan[c.name] = {"type": c.kind, "imputed": c.missing if fill is not None else 0, "fill": fill}
        ds.cache["cleaning"] = plan
        ds.cache["view"] = _create_view(cur, ds, plan)
        return plan


def _mode(cur: Any, table: str, c: Column) -> Any:
    row = cur.execute(f"SELECT {q(c.name)} FROM {table} WHERE {q(c.name)} IS NOT NULL GROUP BY 1 "
                      f"ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()
    return row[0] if row else None


def _create_view(cur: Any, ds: Dataset, plan: dict[str, dict]) -> str:
    """The cleaned columns as a view (`c_<table>`): each later query reads clean values directly."""
    exprs = []
    for c in ds.analysed():
        p = plan[c.name]
        if c.kind == NUMERIC:
            x = _scaled(c)
            if p["clipping"] == "applied":  # least/greatest skip NULLs, so NULL is filled first
                x = f"least(greatest({x}, {p['lo']!r}), {p['hi']!r})"
            x = x if c.scale == 1.0 else f"({x} * {c.scale!r})"
            exprs.append(f"CASE WHEN {q(c.name)} IS NULL THEN {p['fill']!r} ELSE {x} END AS {q(c.name)}")
        elif p["fill"] is None:
            exprs.append(q(c.name))
        else:
            fill = ("TRUE" if p["fill"] else "FALSE") if c.kind == BOOLEAN else "'" + str(p["fill"]).replace("'", "''") + "'"
            exprs.append(f"coalesce({q(c.name)}, {fill}) AS {q(c.name)}")
    view = f"c_{ds.table}"
    cur.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {', '.join(exprs) or '1 AS one'} FROM {ds.table}")
    return view


def clean_view(ds: Dataset) -> str:
    cleaning(ds)
    return ds.cache["view"]


def describe_numeric(ds: Dataset) -> dict[str, dict]:
    """count, mean, sample std, min, quartiles, max of each cleaned numeric column."""
    view, cur = clean_view(ds), connection()
    nums = [c for c in ds.analysed() if c.kind == NUMERIC]
    out: dict[str, dict] = {}
    if not nums:
        return out
    exprs = []
    for c in nums:
        x = _scaled(c)
        exprs += [f"count({q(c.name)})", f"avg({x})", f"stddev_samp({x})", f"min({x})", f"max({x})"]
    row = cur.execute(f"SELECT {', '.join(exprs)} FROM {view}").fetchone()
    quart = _quartiles(cur, view, nums, ds.n_rows)
    for i, c in enumerate(nums):
        n, mean, std, lo, hi = row[5 * i: 5 * i + 5]
        q1, med, q3 = quart[c.name]
        s = c.scale
        out[c.name] = {"count": int(n), "mean": _num(mean, s), "std": _num(std or 0.0, s), "min": _num(lo, s),
                       "q1": _num(q1, s), "median": _num(med, s), "q3": _num(q3, s), "max": _num(hi, s)}
    return out


def _num(x: Any, scale: float) -> float | None:
    """A scaled figure back in the column's units; None when it cannot be a finite float."""
    if x is None:
        return None
    v = float(x) * scale
    return v if math.isfinite(v) else None


def describe_categorical(ds: Dataset) -> dict[str, dict]:
    view, cur = clean_view(ds), connection()
    out: dict[str, dict] = {}
    for c in ds.analysed():
        if c.kind in (CATEGORICAL, BOOLEAN):
            rows = cur.execute(f"SELECT CAST({q(c.name)} AS VARCHAR), count(*) FROM {view} WHERE {q(c.name)} "
                               f"IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_CATEGORIES}").fetchall()
            out[c.name] = {"n_unique": c.distinct, "counts": {str(k): int(v) for k, v in rows}}
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
    """Pearson r of each column with the target, in one scan."""
    if not others:
        return {}
    view = clean_view(ds)
    exprs = ", ".join(f"corr({_scaled(target)}, {_scaled(c)})" for c in others)
    row = connection().execute(f"SELECT {exprs} FROM {view}").fetchone()
    return {c.name: _finite(r) for c, r in zip(others, row)}


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def correlation_matrix(ds: Dataset, cols: list[Column]) -> list[list[float | None]]:
    """Pearson r for every pair in one scan; a constant column has no correlation (None), not NaN."""
    view = clean_view(ds)
    pairs = [(i, j) for i in range(len(cols)) for j in range(i + 1, len(cols))]
    m: list[list[float | None]] = [[1.0 if i == j else None for j in range(len(cols))] for i in range(len(cols))]
    if pairs:
        exprs = ", ".join(f"corr({_scaled(cols[i])}, {_scaled(cols[j])})" for i, j in pairs)
        row = connection().execute(f"SELECT {exprs} FROM {view}").fetchone()
        for (i, j), r in zip(pairs, row):
            m[i][j] = m[j][i] = _finite(r)
    return m


def sample(ds: Dataset, names: list[str], limit: int = MODEL_ROWS, raw: bool = False,
           where: str | None = None) -> dict[str, Any]:
    """Up to `limit` rows of `names` (those matching the SQL condition `where`) as numpy arrays (a
    missing value masked), in a fixed order (a hash of the row's values): the same file always gives
    the same sample, and so the same model and charts. `raw`: the file's values rather than the
    cleaned view; the model reads these."""
    view = ds.table if raw else clean_view(ds)
    cols = ", ".join(q(n) for n in names)
    cur = connection()
    cur.execute(f"SELECT {cols} FROM {view} {'WHERE ' + where if where else ''} "
                f"ORDER BY hash({cols}), {cols} LIMIT {int(limit)}")
    return cur.fetchnumpy()


def column_summary(ds: Dataset) -> dict[str, dict]:
    """analysis.json's `columns`: {name: {n, missing, mean, sd, min, max}} per analysed numeric column,
    on the raw data (n = values present; sd = sample SD, None below two values)."""
    nums = [c for c in ds.analysed() if c.kind == NUMERIC]
    if not nums:
        return {}
    exprs = []
    for c in nums:
        x = _scaled(c)
        exprs += [f"count({q(c.name)})", f"avg({x})", f"stddev_samp({x})", f"min({x})", f"max({x})"]
    row = connection().execute(f"SELECT {', '.join(exprs)} FROM {ds.table}").fetchone()
    out = {}
    for i, c in enumerate(nums):
        n, mean, sd, lo, hi = row[5 * i: 5 * i + 5]
        out[c.name] = {"n": int(n), "missing": ds.n_rows - int(n), "mean": _num(mean, c.scale),
                       "sd": _num(sd, c.scale) if n > 1 else None, "min": _num(lo, c.scale), "max": _num(hi, c.scale)}
    return out
