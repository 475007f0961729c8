"""Analysis tools over the `--data` CSV: load, clean, describe, correlate, regress, chart.

Each tool re-reads and re-cleans the file itself, so a task needs only the data path (no hand-off of
tables between workers) and every number is reproducible from the file plus these rules:
numeric missing -> median, categorical missing -> mode, outliers clipped to the 1.5*IQR fences.
"""
from __future__ import annotations

import math

from collections import Counter
from pathlib import Path

import numpy as np

from utils.errors import ToolError
from utils.tools import ToolInput, ToolResult, new_figure, png_bytes
from utils.tools.table import CATEGORICAL, Table, load_csv, require_numeric

TOP_CATEGORIES = 20


def _fmt(x: float | None, digits: int = 4) -> str:
    """`digits` significant figures with thousands separators: 12,440 rather than 1.244e+04."""
    if x is None:
        return "—"
    if x == 0 or not math.isfinite(x):
        return str(x if x else 0)
    if abs(x) >= 1e15 or abs(x) < 1e-4:
        return f"{x:.3e}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
    text = f"{round(x, decimals):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


def _md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _data_path(inp: ToolInput) -> Path:
    if inp.data_path is None:
        raise ToolError("this tool needs a CSV data file: pass --data FILE.csv")
    return Path(inp.data_path)


def _mode(values: list[str]) -> str | None:
    """Most frequent value; ties go to the alphabetically first so the result never depends on order."""
    counts = Counter(values)
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def preprocess_table(table: Table) -> tuple[Table, dict[str, dict]]:
    """Return a cleaned copy and, per column, exactly what changed.

    Fences come from the observed (non-missing) values: q1 - 1.5*IQR, q3 + 1.5*IQR; values beyond are
    clipped to the fence (winsorised) rather than dropped, so row counts stay put. A column whose IQR is 0
    (mostly one value, e.g. a 0/1 flag) is not clipped: every other value would count as an "outlier".
    """
    clean = table.copy()
    changes: dict[str, dict] = {}
    for col in clean.columns:
        vals = clean.values[col]
        present = [v for v in vals if v is not None]
        missing = len(vals) - len(present)
        if clean.types[col] == CATEGORICAL:
            fill = _mode(present)
            if fill is not None:
                clean.values[col] = [fill if v is None else v for v in vals]
            changes[col] = {"type": CATEGORICAL, "imputed": missing if fill is not None else 0, "fill": fill}
            continue
        arr = np.asarray(present, dtype=float)
        q1, q3 = (float(q) for q in np.percentile(arr, [25, 75]))
        iqr = q3 - q1
        lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
        low = high = 0
        if iqr > 0:
            low, high = int((arr < lo).sum()), int((arr > hi).sum())
            arr = np.clip(arr, lo, hi)
        median = float(np.median(arr))
        it = iter(arr.tolist())
        clean.values[col] = [median if v is None else float(next(it)) for v in vals]
        changes[col] = {"type": "numeric", "imputed": missing, "fill": median, "clipped_low": low,
                        "clipped_high": high, "lower_fence": lo, "upper_fence": hi,
                        "clipping": "skipped (IQR is 0)" if iqr == 0 else "applied"}
    return clean, changes


def _clean(inp: ToolInput) -> tuple[Table, dict[str, dict]]:
    return preprocess_table(load_csv(_data_path(inp)))


def _matrix(table: Table, cols: list[str]) -> np.ndarray:
    return np.array([table.values[c] for c in cols], dtype=float)


# ---- tools ---------------------------------------------------------------------------------------

def load_data(inp: ToolInput) -> ToolResult:
    """What is in the file, before any cleaning: columns, types, missing counts."""
    table = load_csv(_data_path(inp))
    missing = table.missing()
    rows = [[c, table.types[c], table.n_rows - missing[c], missing[c]] for c in table.columns]
    md = (f"**{table.name}**: {table.n_rows} rows, {len(table.columns)} columns "
          f"({len(table.numeric())} numeric, {len(table.categorical())} categorical).\n\n"
          + _md_table(["column", "type", "values", "missing"], rows))
    data = {"file": table.name, "rows": table.n_rows, "columns": table.columns, "types": dict(table.types),
            "missing": missing, "numeric": table.numeric(), "categorical": table.categorical()}
    return ToolResult(markdown=md, data=data)


def preprocess(inp: ToolInput) -> ToolResult:
    """Report the cleaning every later analysis tool applies, column by column."""
    table, changes = _clean(inp)
    rows = []
    for col, ch in changes.items():
        if ch["type"] == CATEGORICAL:
            rows.append([col, ch["type"], ch["imputed"], f"mode {ch['fill']!r}" if ch["imputed"] else "—",
                         "—", "—"])
        else:
            clip = (f"{ch['clipped_low']} low / {ch['clipped_high']} high"
                    if ch["clipping"] == "applied" else ch["clipping"])
            rows.append([col, ch["type"], ch["imputed"], f"median {_fmt(ch['fill'])}" if ch["imputed"] else "—",
                         clip, f"[{_fmt(ch['lower_fence'])}, {_fmt(ch['upper_fence'])}]"])
    n_imp = sum(ch["imputed"] for ch in changes.values())
    n_clip = sum(ch.get("clipped_low", 0) + ch.get("clipped_high", 0) for ch in changes.values())
    md = (f"Cleaned **{table.name}** ({table.n_rows} rows): {n_imp} missing values imputed "
          "(numeric: median, categorical: mode), "
          f"{n_clip} outliers clipped to the 1.5×IQR fences.\n\n"
          + _md_table(["column", "type", "imputed", "fill", "clipped", "fences"], rows))
    return ToolResult(markdown=md, data={"file": table.name, "rows": table.n_rows, "changes": changes,
                                         "imputed_total": n_imp, "clipped_total": n_clip})


def describe_table(table: Table) -> tuple[dict[str, dict], dict[str, dict]]:
    """Summary statistics (sample std, linear-interpolated quartiles) and category counts."""
    numeric: dict[str, dict] = {}
    for col in table.numeric():
        arr = np.asarray(table.values[col], dtype=float)
        q1, med, q3 = (float(q) for q in np.percentile(arr, [25, 50, 75]))
        numeric[col] = {"count": int(arr.size), "mean": float(arr.mean()),
                        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "min": float(arr.min()),
                        "q1": q1, "median": med, "q3": q3, "max": float(arr.max())}
    categorical: dict[str, dict] = {}
    for col in table.categorical():
        counts = sorted(Counter(table.present(col)).items(), key=lambda kv: (-kv[1], kv[0]))
        categorical[col] = {"n_unique": len(counts), "counts": dict(counts[:TOP_CATEGORIES])}
    return numeric, categorical


def describe(inp: ToolInput) -> ToolResult:
    table, _ = _clean(inp)
    numeric, categorical = describe_table(table)
    keys = ["count", "mean", "std", "min", "q1", "median", "q3", "max"]
    parts = [f"Summary of **{table.name}** after cleaning ({table.n_rows} rows)."]
    if numeric:
        parts.append(_md_table(["column"] + keys, [[c] + [_fmt(s[k]) for k in keys] for c, s in numeric.items()]))
    for col, info in categorical.items():
        shown = ", ".join(f"{k} ({v})" for k, v in list(info["counts"].items())[:10])
        more = f", … {info['n_unique'] - 10} more" if info["n_unique"] > 10 else ""
        parts.append(f"- **{col}**: {info['n_unique']} categories: {shown}{more}")
    return ToolResult(markdown="\n\n".join(parts),
                      data={"file": table.name, "rows": table.n_rows, "numeric": numeric,
                            "categorical": categorical})


def correlation_matrix(table: Table) -> tuple[list[str], list[list[float | None]]]:
    """Pearson r between numeric columns; a constant column has no correlation (None), not NaN."""
    cols = table.numeric()
    if len(cols) < 2:
        raise ToolError(f"{table.name} needs at least 2 numeric columns for correlations, "
                        f"has {len(cols)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.corrcoef(_matrix(table, cols))
    return cols, [[None if not np.isfinite(x) else float(x) for x in row] for row in m]


def correlations(inp: ToolInput) -> ToolResult:
    table, _ = _clean(inp)
    cols, m = correlation_matrix(table)
    pairs = [{"a": cols[i], "b": cols[j], "r": m[i][j]} for i in range(len(cols))
             for j in range(i + 1, len(cols)) if m[i][j] is not None]
    pairs.sort(key=lambda p: (-abs(p["r"]), p["a"], p["b"]))
    md = [f"Pearson correlations between the numeric columns of **{table.name}** (after cleaning).", "",
          _md_table([""] + cols, [[c] + [_fmt(x, 3) for x in row] for c, row in zip(cols, m)]), "",
          "Strongest pairs:"]
    md += [f"- {p['a']} ↔ {p['b']}: r = {p['r']:.3f}" for p in pairs[:5]]
    return ToolResult(markdown="\n".join(md),
                      data={"file": table.name, "columns": cols, "matrix": m, "pairs": pairs[:10]})


def fit_regression(table: Table, target: str | None = None, features: list[str] | None = None,
                   seed: int = 42, test_fraction: float = 0.2) -> dict:
    """Ordinary least squares with an intercept, scored on a held-out shuffled split.

    The split uses a fixed seed so a re-run (or a resumed run) reports the same R² and MAE.
    """
    nums = table.numeric()
    if target is None:
        if not nums:
            raise ToolError(f"{table.name} has no numeric column to predict")
        target = nums[-1]
    require_numeric(table, target)
    feats = list(features) if features else [c for c in nums if c != target]
    for f in feats:
        require_numeric(table, f)
    if not feats or target in feats:
        raise ToolError(f"regression needs at least one numeric feature other than the target {target!r}")
    n = table.n_rows
    n_test = max(1, int(round(n * test_fraction)))
    n_train = n - n_test
    if n_train < len(feats) + 1:
        raise ToolError(f"too few rows ({n}) to fit {len(feats)} features with a {test_fraction:.0%} test split")
    order = np.random.default_rng(seed).permutation(n)
    train, test = order[:n_train], order[n_train:]
    X = np.column_stack([np.ones(n), _matrix(table, feats).T])
    y = np.asarray(table.values[target], dtype=float)
    beta, *_ = np.linalg.lstsq(X[train], y[train], rcond=None)

    def score(idx: np.ndarray) -> tuple[float | None, float]:
        pred = X[idx] @ beta
        ss_res = float(((y[idx] - pred) ** 2).sum())
        ss_tot = float(((y[idx] - y[idx].mean()) ** 2).sum())
        return (1 - ss_res / ss_tot if ss_tot > 0 else None), float(np.abs(y[idx] - pred).mean())

    r2_test, mae_test = score(test)
    r2_train, _ = score(train)
    return {"target": target, "features": feats, "intercept": float(beta[0]),
            "coefficients": {f: float(b) for f, b in zip(feats, beta[1:])}, "r2_test": r2_test,
            "mae_test": mae_test, "r2_train": r2_train, "n_train": int(n_train), "n_test": int(n_test),
            "seed": int(seed)}


def regression(inp: ToolInput) -> ToolResult:
    table, _ = _clean(inp)
    res = fit_regression(table, inp.params.get("target"), inp.params.get("features"),
                         seed=int(inp.params.get("seed", 42)))
    terms = " ".join(f"{'−' if b < 0 else '+'} {_fmt(abs(b))}·{f}" for f, b in res["coefficients"].items())
    md = [f"Linear regression of **{res['target']}** on {', '.join(res['features'])} "
          f"({res['n_train']} training rows, {res['n_test']} test rows, seed {res['seed']}).", "",
          f"`{res['target']} ≈ {_fmt(res['intercept'])} {terms}`", "",
          _md_table(["metric", "value"], [["test R²", _fmt(res["r2_test"])], ["test MAE", _fmt(res["mae_test"])],
                                         ["train R²", _fmt(res["r2_train"])]])]
    return ToolResult(markdown="\n".join(md), data={"file": table.name, **res})


def charts(inp: ToolInput) -> ToolResult:
    """Histograms, a correlation heatmap and target-vs-best-predictor scatter, as PNG bytes."""
    table, _ = _clean(inp)
    cols = table.numeric()
    if not cols:
        raise ToolError(f"{table.name} has no numeric columns to chart")
    artifacts: dict[str, bytes] = {}
    md: list[str] = []
    ncols = min(3, len(cols))
    nrows = (len(cols) + ncols - 1) // ncols
    fig = new_figure(4.0 * ncols, 3.0 * nrows)
    for i, col in enumerate(cols):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.hist(table.values[col], bins=20, color="#4C72B0", edgecolor="white")
        ax.set_title(col)
    fig.suptitle(f"Distributions ({table.name}, after cleaning)")
    fig.tight_layout()
    artifacts["histograms.png"] = png_bytes(fig)
    md.append("![Histograms of the numeric columns](histograms.png)")
    data: dict = {"file": table.name, "charts": ["histograms.png"]}
    if len(cols) >= 2:
        names, m = correlation_matrix(table)
        arr = np.array([[np.nan if x is None else x for x in row] for row in m])
        fig = new_figure(1.2 * len(names) + 3, 1.0 * len(names) + 2)
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(arr, cmap="coolwarm", vmin=-1, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        for i in range(len(names)):
            for j in range(len(names)):
                if np.isfinite(arr[i, j]):
                    ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=8)
        fig.colorbar(im, ax=ax)
        ax.set_title("Pearson correlation")
        fig.tight_layout()
        artifacts["correlations.png"] = png_bytes(fig)
        md.append("![Correlation heatmap](correlations.png)")
        target = inp.params.get("target") or cols[-1]
        require_numeric(table, target)
        t = names.index(target)
        others = [(abs(m[t][j]), names[j]) for j in range(len(names)) if j != t and m[t][j] is not None]
        if others:
            best = max(others, key=lambda p: (p[0], p[1]))[1]
            x, y = np.asarray(table.values[best]), np.asarray(table.values[target])
            slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
            fig = new_figure(7, 5)
            ax = fig.add_subplot(1, 1, 1)
            ax.scatter(x, y, s=12, alpha=0.7)
            xs = np.linspace(x.min(), x.max(), 50)
            ax.plot(xs, slope * xs + intercept, color="#C44E52", label=f"fit: y = {slope:.3g}x + {intercept:.3g}")
            ax.set_xlabel(best)
            ax.set_ylabel(target)
            ax.legend()
            ax.set_title(f"{target} vs {best}")
            fig.tight_layout()
            artifacts["scatter.png"] = png_bytes(fig)
            md.append(f"![{target} vs {best} with a least-squares line](scatter.png)")
            data.update(target=target, best_predictor=best, slope=slope, intercept=intercept)
    data["charts"] = list(artifacts)
    return ToolResult(markdown="\n\n".join(md), data=data, artifacts=artifacts)


TOOLS_HERE = {"load_data": load_data, "preprocess": preprocess, "describe": describe,
              "correlations": correlations, "regression": regression, "charts": charts}
