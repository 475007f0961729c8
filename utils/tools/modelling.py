"""The model of the target, fitted the way a statistician would: on the data as it is.

Why these rules: a coefficient, its confidence interval and its p-value must be what R's `lm`/`glm`
or statsmodels give on the same file, so nothing is clipped, winsorised or filled in by default.
Rows with a missing target are left out and counted; rows missing a feature value are left out too
(complete cases), also counted, unless the user asks for `--impute median`, which fills a numeric
feature with its median plus a 0/1 missing-indicator column (a missing category becomes its own
level). Inference uses every usable row, or a stated uniform sample of MODEL_ROWS rows above that
(a fixed hash of each row picks it, so the same file gives the same sample).

The model follows the target: a number gets OLS, two classes (0/1, yes/no, true/false, two strings)
a logistic regression of the probability of the later label in sorted order (1, yes, True), 3-20
classes a multinomial logit against the first label. Features are the usable columns (numeric, and
categories with at most MAX_LEVELS values, the first sorted level the reference, named
`column[T.level]`), at most MAX_FEATURES of them (the strongest with the target when there are
more). A feature is dropped as leakage only when it is an exact linear function of the target (a
category: in one-to-one correspondence with it); collinearity is reported (condition number, VIF),
never "fixed" by dropping a column. The result is the `analysis.json` dict (see `fit_model`).
"""
from __future__ import annotations

import math
from typing import Any

from utils.tools.dataset import BOOLEAN, CATEGORICAL, NUMERIC, Column, Dataset, connection, q
from utils.tools.stats import MODEL_ROWS, _scaled, sample

MAX_FEATURES = 20
MAX_LEVELS = 10
MAX_CLASSES = 20
EXACT = 1e-10          # 1 - r² below this: a feature is an exact linear function of the target
VIF_WARN = 10.0        # a feature whose VIF exceeds this is named in the collinearity warning
COND_WARN = 1000.0     # a condition number above this (standardised features) is a collinearity warning
IMPUTE = ("median",)   # the --impute choices


def choose_features(ds: Dataset, target: Column) -> tuple[list[Column], dict[str, str]]:
    """(features in file order, {left-out column: why}). Ranked by strength with the target only
    when more than MAX_FEATURES qualify."""
    excluded: dict[str, str] = {c.name: f"not used: {c.note or c.kind}" for c in ds.columns
                                if not c.usable and c.name != target.name}
    cands = []
    for c in ds.analysed():
        if c.name == target.name:
            continue
        if c.kind == NUMERIC and c.scale != 1.0:
            excluded[c.name] = "values too large to fit (beyond 1e100)"
        elif c.kind in (CATEGORICAL, BOOLEAN) and c.distinct > MAX_LEVELS:
            excluded[c.name] = f"{c.distinct} categories (at most {MAX_LEVELS} for a model feature)"
        else:
            cands.append(c)
    if len(cands) > MAX_FEATURES:
        strength = _strength(ds, target, [c for c in cands if c.kind == NUMERIC])
        ranked = sorted(cands, key=lambda c: -strength.get(c.name, 0.0))
        keep = {c.name for c in ranked[:MAX_FEATURES]}
        for c in cands:
            if c.name not in keep:
                excluded[c.name] = f"beyond the {MAX_FEATURES}-feature cap (weaker with the target)"
        cands = [c for c in cands if c.name in keep]
    return cands, excluded


def _strength(ds: Dataset, target: Column, nums: list[Column]) -> dict[str, float]:
    """|r| with a numeric target, η² with a categorical one, on the raw rows that have both values
    (categories rank after numbers: 0)."""
    if not nums:
        return {}
    cur, t = connection(), q(target.name)
    if target.kind == NUMERIC:
        row = cur.execute("SELECT " + ", ".join(f"corr({_scaled(target)}, {_scaled(c)})" for c in nums)
                          + f" FROM {ds.table}").fetchone()
        return {c.name: abs(r) for c, r in zip(nums, row) if r is not None and math.isfinite(r)}
    out = {}
    for c in nums:
        x = _scaled(c)
        total, between = cur.execute(
            f"WITH g AS (SELECT count({x}) AS n, avg({x}) AS m FROM {ds.table} WHERE {t} IS NOT NULL GROUP BY {t}), "
            f"a AS (SELECT var_pop({x}) AS v, avg({x}) AS m FROM {ds.table} WHERE {t} IS NOT NULL) "
            f"SELECT a.v, sum(g.n * (g.m - a.m) ^ 2) / sum(g.n) FROM g, a GROUP BY a.v").fetchone() or (None, None)
        if total and between is not None and total > 0:
            out[c.name] = min(float(between) / float(total), 1.0)
    return out


# ---- the model's rows ------------------------------------------------------------------------------

def model_rows(ds: Dataset, target: Column, features: list[Column], impute: str | None) -> tuple[dict, dict]:
    """({name: numpy array} of the rows the model uses, {why rows were left out: how many}).
    Missing target: left out. Missing feature value: left out (complete cases), or with `impute`
    kept, the value left missing here for `design` to fill."""
    cur, t = connection(), q(target.name)
    need = [t] + ([] if impute else [q(f.name) for f in features])
    usable_where = " AND ".join(f"{n} IS NOT NULL" for n in need)
    no_target, usable = cur.execute(f"SELECT count_if({t} IS NULL), count_if({usable_where}) FROM {ds.table}").fetchone()
    dropped = {"missing target": int(no_target)}
    if not impute:
        dropped["missing feature values"] = ds.n_rows - int(no_target) - int(usable)
    if usable > MODEL_ROWS:
        dropped[f"outside the uniform sample of {MODEL_ROWS:,} rows"] = int(usable) - MODEL_ROWS
    data = sample(ds, [target.name] + [f.name for f in features], MODEL_ROWS, where=usable_where)
    return data, dropped


def design(data: dict, features: list[Column], impute: str | None) -> tuple[Any, list[str], dict[str, list[int]], dict]:
    """(X with an `Intercept` column first, term names, {feature: its columns in X}, {feature: values imputed}).
    Numbers as they are; a category as 0/1 columns `name[T.level]` against its first sorted level."""
    import numpy as np

    n = len(next(iter(data.values()))) if data else 0
    cols, terms, groups, imputed = [np.ones(n)], ["Intercept"], {}, {}
    for f in features:
        start = len(cols)
        if f.kind == NUMERIC:
            v = numbers(data[f.name])
            miss = np.isnan(v)
            if impute and miss.any():
                v = np.where(miss, np.median(v[~miss]) if (~miss).any() else 0.0, v)
                cols += [v, miss.astype(float)]
                terms += [f.name, f"{f.name}_missing"]
                imputed[f.name] = int(miss.sum())
            else:
                cols.append(v)
                terms.append(f.name)
        else:
            values = labels(data[f.name])
            if impute and (values == "").any():
                imputed[f.name] = int((values == "").sum())
                values = np.where(values == "", "(missing)", values)
            for lv in sorted(set(values.tolist()))[1:]:
                cols.append((values == lv).astype(float))
                terms.append(f"{f.name}[T.{lv}]")
        groups[f.name] = list(range(start, len(cols)))
    return np.column_stack(cols), terms, groups, imputed


def labels(values: Any) -> Any:
    """A column's values as the file's labels (strings); a missing value becomes ''."""
    import numpy as np

    mask = np.ma.getmaskarray(values)
    arr = np.ma.getdata(values)
    return np.array(["" if m or v is None or (isinstance(v, float) and math.isnan(v)) else _label(v)
                     for v, m in zip(arr.tolist(), mask.tolist())], dtype=object)


def numbers(values: Any) -> Any:
    """A numeric column as floats, a missing value as NaN."""
    import numpy as np

    return np.ma.filled(np.ma.asarray(values).astype(float), np.nan)


def _label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# ---- the fit -------------------------------------------------------------------------------------

def target_classes(y: Any, target: Column) -> list[str] | None:
    """The target's classes (sorted labels) when it is modelled as classes, None for OLS."""
    import numpy as np

    if target.kind == NUMERIC:
        v = np.unique(numbers(y))
        return [_label(x) for x in v] if len(v) == 2 else None
    return sorted(set(labels(y).tolist()))


def leakage(X: Any, terms: list[str], groups: dict[str, list[int]], y: Any, classes: list[str] | None) -> dict[str, str]:
    """{feature: why} for the features that are an exact function of the target (see EXACT)."""
    import numpy as np

    out = {}
    if classes is None:
        yv = numbers(y)
        for name, idx in groups.items():
            for j in idx:
                x = X[:, j]
                if np.ptp(x) > 0 and np.ptp(yv) > 0 and 1 - np.corrcoef(x, yv)[0, 1] ** 2 < EXACT:
                    out[name] = f"an exact linear function of the target ({terms[j]})"
        return out
    yl = labels(y)
    for name, idx in groups.items():
        block = X[:, idx]
        keys = [tuple(r) for r in block]
        pairs = set(zip(keys, yl.tolist()))
        if len(pairs) == len(set(keys)) == len(set(yl.tolist())):
            out[name] = "a copy of the target (one-to-one with its classes)"
    return out


def fit_model(X: Any, y: Any, terms: list[str], classes: list[str] | None) -> dict:
    """statsmodels' fit on every row given: the analysis.json fields method, n, coefficients, r2,
    adj_r2, residual_sd, condition_number and vif (each term's variance inflation factor, None when
    infinite), plus `notes` for the document."""
    import numpy as np
    from statsmodels.discrete.discrete_model import Logit, MNLogit
    from statsmodels.regression.linear_model import OLS

    out: dict[str, Any] = {"n": int(len(y)), "r2": None, "adj_r2": None, "residual_sd": None,
                           "condition_number": _condition(X), "vif": vif(X, terms), "notes": []}
    if np.linalg.matrix_rank(X) < X.shape[1]:
        out["notes"].append("the features are exactly collinear: some coefficients are not identifiable "
                            "(the minimum-norm solution is shown)")
    if classes is None:
        res = OLS(numbers(y), X).fit()
        out.update(method="ols", coefficients=_table(terms, res.params, res.bse, res.conf_int(0.05), res.pvalues),
                   r2=float(res.rsquared), adj_r2=float(res.rsquared_adj), residual_sd=float(math.sqrt(res.scale)))
        return out
    code = {c: i for i, c in enumerate(classes)}
    yc = np.array([code[v] for v in labels(y).tolist()])
    binary = len(classes) == 2
    out["method"] = "logit" if binary else "mnlogit"
    try:
        res = (Logit(yc, X) if binary else MNLogit(yc, X)).fit(disp=0, maxiter=500)
        params = np.asarray(res.params)
        if not np.all(np.isfinite(params)) or not np.all(np.isfinite(np.asarray(res.bse))):
            raise ValueError("non-finite estimates")
    except Exception as exc:  # perfect separation, a singular Hessian: statsmodels raises several kinds
        out["coefficients"] = {}
        out["notes"].append(f"the {out['method']} fit has no finite estimates ({_why(exc)}); a class is perfectly "
                            "predicted by the features, so no coefficients are reported")
        return out
    if not res.mle_retvals.get("converged", True):
        out["notes"].append("the maximum-likelihood fit did not converge in 500 iterations: a class is (almost) "
                            "perfectly separated by the features, so no finite estimate exists and the coefficients "
                            "and standard errors below are where the optimiser stopped, not estimates to interpret")
    out["r2"] = float(res.prsquared)  # McFadden's pseudo-R²
    if binary:
        out["coefficients"] = _table(terms, res.params, res.bse, res.conf_int(0.05), res.pvalues)
    else:
        ci = np.asarray(res.conf_int(0.05)).reshape(len(classes) - 1, len(terms), 2)
        out["coefficients"] = {cls: _table(terms, params[:, k], np.asarray(res.bse)[:, k], ci[k],
                                           np.asarray(res.pvalues)[:, k])
                               for k, cls in enumerate(classes[1:])}
    return out


def _why(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


def _table(terms: list[str], est: Any, se: Any, ci: Any, p: Any) -> dict[str, dict]:
    import numpy as np

    est, se, ci, p = (np.asarray(a, dtype=float) for a in (est, se, ci, p))
    return {t: {"estimate": float(est[j]), "std_err": float(se[j]), "ci_low": float(ci[j][0]),
                "ci_high": float(ci[j][1]), "p_value": float(p[j])} for j, t in enumerate(terms)}


def _condition(X: Any) -> float | None:
    """The design matrix's 2-norm condition number (intercept included), as statsmodels reports it."""
    import numpy as np

    c = float(np.linalg.cond(X)) if X.size else None
    return c if c is not None and math.isfinite(c) else None


def vif(X: Any, terms: list[str]) -> dict[str, float | None]:
    """Variance inflation factor of each non-intercept term: 1 / (1 - R²) of it on the others (with the
    intercept). Computed from the features' correlation matrix R (the diagonal of R⁻¹; near-singular,
    one p×p least-squares solve per term, R² = r'R⁻¹r) instead of one least-squares fit on all rows
    per term: 180 dummy columns on 100,000 rows took about 13 s per term that way, 40 minutes in all;
    this takes one pass over the rows."""
    import numpy as np

    out: dict[str, float | None] = {}
    if X.shape[1] <= 2:
        return {t: 1.0 for t in terms[1:]}
    Z = X[:, 1:] - X[:, 1:].mean(axis=0)
    G = Z.T @ Z
    sd = np.sqrt(np.clip(np.diag(G), 0, None))
    live = sd > 0
    R = np.where(np.outer(live, live), G / np.where(np.outer(live, live), np.outer(sd, sd), 1.0), 0.0)
    if live.all() and np.linalg.cond(R) < 1e10:   # well-posed: the VIFs are the diagonal of R⁻¹
        return {t: float(v) for t, v in zip(terms[1:], np.diag(np.linalg.inv(R)))}
    for j in range(R.shape[0]):   # singular or near it: each term's regression, exact to the rounding
        if not live[j]:
            out[terms[j + 1]] = None   # constant: no variance to explain
            continue
        others = [k for k in range(R.shape[0]) if k != j and live[k]]
        beta, *_ = np.linalg.lstsq(R[np.ix_(others, others)], R[others, j], rcond=None)
        r2 = float(R[j, others] @ beta)
        out[terms[j + 1]] = 1 / (1 - r2) if r2 < 1 else None   # None: exactly collinear (infinite)
    return out
