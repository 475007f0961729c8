"""A model of the target with statsmodels: OLS for a numeric target, logistic regression for a category.

Why statsmodels: it gives what a reader needs to judge a fit (coefficients with confidence intervals
and p-values, a multinomial logit) from a maintained library instead of hand-written algebra. The
model is fitted on at most MODEL_ROWS rows (a fixed hash-ordered sample), so a 10-million-row file
costs no more memory than a 100,000-row one; every fifth row of that sample is held out for the score.

Features are chosen, not assumed: usable numeric columns (ranked by |r| with the target, or by the
correlation ratio η² for a categorical target) and categorical columns with at most MAX_LEVELS values,
at most MAX_FEATURES in all. Leakage guards leave out ID-like columns (never usable), near-copies of the
target (|r| or η² ≥ COPY_THRESHOLD), categories in one-to-one correspondence with the target, and
columns whose values are too large to fit.
"""
from __future__ import annotations

import math
from typing import Any

from utils.tools.dataset import BOOLEAN, CATEGORICAL, NUMERIC, Column, Dataset, connection, q
from utils.tools.stats import MODEL_ROWS, _scaled, clean_view, sample, with_target

MAX_FEATURES = 20
MAX_LEVELS = 10
COPY_THRESHOLD = 0.995
HOLDOUT_EVERY = 5          # every 5th sampled row is held out: a 20 % test set


def choose_features(ds: Dataset, target: Column) -> tuple[list[Column], dict[str, str], dict[str, float]]:
    """(features, {excluded column: why}, {feature: strength with the target})."""
    excluded: dict[str, str] = {c.name: f"not used: {c.note or c.kind}" for c in ds.columns
                                if not c.usable and c.name != target.name}
    cands = [c for c in ds.analysed() if c.name != target.name]
    nums = [c for c in cands if c.kind == NUMERIC]
    cats = [c for c in cands if c.kind in (CATEGORICAL, BOOLEAN)]
    for c in nums:
        if c.scale != 1.0:
            excluded[c.name] = "values too large to fit (beyond 1e100)"
    nums = [c for c in nums if c.scale == 1.0]
    strength = (with_target(ds, target, nums) if target.kind == NUMERIC else _eta_squared(ds, target, nums))
    chosen_nums = []
    for c in nums:
        s = strength.get(c.name)
        if s is None:
            excluded[c.name] = "no variation after cleaning"
        elif abs(s) >= COPY_THRESHOLD:
            excluded[c.name] = f"near-copy of the target ({'r' if target.kind == NUMERIC else 'η²'} = {s:.3f})"
        else:
            chosen_nums.append(c)
    chosen_cats = []
    for c in cats:
        if c.distinct > MAX_LEVELS:
            excluded[c.name] = f"{c.distinct} categories (at most {MAX_LEVELS} for a model feature)"
        elif target.kind != NUMERIC and _one_to_one(ds, target, c):
            excluded[c.name] = "copy of the target (one-to-one with its values)"
        else:
            chosen_cats.append(c)
    chosen_nums.sort(key=lambda c: -abs(strength[c.name]))
    features = (chosen_nums + chosen_cats)[:MAX_FEATURES]
    for c in chosen_nums + chosen_cats:
        if c not in features:
            excluded[c.name] = f"beyond the {MAX_FEATURES}-feature cap"
    return features, excluded, {k: float(v) for k, v in strength.items() if v is not None}


def _eta_squared(ds: Dataset, target: Column, nums: list[Column]) -> dict[str, float | None]:
    """Share of each numeric column's variance explained by the target's classes (0..1), one scan."""
    if not nums:
        return {}
    view, cur = clean_view(ds), connection()
    parts = "count(*), " + ", ".join(f"avg({_scaled(c)})" for c in nums)
    groups = cur.execute(f"SELECT {parts} FROM {view} GROUP BY {q(target.name)}").fetchall()
    totals = cur.execute("SELECT count(*), " + ", ".join(f"avg({_scaled(c)}), var_pop({_scaled(c)})" for c in nums)
                         + f" FROM {view}").fetchone()
    n = totals[0]
    out: dict[str, float | None] = {}
    for i, c in enumerate(nums):
        mean, var = totals[1 + 2 * i], totals[2 + 2 * i]
        if not var or not math.isfinite(var) or var <= 0:
            out[c.name] = None
            continue
        between = sum(g[0] * (g[1 + i] - mean) ** 2 for g in groups if g[1 + i] is not None) / n
        out[c.name] = min(between / var, 1.0)
    return out


def _one_to_one(ds: Dataset, target: Column, c: Column) -> bool:
    view = clean_view(ds)
    pairs, a, b = connection().execute(
        f"SELECT count(DISTINCT ({q(c.name)}, {q(target.name)})), count(DISTINCT {q(c.name)}), "
        f"count(DISTINCT {q(target.name)}) FROM {view}").fetchone()
    return pairs == a == b


def design(ds: Dataset, target: Column, features: list[Column]) -> tuple[Any, Any, list[str]]:
    """(X without constant, y, column labels) from the sample; categories become 0/1 columns
    (the most frequent level is the baseline)."""
    import numpy as np

    data = sample(ds, [target.name] + [f.name for f in features], MODEL_ROWS)
    cols, labels = [], []
    for f in features:
        v = data[f.name]
        if f.kind == NUMERIC:
            cols.append(np.asarray(v, dtype=float))
            labels.append(f.name)
            continue
        values = np.asarray(v).astype(str)
        levels, counts = np.unique(values, return_counts=True)
        order = [lv for _, lv in sorted(zip(-counts, levels))]
        for lv in order[1:]:
            cols.append((values == lv).astype(float))
            labels.append(f"{f.name}={lv}")
    n = len(data[target.name])
    X = np.column_stack(cols) if cols else np.empty((n, 0))
    return X, np.asarray(data[target.name]), labels


def _split(n: int) -> tuple[Any, Any]:
    import numpy as np

    idx = np.arange(n)
    test = idx % HOLDOUT_EVERY == 0
    return ~test, test


def fit_regression(X: Any, y: Any, labels: list[str]) -> dict:
    """OLS on the training rows; 95 % confidence intervals; R² and MAE on the held-out rows."""
    import numpy as np
    import statsmodels.api as sm

    y = np.asarray(y, dtype=float)
    train, test = _split(len(y))
    keep = [j for j in range(X.shape[1]) if np.ptp(X[train, j]) > 0]
    X, labels = X[:, keep], [labels[j] for j in keep]
    res = sm.OLS(y[train], sm.add_constant(X[train], has_constant="add")).fit()
    ci = res.conf_int(0.05)
    pred = sm.add_constant(X[test], has_constant="add") @ res.params
    ss_tot = float(((y[test] - y[test].mean()) ** 2).sum())
    r2_test = 1 - float(((y[test] - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else None
    return {"kind": "regression", "features": labels, "intercept": float(res.params[0]),
            "coefficients": {f: float(b) for f, b in zip(labels, res.params[1:])},
            "ci95": {f: [float(lo), float(hi)] for f, (lo, hi) in zip(labels, ci[1:])},
            "p_values": {f: float(p) for f, p in zip(labels, res.pvalues[1:])},
            "intercept_ci95": [float(ci[0][0]), float(ci[0][1])],
            "r2_test": r2_test, "mae_test": float(np.abs(y[test] - pred).mean()), "r2_train": float(res.rsquared),
            "n_train": int(train.sum()), "n_test": int(test.sum())}


def fit_classifier(X: Any, y: Any, labels: list[str]) -> dict:
    """Multinomial logit (binary is the 2-class case) on standardised features; accuracy and a confusion
    matrix on the held-out rows. A fit the plain optimiser cannot finish (perfect separation, a singular
    matrix) is refitted with an L1 penalty rather than failing."""
    import numpy as np
    import statsmodels.api as sm

    y = np.asarray(y).astype(str)
    train, test = _split(len(y))
    keep = [j for j in range(X.shape[1]) if np.ptp(X[train, j]) > 0]
    X, labels = X[:, keep], [labels[j] for j in keep]
    classes, counts = np.unique(y[train], return_counts=True)
    classes = [c for _, c in sorted(zip(-counts, classes))]
    code = {c: i for i, c in enumerate(classes)}
    mu, sd = X[train].mean(axis=0), X[train].std(axis=0)
    sd[sd == 0] = 1.0
    Z = sm.add_constant((X - mu) / sd, has_constant="add")
    yc = np.array([code.get(v, -1) for v in y])
    method = "maximum likelihood"
    try:
        res = sm.MNLogit(yc[train], Z[train]).fit(disp=0, maxiter=200)
        if not np.all(np.isfinite(res.params)):
            raise ValueError("non-finite coefficients")
    except Exception:  # separation or singular Hessian: statsmodels raises several kinds
        res = sm.MNLogit(yc[train], Z[train]).fit_regularized(method="l1", alpha=1.0, disp=0)
        method = "L1-penalised (the plain fit did not converge)"
    pred = np.asarray(res.predict(Z[test])).argmax(axis=1)
    actual = yc[test]
    k = len(classes)
    matrix = [[int(((actual == i) & (pred == j)).sum()) for j in range(k)] for i in range(k)]
    n_test = int(test.sum())
    accuracy = float((pred == actual).mean()) if n_test else None
    baseline = float((actual == 0).mean()) if n_test else None
    return {"kind": "classification", "features": labels, "classes": classes, "confusion": matrix,
            "accuracy_test": accuracy, "baseline_accuracy": baseline, "method": method,
            "n_train": int(train.sum()), "n_test": n_test}
