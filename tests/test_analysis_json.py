"""analysis.json is complete and the document's model section is written from it: every key the issue
lists, with its shape, and every number in the model section of output.md is a figure of analysis.json
(or exp() of one, a percentage of one, or a difference of two), as printed with its rounding."""
from __future__ import annotations

import csv
import json
import math
import random
import re
from pathlib import Path

from tests.helpers import run_app
from utils.tools import ANALYSIS_JSON, ToolInput, run_tool
from utils.tools.model_cv import FOLDS
from utils.tools.modelling import COND_WARN, VIF_WARN

NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]\d+)?")
COEF_FIELDS = {"estimate", "std_err", "ci_low", "ci_high", "p_value"}


def numbers_in(obj) -> list[float]:
    """Every number in a JSON value, keys and strings included (`outside the uniform sample of 100,000 rows`)."""
    out: list[float] = []
    if isinstance(obj, bool) or obj is None:
        return out
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, str):
        return [float(t.replace(",", "").replace("−", "-")) for t in NUMBER.findall(obj)]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        out += numbers_in(k) if isinstance(k, str) else []
        out += numbers_in(v)
    return out


def figures(a: dict) -> list[float]:
    """The numbers the document may show: analysis.json's own, the derived ones it states it derives
    (odds ratios = exp(); accuracies in per cent; the best model's gain over the baseline), the file's
    row count (a column's n + missing) and the rules' constants (95 % CI, folds, warning thresholds)."""
    out = numbers_in(a) + [95.0, float(FOLDS), VIF_WARN, COND_WARN]
    out += [c["n"] + c["missing"] for c in a["columns"].values()]
    tables = a["coefficients"].values() if a["method"] == "mnlogit" else [a["coefficients"]]
    for table in tables:
        for v in table.values():
            out += [math.exp(v[k]) for k in ("estimate", "ci_low", "ci_high") if v[k] < 700]
    means = [m["mean"] for m in a["cv"].values()]
    out += [100 * m for m in means] + [100 * (b - c) for b in means for c in means]
    out += [100 * (1 - b / c) for b in means for c in means if c]
    return out


def shown_as(token: str, value: float) -> bool:
    """Whether `value`, rounded as the token is, prints as the token (within half a unit of its last digit)."""
    t = float(token.replace(",", "").replace("−", "-"))
    mant = token.split("e")[0]
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    half = 0.5 * 10.0 ** (-decimals) * (10.0 ** int(token.split("e")[1]) if "e" in token else 1.0)
    return abs(t - value) <= half * (1 + 1e-9) + 1e-15 * abs(value)


def unexplained(section: str, a: dict) -> list[str]:
    known = figures(a)
    return [tok for tok in NUMBER.findall(section) if not any(shown_as(tok, v) for v in known)]


def model_section(doc: str) -> str:
    start = doc.index("## A model of the target")
    end = doc.find("\n## ", start + 1)
    return doc[start:end if end > 0 else None]


def write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([header] + rows)
    return path


def test_every_key_has_its_shape_and_every_figure_in_output_md_comes_from_analysis_json(tmp_path: Path):
    rng = random.Random(20)
    rows = []
    for i in range(120):
        a, b = rng.uniform(0, 10), rng.uniform(0, 5)
        region = ["north", "south", "east"][i % 3]
        y = 4 + 2 * a - 3 * b + (1.5 if region == "south" else 0) + rng.gauss(0, 1)
        rows.append([round(a, 4), round(b, 4), round(a + b + rng.gauss(0, 0.02), 4), region,
                     "" if i % 17 == 0 else round(y, 4)])
    p = write(tmp_path / "sales.csv", ["a", "b", "a_plus_b", "region", "y"], rows)
    run = run_app(["--example", "analysis", "--data", str(p), "--target", "y"], tmp_path)
    assert run.code == 0, run.explain()
    a = json.loads((run.run_dir() / ANALYSIS_JSON).read_text(encoding="utf-8"))
    doc = (run.run_dir() / "output.md").read_text(encoding="utf-8")
    assert {"target", "method", "n", "dropped", "columns", "coefficients", "r2", "adj_r2", "residual_sd",
            "condition_number", "vif", "cv"} <= set(a)
    assert a["target"] == "y" and a["method"] == "ols" and a["n"] == 120 - 8
    assert a["dropped"]["rows"]["missing target"] == 8 and isinstance(a["dropped"]["columns"], dict)
    assert all(set(c) == {"n", "missing", "mean", "sd", "min", "max"} for c in a["columns"].values())
    assert list(a["coefficients"])[0] == "Intercept" and "region[T.north]" in a["coefficients"]  # east: reference
    assert all(set(v) == COEF_FIELDS for v in a["coefficients"].values())
    assert set(a["vif"]) == set(a["coefficients"]) - {"Intercept"} and a["vif"]["a_plus_b"] > VIF_WARN
    assert all(isinstance(a[k], float) for k in ("r2", "adj_r2", "residual_sd", "condition_number"))
    assert list(a["cv"]) == ["baseline", "linear", "gradient boosting"]
    assert all({"metric", "mean", "sd"} <= set(m) and m["rows"] == a["n"] for m in a["cv"].values())
    section = model_section(doc)
    assert "Collinearity warning" in section and len(NUMBER.findall(section)) > 40
    assert unexplained(section, a) == []
    assert unexplained(section + " 3.14159", a) == ["3.14159"]  # the check can fail


def test_logit_and_mnlogit_sections_are_from_analysis_json(tmp_path: Path):
    """Odds ratios are exp() of the json's logit figures; a multinomial logit's coefficients are one
    table per class: {class: {term: {estimate, std_err, ci_low, ci_high, p_value}}}."""
    rng = random.Random(21)
    rows = []
    for _ in range(240):
        u, v = rng.gauss(0, 1), rng.gauss(0, 1)
        s, r = u + 0.7 * v + rng.gauss(0, 0.8), u - v + rng.gauss(0, 1.5)  # churn and tier: separate noise
        rows.append([round(u, 4), round(v, 4), "yes" if s > 0.2 else "no",
                     "low" if r < -0.6 else "mid" if r < 0.8 else "high"])
    p = write(tmp_path / "c.csv", ["usage", "tenure", "churn", "tier"], rows)
    for target, method in (("churn", "logit"), ("tier", "mnlogit")):
        res = run_tool("regression", ToolInput(task={"id": "t1", "title": "t", "inputs": []}, data_path=p,
                                               input_paths=[], deps={}, params={}, goal="g", target=target))
        a = json.loads(res.artifacts[ANALYSIS_JSON])
        assert a["method"] == method and unexplained(res.markdown, a) == []
        tables = a["coefficients"].values() if method == "mnlogit" else [a["coefficients"]]
        assert all(set(v) == COEF_FIELDS for t in tables for v in t.values())
    assert set(a["coefficients"]) == {"low", "mid"}   # 'high' (first sorted) is the reference class


def test_above_the_cv_row_cap_only_the_comparison_is_sampled(tmp_path: Path, monkeypatch):
    """The predictive comparison runs on a seeded uniform sample above CV_ROWS (said in the document and
    in cv.*.rows); the coefficients, CIs and p-values are the same as without the cap."""
    import utils.tools.model_cv as model_cv

    rng = random.Random(22)
    rows = [[round(x := rng.uniform(0, 10), 4), round(2 * x + rng.gauss(0, 1), 4)] for _ in range(300)]
    p = write(tmp_path / "cap.csv", ["x", "y"], rows)

    def run() -> tuple[dict, str]:
        res = run_tool("regression", ToolInput(task={"id": "t1", "title": "t", "inputs": []}, data_path=p,
                                               input_paths=[], deps={}, params={}, goal="g", target="y"))
        return json.loads(res.artifacts[ANALYSIS_JSON]), res.markdown

    full, _ = run()
    monkeypatch.setattr(model_cv, "CV_ROWS", 150)
    capped, doc = run()
    assert capped["coefficients"] == full["coefficients"] and capped["n"] == full["n"] == 300
    assert all(m["rows"] == 150 for m in capped["cv"].values()) and all(m["rows"] == 300 for m in full["cv"].values())
    assert capped["cv"]["linear"]["mean"] != full["cv"]["linear"]["mean"]
    assert "uniform random sample of 150 of the 300 rows" in doc and unexplained(doc, capped) == []
