"""The modeller's result: the `analysis.json` dict, and the document's model section written from it.

Why one dict: the run folder's `analysis.json` is the machine-readable result, and every figure in
the model section of `output.md` is read from the same dict (odds ratios are exp() of its logit
coefficients and CIs), so the file and the document cannot disagree.
"""
from __future__ import annotations

import math
from typing import Any

from utils.tools.data_charts import plain
from utils.tools.dataset import Column, Dataset
from utils.tools.model_cv import BASELINE, cross_validate
from utils.tools.modelling import (COND_WARN, MAX_CLASSES, VIF_WARN, choose_features, design, fit_model, labels,
                                   leakage, model_rows, numbers, target_classes)
from utils.tools.stats import column_summary

KEYS = ("target", "method", "n", "dropped", "columns", "coefficients", "r2", "adj_r2", "residual_sd",
        "condition_number", "vif", "cv")
METHODS = {"ols": "ordinary least squares", "logit": "logistic regression (logit)",
           "mnlogit": "multinomial logistic regression (multinomial logit)"}


def analyse(ds: Dataset, target: Column, impute: str | None) -> tuple[dict, dict]:
    """(analysis.json, notes for the document: skipped, features, classes, notes, impute).
    One BLAS/OpenMP thread throughout: tools run side by side in worker threads, and on a busy machine
    a thread pool per fit cost 9x (least squares) to 30x (gradient boosting) the single-thread time.
    scikit-learn is imported first: threadpoolctl limits only the runtimes already loaded, and
    scikit-learn brings its own OpenMP (libgomp); limited before it loaded, gradient boosting ran two
    spinning threads on two busy cores (a 10 MB file took 131 s instead of about 10 s)."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the limit must reach)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _analyse(ds, target, impute)


def _analyse(ds: Dataset, target: Column, impute: str | None) -> tuple[dict, dict]:
    features, excluded = choose_features(ds, target)
    result: dict[str, Any] = {"target": target.name, "method": None, "n": 0,
                              "dropped": {"rows": {}, "columns": excluded}, "columns": column_summary(ds),
                              "coefficients": {}, "r2": None, "adj_r2": None, "residual_sd": None,
                              "condition_number": None, "vif": {}, "cv": {}}
    extra: dict[str, Any] = {"features": [], "impute": impute}
    if not features:
        extra["skipped"] = "no other column can serve as a feature"
        return result, extra
    data, dropped_rows = model_rows(ds, target, features, impute)
    result["dropped"]["rows"] = dropped_rows
    y = data[target.name]
    classes = target_classes(y, target)
    if classes is not None and not 2 <= len(classes) <= MAX_CLASSES:
        extra["skipped"] = f"the target has {len(classes)} classes in the model's rows (2 to {MAX_CLASSES} can be modelled)"
        return result, extra
    X, terms, groups, imputed = design(data, features, impute)
    leaks = leakage(X, terms, groups, y, classes)
    constant = [f.name for f in features if f.name not in leaks and all(_constant(X[:, j]) for j in groups[f.name])]
    gone = set(leaks) | set(constant)
    result["dropped"]["columns"].update({k: f"leakage: {v}" for k, v in leaks.items()})
    result["dropped"]["columns"].update({k: "constant in the model's rows" for k in constant})
    if gone:
        features = [f for f in features if f.name not in gone]
        X, terms, groups, imputed = design(data, features, impute)
    if impute:
        result["dropped"]["imputed"] = {k: v for k, v in imputed.items() if v}
    n_params = X.shape[1] * (len(classes) - 1 if classes else 1)
    if not features or len(y) <= X.shape[1] or len(y) < 3:
        extra["skipped"] = (f"{len(y)} usable rows are too few for {X.shape[1]} terms" if features
                            else "every candidate feature was left out")
        result["n"] = int(len(y))
        return result, extra
    fit = fit_model(X, y, terms, classes)
    extra.update(features=[f.name for f in features], classes=classes, notes=fit.pop("notes"), n_params=n_params)
    result.update(fit)
    yc = numbers(y) if classes is None else _codes(y, classes)
    result["cv"] = cross_validate(X, yc, groups, classes)
    return result, extra


def _constant(col: Any) -> bool:
    import numpy as np

    return bool(np.ptp(col) == 0)


def _codes(y: Any, classes: list[str]) -> Any:
    import numpy as np

    code = {c: i for i, c in enumerate(classes)}
    return np.array([code[v] for v in labels(y).tolist()])


# ---- the document's model section -------------------------------------------------------------------

def _f(x: Any, digits: int = 6) -> str:
    return plain(x, digits) if isinstance(x, (int, float)) and not isinstance(x, bool) else "—"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows])


def markdown(a: dict, extra: dict, file: str, how: str, n_rows: int) -> str:
    """The model section, every figure from `a` (the analysis.json dict)."""
    t = a["target"]
    md = []
    if extra.get("skipped"):
        md.append(f"No model for **{t}** ({how}): {extra['skipped']}.")
        md += _dropped(a, extra)
        return "\n".join(md)
    method = METHODS[a["method"]]
    sampled = any(k.startswith("outside the uniform sample") for k in a["dropped"]["rows"])
    rows_said = (f"a uniform sample of {a['n']:,} of its usable rows (fixed by a hash of each row)" if sampled
                 else f"all {a['n']:,} usable rows")
    md.append(f"Model of **{t}** ({how}): {method}, fitted on {rows_said} of {file} ({n_rows:,} rows), "
              f"with features {', '.join(extra['features'])}. Coefficients, standard errors, 95 % confidence "
              "intervals and p-values are the maximum-likelihood fit on those rows; how well it predicts is "
              f"measured separately below by cross-validation.")
    md += _dropped(a, extra)
    md.append("")
    md += _coefficients(a, extra)
    md.append("")
    fit_rows = [["rows in the model (n)", f"{a['n']:,}"]]
    if a["method"] == "ols":
        fit_rows += [["R²", _f(a["r2"])], ["adjusted R²", _f(a["adj_r2"])], ["residual SD", _f(a["residual_sd"])]]
    elif a["r2"] is not None:
        fit_rows.append(["McFadden pseudo-R²", _f(a["r2"])])
    fit_rows.append(["condition number", _f(a["condition_number"], 4)])
    md += [_table(["fit", "value"], fit_rows)]
    md += _collinearity(a)
    md += [""] + _cv(a)
    return "\n".join(md)


def _dropped(a: dict, extra: dict) -> list[str]:
    out = []
    rows = {k: v for k, v in a["dropped"]["rows"].items() if v}
    if rows:
        out.append("Rows left out of the model: " + "; ".join(f"{v:,} ({k})" for k, v in rows.items()) + ".")
    elif a["dropped"]["rows"]:
        out.append("No row is left out: every row has the target and all feature values.")
    leaks = {k: v for k, v in a["dropped"]["columns"].items() if v.startswith("leakage")}
    if leaks:
        out.append("Dropped as leakage: " + "; ".join(f"**{k}** ({v[len('leakage: '):]})" for k, v in leaks.items()) + ".")
    others = {k: v for k, v in a["dropped"]["columns"].items() if k not in leaks}
    if others:
        shown = list(others.items())[:12]
        out.append("Columns not used as features: " + "; ".join(f"{k} ({v})" for k, v in shown)
                   + (f"; … {len(others) - 12} more" if len(others) > 12 else "") + ".")
    imputed = a["dropped"].get("imputed")
    if extra.get("impute"):
        out.append("Missing feature values were imputed because `--impute median` was given: "
                   + ("; ".join(f"{k}: {v:,} values (numbers: the median, with a `{k}_missing` 0/1 column; "
                                f"a category: its own level `(missing)`)" for k, v in imputed.items())
                      if imputed else "none were missing") + ".")
    return out


def _coefficients(a: dict, extra: dict) -> list[str]:
    coefs = a["coefficients"]
    out = [f"Note: {n}." for n in extra.get("notes", [])]
    if not coefs:
        return out
    header = ["term", "estimate", "std. error", "95 % CI", "p-value"]
    if a["method"] == "ols":
        return out + [_table(header, [_row(k, v) for k, v in coefs.items()])]
    classes = extra["classes"]
    if a["method"] == "logit":
        out.append(f"The logit models the probability that {a['target']} is {classes[1]!r} (against {classes[0]!r}); "
                   "an odds ratio is exp(estimate): how many times the odds of that class multiply per unit "
                   "of the feature (per level, against the reference level).")
        return out + [_table(header + ["odds ratio", "95 % CI of the odds ratio"],
                             [_row(k, v) + _odds(v) for k, v in coefs.items()])]
    out.append(f"Each class is compared with the reference class {classes[0]!r}: a coefficient is the change in the "
               "log-odds of that class against the reference.")
    for cls, table in coefs.items():
        out += ["", f"**{a['target']} = {cls}** (against {classes[0]}):", "",
                _table(header + ["odds ratio"], [_row(k, v) + _odds(v)[:1] for k, v in table.items()])]
    return out


def _row(term: str, v: dict) -> list[str]:
    return [term, _f(v["estimate"]), _f(v["std_err"], 4), f"[{_f(v['ci_low'])}, {_f(v['ci_high'])}]",
            _f(v["p_value"], 3)]


def _odds(v: dict) -> list[str]:
    def e(x: float) -> str:
        return _f(math.exp(x), 4) if x < 700 else "∞"
    return [e(v["estimate"]), f"[{e(v['ci_low'])}, {e(v['ci_high'])}]"]


def _collinearity(a: dict) -> list[str]:
    vif = a.get("vif") or {}
    high = [k for k, v in vif.items() if v is None or v > VIF_WARN]
    cond = a["condition_number"]
    if not high and not (cond and cond > COND_WARN):
        return []
    parts = []
    if high:
        named = ", ".join(f"{k} ({_f(vif[k], 4) if vif[k] is not None else '∞'})" for k in high)
        parts.append(f"{named} {'has' if len(high) == 1 else 'have'} a variance inflation factor above "
                     f"{VIF_WARN:g} (each is largely explained by the other features)")
    if cond and cond > COND_WARN:
        parts.append(f"the condition number is {_f(cond, 4)} (above {COND_WARN:,.0f}: strong collinearity or "
                     "very different scales)")
    return ["", "Collinearity warning: " + "; ".join(parts) + ". The coefficients are still the exact fit, but "
            "their standard errors are inflated and each one's value depends on which other features are in "
            "the model; no feature was dropped for this."]


def _cv(a: dict) -> list[str]:
    cv = a["cv"]
    if not cv:
        return [f"No cross-validation: {a['n']} rows are too few for it."]
    metric = next(iter(cv.values()))["metric"]
    folds = max(v["folds"] for v in cv.values())
    rows = max(v.get("rows", a["n"]) for v in cv.values())
    sampled = (f" on a uniform random sample of {rows:,} of the {a['n']:,} rows (seeded, so the same file gives "
               "the same sample; the coefficients above use every row)" if rows < a["n"] else "")
    out = [f"Prediction on rows the model did not see ({folds}-fold cross-validation{sampled}, the same folds for "
           f"every model; {metric}, mean and SD across folds):", "",
           _table(["model", metric, "SD across folds"], [[k + (" (always the mean)" if k == BASELINE and metric != "accuracy"
                                                                else " (always the most frequent class)" if k == BASELINE else ""),
                                                          _f(v["mean"], 4), _f(v["sd"], 3)] for k, v in cv.items()])]
    best = next((k for k, v in cv.items() if "permutation_importance" in v), None)
    if best and BASELINE in cv:
        b, base = cv[best]["mean"], cv[BASELINE]["mean"]
        if metric == "accuracy":
            out += ["", f"The best model, {best}, classifies {plain(100 * b, 3)} % of unseen rows correctly; always "
                    f"guessing the most frequent class gets {plain(100 * base, 3)} % right"
                    + (f", so the model is right {plain(100 * (b - base), 3)} percentage points more often." if b > base
                       else ", so the features add nothing a reader could use for prediction.")]
        else:
            out += ["", f"The best model, {best}, misses the true {a['target']} on unseen rows by {_f(b, 4)} on average; "
                    f"always guessing the mean misses by {_f(base, 4)}"
                    + (f", so its errors are {plain(100 * (1 - b / base), 3)} % smaller." if base > 0 and b < base
                       else ", so the features do not improve on the mean.")]
        imp = cv[best]["permutation_importance"]
        if imp:
            unit = "fall in accuracy" if metric == "accuracy" else f"rise in the {metric}"
            out += ["", f"What the {best} model leans on (permutation importance on a held-out fold: the {unit} "
                    "when a feature's values are shuffled):", ""]
            out += [f"- {k}: {_f(v, 3)}" for k, v in list(imp.items())[:10]]
    return out
