"""Analysis tools over the `--data` CSV: load, clean, describe, correlate, model, chart.

Each tool opens the dataset (loaded and profiled once per process by `dataset.open_dataset`); the
descriptive tools (load, preprocess, describe, correlations, charts) read the raw table, so a task needs only the data path and every number is reproducible from the
file plus the rules stated in `dataset`, `stats` and `modelling`. A file that cannot support a step
(one numeric column has no correlations, no feature means no model) gets a sentence saying so, not a
failure. Every tool is bounded: statistics over at most MAX_COLUMNS columns, correlations over at most
MAX_CORR_COLUMNS, models and charts on at most MODEL_ROWS sampled rows.
"""
from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path
from typing import Callable

from utils.errors import ToolError
from utils.tools import ANALYSIS_JSON, ToolInput, ToolResult
from utils.tools.data_charts import (MAX_HEATMAP, bars, heatmap, histograms, numeric_first, over_time, plain, scatter,
                                     series_column, time_column)
from utils.tools.dataset import (MAX_COLUMNS, NUMERIC, TARGET_RULE, Dataset, check_target, default_target,
                                 open_dataset)
from utils.tools.stats import (EXACT_QUANTILE_ROWS, MAX_CORR_COLUMNS, correlation_columns, correlation_matrix,
                               describe_categorical, describe_dates, describe_numeric, outliers)

MAX_TABLE_ROWS = 40   # markdown tables list at most this many columns; `data` holds the rest


def quiet(fn: Callable[[ToolInput], ToolResult]) -> Callable[[ToolInput], ToolResult]:
    """numpy, statsmodels and matplotlib warnings stay out of the user's terminal: a tool's findings are
    in its result, and a RuntimeWarning about an overflow in a discarded value is noise."""
    @functools.wraps(fn)
    def run(inp: ToolInput) -> ToolResult:
        warnings.filterwarnings("ignore", module=r"(utils\.tools|statsmodels|numpy|matplotlib|scipy|pandas|patsy)")
        import numpy as np

        with np.errstate(all="ignore"):
            return fn(inp)
    return run


def finite(value):
    """inf and NaN become None, so run.json stays strict JSON and tables show a dash."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def _md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows[:MAX_TABLE_ROWS]]
    if len(rows) > MAX_TABLE_ROWS:
        out.append(f"\n… and {len(rows) - MAX_TABLE_ROWS} more (all in the task's data).")
    return "\n".join(out)


def _dataset(inp: ToolInput) -> Dataset:
    if inp.data_path is None:
        raise ToolError("this tool needs a CSV data file: pass --data FILE.csv")
    return open_dataset(Path(inp.data_path))


def _target(inp: ToolInput, ds: Dataset) -> tuple[str | None, str]:
    """(target column, how it was chosen): the run's choice, a spec param, or the stated rule."""
    name = inp.target or inp.params.get("target")
    if name:
        check_target(ds, name)
        return name, "the run's target"
    return default_target(ds), f"by rule: {TARGET_RULE}"


# ---- tools ---------------------------------------------------------------------------------------

def _layout_md(f: dict) -> str:
    """How the file's layout was read, in words (only what differs from a plain CSV with a header)."""
    out = []
    if f.get("layout"):
        out.append(f"The file is {f['layout']}.")
    if f.get("metadata_line"):
        out.append(f"Its first line `{f['metadata_line']}` is metadata (rows, features, class names "
                   f"{', '.join(f['class_labels']) or 'none'}), not data; the columns are named column1.. and target.")
    if f.get("header"):
        out.append(f"It has no header row; {f['header'].split(': ', 1)[1]}.")
    if f.get("date_formats"):
        out.append("Dates read from text: " + ", ".join(f"{k} as `{v}`" for k, v in f["date_formats"].items()) + ".")
    return (" " + " ".join(out)) if out else ""


@quiet
def load_data(inp: ToolInput) -> ToolResult:
    """What is in the file, as read: format, columns, what each is and whether it is used."""
    ds = _dataset(inp)
    f = ds.fmt
    rows = [[c.name, c.kind, ds.n_rows - c.missing, c.missing, plain(c.distinct), c.note or "used"]
            for c in ds.columns]
    used = ds.analysed()
    left_out = [c for c in ds.columns if not c.usable]
    capped = sum(c.usable for c in ds.columns) - len(used)
    md = [f"**{ds.name}**: {ds.n_rows:,} rows, {len(ds.columns):,} columns, read as {f['encoding']} with "
          f"delimiter {f['delimiter']!r}, decimal separator {f['decimal']!r}"
          + (f", thousands separator {f['thousands']!r}" if f["thousands"] else "") + "." + _layout_md(f),
          f"{len(used)} columns are used for statistics"
          + (f"; {len(left_out)} are left out (ID-like, dates, mostly empty, constant or free text)" if left_out else "")
          + (f"; {capped} more are beyond the {MAX_COLUMNS}-column cap" if capped > 0 else "") + ".", "",
          _md_table(["column", "type", "values", "missing", "distinct", "note"], rows)]
    data = {"file": ds.name, "rows": ds.n_rows, "format": f, "columns": ds.names(),
            "types": {c.name: c.kind for c in ds.columns}, "missing": {c.name: c.missing for c in ds.columns},
            "numeric": [c.name for c in ds.columns if c.kind == NUMERIC],
            "excluded": {c.name: c.note for c in left_out}}
    return ToolResult(markdown="\n".join(md), data=data)


@quiet
def preprocess(inp: ToolInput) -> ToolResult:
    """Missing values and outliers, reported column by column; no value is changed."""
    ds = _dataset(inp)
    numeric, categorical, far = describe_numeric(ds), describe_categorical(ds), outliers(ds)
    rows = []
    for col, d in numeric.items():
        o = far.get(col)
        shown = ("; ".join(f"row {r['row']}: {plain(r['value'])} ({plain(r['iqrs'], 2)} IQR beyond)"
                           for r in o["rows"][:3]) + ("; …" if o["count"] > 3 else "")) if o else "—"
        rows.append([col, NUMERIC, d["missing"], f"{o['low']} low / {o['high']} high" if o else "0",
                     f"[{plain(o['lower_fence'])}, {plain(o['upper_fence'])}]" if o else "—", shown])
    rows += [[col, "categorical", d["missing"], "—", "—", "—"] for col, d in categorical.items()]
    n_missing = sum(r[2] for r in rows)
    n_out = sum(o["count"] for o in far.values())
    approx = (f" Quartiles are t-digest estimates (more than {EXACT_QUANTILE_ROWS:,} rows)."
              if ds.n_rows > EXACT_QUANTILE_ROWS else "")
    md = (f"**{ds.name}** ({ds.n_rows:,} rows) as it is: {n_missing:,} missing values and {n_out:,} outliers "
          "(beyond the 1.5×IQR fences), reported here and not changed: no value is clipped or filled in, "
          f"and every table and chart shows the raw data. Row 1 is the file's first data row.{approx}\n\n"
          + _md_table(["column", "type", "missing", "outliers", "fences", "farthest"], rows))
    return ToolResult(markdown=md, data={"file": ds.name, "rows": ds.n_rows, "missing_total": n_missing,
                                         "missing": {r[0]: r[2] for r in rows}, "outliers": far,
                                         "outliers_total": n_out})


@quiet
def describe(inp: ToolInput) -> ToolResult:
    ds = _dataset(inp)
    numeric, categorical, dates = describe_numeric(ds), describe_categorical(ds), describe_dates(ds)
    keys = ["count", "missing", "mean", "std", "min", "q1", "median", "q3", "max", "outliers"]
    parts = [f"Summary of **{ds.name}** as in the file ({ds.n_rows:,} rows; missing values left out, "
             "nothing clipped or filled; std is the sample SD; outliers: beyond the 1.5×IQR fences)."
             + (" Quartiles and medians are t-digest estimates." if ds.n_rows > EXACT_QUANTILE_ROWS else "")]
    if numeric:
        parts.append(_md_table(["column"] + keys, [[c] + [plain(s[k]) for k in keys] for c, s in numeric.items()]))
    for col, info in list(categorical.items())[:MAX_TABLE_ROWS]:
        shown = ", ".join(f"{k} ({v:,})" for k, v in list(info["counts"].items())[:10])
        more = f", … {info['n_unique'] - 10} more" if info["n_unique"] > 10 else ""
        gone = f"; {info['missing']:,} missing" if info["missing"] else ""
        parts.append(f"- **{col}**: {info['n_unique']} categories: {shown}{more}{gone}")
    for col, info in dates.items():
        parts.append(f"- **{col}** (dates): from {info['from']} to {info['to']}")
    if not (numeric or categorical or dates):
        parts.append("No column is fit for statistics (all are ID-like, empty, constant or free text).")
    return ToolResult(markdown="\n\n".join(parts), data={"file": ds.name, "rows": ds.n_rows, "numeric": numeric,
                                                         "categorical": categorical, "dates": dates})


@quiet
def correlations(inp: ToolInput) -> ToolResult:
    ds = _dataset(inp)
    target, _ = _target(inp, ds)
    cols, rule = correlation_columns(ds, target)
    names = [c.name for c in cols]
    if len(cols) < 2:
        why = (f"Correlations need at least two numeric columns; **{ds.name}** has {len(cols)}"
               + (f" ({names[0]})" if names else "") + ", so there is no correlation to report.")
        return ToolResult(markdown=why, data={"file": ds.name, "columns": names, "skipped": why})
    m = correlation_matrix(ds, cols)
    pairs = [{"a": names[i], "b": names[j], "r": m[i][j]} for i in range(len(names))
             for j in range(i + 1, len(names)) if m[i][j] is not None]
    pairs.sort(key=lambda p: (-abs(p["r"]), p["a"], p["b"]))
    md = [f"Pearson correlations between numeric columns of **{ds.name}** on the raw values (each pair "
          f"over the rows that have both): {rule}"
          + (f", at most {MAX_CORR_COLUMNS}" if rule != "all numeric columns" else "") + ".", ""]
    if len(names) <= 12:
        md += [_md_table([""] + names, [[c] + [plain(x, 3) for x in row] for c, row in zip(names, m)]), ""]
    md += ["Strongest pairs:"] + [f"- {p['a']} ↔ {p['b']}: r = {p['r']:.3f}" for p in pairs[:5]]
    return ToolResult(markdown="\n".join(md), data={"file": ds.name, "columns": names, "rule": rule,
                                                    "matrix": m, "pairs": pairs[:10]})


@quiet
def regression(inp: ToolInput) -> ToolResult:
    """The model of the target (OLS, logit or multinomial logit, see `modelling`) with its
    cross-validated comparison; the result is the run folder's `analysis.json`."""
    from utils.tools.model_report import analyse, markdown
    from utils.tools.modelling import IMPUTE

    ds = _dataset(inp)
    target, how = _target(inp, ds)
    impute = inp.params.get("impute")
    if impute is not None and impute not in IMPUTE:
        raise ToolError(f"impute {impute!r} is not supported; choose one of: {', '.join(IMPUTE)}")
    if target is None:
        why = (f"**{ds.name}** has no column a model could predict (numeric, or a category with few values), "
               "so no model was fitted.")
        return ToolResult(markdown=why, data={"file": ds.name, "skipped": why})
    t = ds.column(target)
    if t.scale != 1.0:
        why = (f"No model for **{target}**: its values (up to {plain(max(abs(t.minimum), abs(t.maximum)))}) are "
               "too large to model; near the float limit least squares overflows.")
        return ToolResult(markdown=why, data={"file": ds.name, "target": target, "skipped": why})
    result, extra = analyse(ds, t, impute)
    result = finite(result)
    md = markdown(result, extra, ds.name, how, ds.n_rows)
    data = {**result, "file": ds.name, "target_choice": how, "features": extra["features"]}
    if extra.get("skipped"):
        data["skipped"] = md
    return ToolResult(markdown=md, data=data,
                      artifacts={ANALYSIS_JSON: json.dumps(result, indent=1, allow_nan=False).encode()})


@quiet
def charts(inp: ToolInput) -> ToolResult:
    """Histograms, category bars, a correlation heatmap and target-vs-best-predictor, as PNG bytes."""
    ds = _dataset(inp)
    target, _ = _target(inp, ds)
    artifacts: dict[str, bytes] = {}
    md: list[str] = []
    data: dict = {"file": ds.name, "target": target}
    nums = numeric_first(ds, target)
    drawn_hist = histograms(ds, nums, f"Distributions ({ds.name}, raw values)")
    if drawn_hist:
        artifacts["histograms.png"], data["histogram_columns"] = drawn_hist
        md.append("![Histograms of the numeric columns](histograms.png)")
    time = time_column(ds)
    series = series_column(ds)
    drawn_time = over_time(ds, time, nums, series) if time else None
    if drawn_time:
        artifacts["over_time.png"], data["time_columns"] = drawn_time
        data["time"], data["series"] = time.name, series.name if series else None
        md.append(f"![The numeric columns over {time.name}](over_time.png)")
    cats = {k: v for k, v in describe_categorical(ds).items() if v["n_unique"] <= 20}  # bars show it all
    if target in cats:
        cats = {target: cats[target], **cats}
    png = bars(cats, "Most frequent values")
    if png:
        artifacts["categories.png"] = png
        md.append("![Most frequent values of the categorical columns](categories.png)")
    cols, _ = correlation_columns(ds, target)
    if len(cols) >= 2:
        m = correlation_matrix(ds, cols)
        png = heatmap([c.name for c in cols], m)
        data["heatmap_columns"] = [c.name for c in cols][:MAX_HEATMAP]
        if png:
            artifacts["correlations.png"] = png
            md.append("![Correlation heatmap](correlations.png)")
        names = [c.name for c in cols]
        if target in names:
            t = names.index(target)
            others = [(abs(m[t][j]), names[j]) for j in range(len(names)) if j != t and m[t][j] is not None]
            if others:
                best = max(others)[1]
                drawn = scatter(ds, ds.column(target), ds.column(best))
                if drawn:
                    artifacts["scatter.png"] = drawn[0]
                    data.update(drawn[1])
                    md.append(f"![{target} vs {best} with a least-squares line](scatter.png)")
    if not artifacts:
        md.append(f"**{ds.name}** has no column with values to chart.")
    data["charts"] = list(artifacts)
    return ToolResult(markdown="\n\n".join(md), data=data, artifacts=artifacts)


TOOLS_HERE = {"load_data": load_data, "preprocess": preprocess, "describe": describe,
              "correlations": correlations, "regression": regression, "charts": charts}
