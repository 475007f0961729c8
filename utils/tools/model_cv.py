"""How well the target can be predicted: three models under the same k-fold cross-validation.

Why separate from `modelling`: inference (coefficients, CIs) uses every usable row; predictive
quality must be measured on rows a model did not see. So the baseline (the mean, or the most
frequent class), the linear or logistic model and gradient-boosted trees (`HistGradientBoosting*`)
are scored on the same FOLDS folds (fixed seed), each with its mean and SD across folds, and the
best one's permutation importance is measured on a held-out fold. scikit-learn is imported here
only, when a model is scored.

Above CV_ROWS usable rows the comparison runs on a uniform random sample of CV_ROWS of them (seed
SEED, so the same file gives the same sample; each model's `rows` says how many): a cross-validated
error is an average whose precision barely improves past some 10,000 rows, while gradient boosting
and the permutation shuffles cost time in proportion to the rows (on 100,000 rows the comparison
took 6x the time of everything else in the analysis). The coefficients, CIs and p-values are not
affected: they are fitted on every usable row in `modelling`.
"""
from __future__ import annotations

from typing import Any

FOLDS = 5
SEED = 0
REPEATS = 5              # permutation-importance shuffles per feature
CV_ROWS = 20_000         # above this many rows the comparison uses a seeded uniform sample of this many
IMPORTANCE_ROWS = 5_000   # held-out rows the importance is measured on, at most
EARLY_STOP_ROWS = 1_000  # from here boosting stops when 10 % held-out rows stop improving (not 100 rounds)
BASELINE, LINEAR, TREES = "baseline", "linear", "gradient boosting"


def cross_validate(X: Any, y: Any, groups: dict[str, list[int]], classes: list[str] | None) -> dict:
    """{model: {metric, mean, sd, folds, rows}} for the three models (rows: how many rows the folds
    split, at most CV_ROWS); the best (not the baseline) also gets
    `permutation_importance` {feature: mean drop in the score}. X has the intercept column first
    (left out here); y is numbers for a regression, class codes for a classification. Empty when
    there are too few rows for FOLDS folds."""
    import numpy as np
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, dtype=float)[:, 1:]
    y = np.asarray(y)
    if len(y) > CV_ROWS:
        keep = np.sort(np.random.default_rng(SEED).choice(len(y), CV_ROWS, replace=False))
        X, y = X[keep], y[keep]
    n = len(y)
    if n < 2 * FOLDS or X.shape[1] == 0:
        return {}
    if classes is None:
        y = np.asarray(y, dtype=float)
        models = {BASELINE: DummyRegressor(strategy="mean"), LINEAR: LinearRegression(),
                  TREES: HistGradientBoostingRegressor(early_stopping=n >= EARLY_STOP_ROWS, random_state=SEED)}
        metric, better = "mean absolute error", min
        folds = list(KFold(FOLDS, shuffle=True, random_state=SEED).split(X))
    else:
        models = {BASELINE: DummyClassifier(strategy="most_frequent"),
                  LINEAR: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
                  TREES: HistGradientBoostingClassifier(early_stopping=n >= EARLY_STOP_ROWS, random_state=SEED)}
        metric, better = "accuracy", max
        smallest = np.bincount(y).min()
        splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED) if smallest >= FOLDS else \
            KFold(FOLDS, shuffle=True, random_state=SEED)
        folds = list(splitter.split(X, y))
    out: dict[str, dict] = {}
    fitted_first = {}
    for name, model in models.items():
        scores = []
        for k, (train, test) in enumerate(folds):
            if classes is not None and len(np.unique(y[train])) < 2:
                continue
            m = _clone(model).fit(X[train], y[train])
            scores.append(_score(m, X[test], y[test], classes is None))
            if k == 0:
                fitted_first[name] = m
        if scores:
            out[name] = {"metric": metric, "mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1))
                         if len(scores) > 1 else 0.0, "folds": len(scores), "rows": n}
    contenders = [m for m in (LINEAR, TREES) if m in out]
    if contenders:
        best = better(contenders, key=lambda m: out[m]["mean"])
        if best in fitted_first:
            test = folds[0][1][:IMPORTANCE_ROWS]
            out[best]["permutation_importance"] = _importance(fitted_first[best], X[test], y[test], groups,
                                                              classes is None)
    return out


def _clone(model: Any) -> Any:
    from sklearn.base import clone

    return clone(model)


def _score(model: Any, X: Any, y: Any, regression: bool) -> float:
    import numpy as np

    pred = model.predict(X)
    return float(np.abs(y - pred).mean()) if regression else float((pred == y).mean())


def _importance(model: Any, X: Any, y: Any, groups: dict[str, list[int]], regression: bool) -> dict[str, float]:
    """How much worse the held-out score gets when one feature's values are shuffled (all of a
    category's 0/1 columns together), averaged over REPEATS shuffles: a rise in error for a
    regression, a fall in accuracy for a classification; larger means the model leans on it more."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    base = _score(model, X, y, regression)
    out = {}
    for name, idx in groups.items():
        cols = [j - 1 for j in idx]   # groups index X with its intercept column
        drops = []
        for _ in range(REPEATS):
            Xp = X.copy()
            Xp[:, cols] = X[rng.permutation(len(X))][:, cols]
            s = _score(model, Xp, y, regression)
            drops.append(s - base if regression else base - s)
        out[name] = float(np.mean(drops))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
