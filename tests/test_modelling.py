"""The model is what a statistician would sign: NIST StRD certified values through the command line,
logit and multinomial logit equal to statsmodels, real package data sets refitted independently on the
raw file, rows left out and counted (never filled in unless asked), leakage only for exact copies."""
from __future__ import annotations

import csv
import importlib.util
import json
import random
import shutil
from pathlib import Path

import pytest

from tests.helpers import run_app
from tests.test_real_datasets import vega_json_as_csv
from utils.tools import ToolInput, run_tool
from utils.tools.data_charts import plain

pd = pytest.importorskip("pandas")
sm = pytest.importorskip("statsmodels.api")

KEYS = {"target", "method", "n", "dropped", "columns", "coefficients", "r2", "adj_r2", "residual_sd",
        "condition_number", "vif", "cv"}


def tin(path: Path, target: str, **params) -> ToolInput:
    return ToolInput(task={"id": "t1", "title": "t", "inputs": []}, data_path=path, input_paths=[], deps={},
                     params=params, goal="test", target=target)


def package_file(package: str, rel: str, tmp: Path) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed")
    return Path(shutil.copy(Path(spec.origin).parent / rel, tmp))


def analysis_json_from_cli(tmp_path: Path, data: Path, target: str, *extra: str) -> tuple[dict, str]:
    run = run_app(["--example", "analysis", "--data", str(data), "--target", target, *extra], tmp_path)
    assert run.code == 0, run.explain()
    run_dir = run.run_dir()
    return (json.loads((run_dir / "analysis.json").read_text(encoding="utf-8")),
            (run_dir / "output.md").read_text(encoding="utf-8"))


def same(a: float, b: float, rel: float = 1e-7) -> bool:
    return a == pytest.approx(b, rel=rel, abs=1e-12)


# ---- NIST StRD -----------------------------------------------------------------------------------

LONGLEY_CERTIFIED = {  # https://www.itl.nist.gov/div898/strd/lls/data/Longley.shtml: (estimate, SD)
    "Intercept": (-3482258.63459582, 890420.383607373), "x1": (15.0618722713733, 84.9149257747669),
    "x2": (-0.358191792925910e-01, 0.334910077722432e-01), "x3": (-2.02022980381683, 0.488399681651699),
    "x4": (-1.03322686717359, 0.214274163161675), "x5": (-0.511041056535807e-01, 0.226073200069370),
    "x6": (1829.15146461355, 455.478499142212)}
LONGLEY_RESIDUAL_SD, LONGLEY_R2 = 304.854073561965, 0.995479004577296


def longley_as_nist_prints_it(tmp_path: Path) -> Path:
    """The 16 rows as NIST's data page lists them: y x1 .. x6, whitespace-separated, YEAR as 1947."""
    raw = pd.read_csv(package_file("statsmodels", "datasets/longley/longley.csv", tmp_path))
    lines = ["y x1 x2 x3 x4 x5 x6"] + [
        f"{int(r.TOTEMP)} {r.GNPDEFL:.1f} {int(r.GNP)} {int(r.UNEMP)} {int(r.ARMED)} {int(r.POP)} {int(r.YEAR)}"
        for r in raw.itertuples()]
    path = tmp_path / "Longley.dat"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_nist_longley_certified_values_through_the_cli(tmp_path: Path):
    a, doc = analysis_json_from_cli(tmp_path, longley_as_nist_prints_it(tmp_path), "y")
    assert set(a) == KEYS and a["method"] == "ols" and a["n"] == 16
    assert a["dropped"]["columns"] == {} and list(a["coefficients"]) == list(LONGLEY_CERTIFIED)  # none dropped
    for term, (estimate, sd) in LONGLEY_CERTIFIED.items():
        got = a["coefficients"][term]
        assert same(got["estimate"], estimate) and same(got["std_err"], sd), (term, got)
    assert same(a["residual_sd"], LONGLEY_RESIDUAL_SD) and same(a["r2"], LONGLEY_R2)
    assert a["condition_number"] > 1e6 and "Collinearity warning" in doc  # warned, not dropped
    # the document's figures are the file's
    assert f"| x6 | {plain(a['coefficients']['x6']['estimate'], 6)} |" in doc
    assert plain(a["residual_sd"], 6) in doc and "longley" not in a["columns"]


def test_nist_wampler1_certified_values_through_the_cli(tmp_path: Path):
    """y = 1 + x + x² + x³ + x⁴ + x⁵, x = 0..20, generated exactly; certified: every coefficient 1, residual SD 0."""
    path = tmp_path / "Wampler1.csv"
    rows = ["y,x,x2,x3,x4,x5"] + [f"{sum(x ** k for k in range(6))},{x},{x ** 2},{x ** 3},{x ** 4},{x ** 5}"
                                  for x in range(21)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    a, _ = analysis_json_from_cli(tmp_path, path, "y")
    assert a["dropped"]["columns"] == {} and list(a["coefficients"]) == ["Intercept", "x", "x2", "x3", "x4", "x5"]
    for term, c in a["coefficients"].items():
        assert same(c["estimate"], 1.0, rel=1e-6), (term, c)
    assert abs(a["residual_sd"]) < 1e-6 * a["columns"]["y"]["sd"] and same(a["r2"], 1.0, rel=1e-6)


# ---- classes ---------------------------------------------------------------------------------------

def test_spector_grade_is_a_logit_equal_to_statsmodels(tmp_path: Path):
    path = package_file("statsmodels", "datasets/spector/spector.csv", tmp_path)
    res = run_tool("regression", tin(path, "GRADE"))
    a = res.data
    assert a["method"] == "logit" and a["features"] == ["GPA", "TUCE", "PSI"] and a["n"] == 32
    df = pd.read_csv(path, sep=r"\s+", quotechar="'")
    fit = sm.Logit(df["GRADE"], sm.add_constant(df[["GPA", "TUCE", "PSI"]])).fit(disp=0)
    ci = fit.conf_int()
    for term, name in (("Intercept", "const"), ("GPA", "GPA"), ("TUCE", "TUCE"), ("PSI", "PSI")):
        c = a["coefficients"][term]
        assert same(c["estimate"], fit.params[name], 1e-6) and same(c["std_err"], fit.bse[name], 1e-5)
        assert same(c["ci_low"], ci.loc[name, 0], 1e-5) and same(c["p_value"], fit.pvalues[name], 1e-4)
    assert same(a["r2"], fit.prsquared, 1e-6)
    assert "odds ratio" in res.markdown and "probability that GRADE is '1'" in res.markdown
    odds = plain(2.718281828459045 ** a["coefficients"]["PSI"]["estimate"], 4)
    assert f"| {odds} |" in res.markdown


def vega_csv(name: str, tmp: Path) -> Path:
    """vega_datasets' `NAME.json` as a CSV (a null as an empty cell), written as test_real_datasets does."""
    if importlib.util.find_spec("vega_datasets") is None:
        pytest.skip("vega_datasets is not installed")
    return vega_json_as_csv(f"_data/{name}.json")(tmp)


def test_iris_species_is_a_multinomial_logit_with_the_files_labels(tmp_path: Path):
    path = vega_csv("iris", tmp_path)
    res = run_tool("regression", tin(path, "species"))
    a = res.data
    assert a["method"] == "mnlogit" and sorted(a["coefficients"]) == ["versicolor", "virginica"]  # vs setosa
    df = pd.read_csv(path)
    X = sm.add_constant(df[a["features"]])
    fit = sm.MNLogit(pd.Categorical(df["species"]).codes, X).fit(disp=0, maxiter=500)
    # setosa is perfectly separated: no maximum-likelihood estimate exists, and statsmodels says so too
    assert not fit.mle_retvals["converged"] and "perfectly separated" in res.markdown
    assert a["cv"]["gradient boosting"]["metric"] == "accuracy" and a["cv"]["baseline"]["mean"] == pytest.approx(1 / 3)


def test_seattle_weather_mnlogit_equals_statsmodels(tmp_path: Path):
    path = package_file("vega_datasets", "_data/seattle-weather.csv", tmp_path)
    a = run_tool("regression", tin(path, "weather")).data
    df = pd.read_csv(path)
    classes = sorted(df["weather"].unique())
    X = sm.add_constant(df[["precipitation", "temp_max", "temp_min", "wind"]])
    fit = sm.MNLogit(pd.Categorical(df["weather"], categories=classes).codes, X).fit(disp=0, maxiter=500)
    assert a["method"] == "mnlogit" and list(a["coefficients"]) == classes[1:]
    for k, cls in enumerate(classes[1:]):
        for term, name in zip(["Intercept", "precipitation", "temp_max", "temp_min", "wind"], X.columns):
            got = a["coefficients"][cls][term]
            assert same(got["estimate"], fit.params.iloc[:, k][name], 1e-6), (cls, term)
            assert same(got["std_err"], fit.bse.iloc[:, k][name], 1e-5), (cls, term)


# ---- rows as they are ------------------------------------------------------------------------------

def test_cars_missing_target_rows_left_out_and_ols_equals_statsmodels(tmp_path: Path):
    """vega cars: 8 cars have no MPG (they were filled with the median before) and 6 more no horsepower."""
    path = vega_csv("cars", tmp_path)
    a = run_tool("regression", tin(path, "Miles_per_Gallon")).data
    df = pd.read_csv(path)
    assert a["dropped"]["rows"] == {"missing target": int(df["Miles_per_Gallon"].isna().sum()),
                                    "missing feature values": int(df["Miles_per_Gallon"].notna().sum()
                                                                  - len(df.dropna(subset=[c for c in df if c not in ("Name", "Year")])))}
    nums = [f for f in a["features"] if f != "Origin"]
    fit = sm.OLS.from_formula("Miles_per_Gallon ~ " + " + ".join(nums + ["Origin"]), df).fit()  # complete cases
    assert a["n"] == int(fit.nobs) == 392
    for term, est in fit.params.items():
        assert same(a["coefficients"][term]["estimate"], est, 1e-6), term
        assert same(a["coefficients"][term]["p_value"], fit.pvalues[term], 1e-5), term
    assert same(a["adj_r2"], fit.rsquared_adj) and same(a["residual_sd"], fit.scale ** 0.5)


def test_fair_and_linnerud_ols_equal_statsmodels_on_the_raw_file(tmp_path: Path):
    """Package data sets the old defaults changed (fair: `affairs` was clipped): the raw-file fit."""
    for rel, target, sep in (("statsmodels:datasets/fair/fair.csv", "affairs", ","),
                             ("sklearn:datasets/data/linnerud_physiological.csv", "Pulse", r"\s+")):
        package, file = rel.split(":")
        path = package_file(package, file, tmp_path)
        a = run_tool("regression", tin(path, target)).data
        df = pd.read_csv(path, sep=sep)
        fit = sm.OLS(df[target], sm.add_constant(df[a["features"]])).fit()
        assert a["n"] == len(df) and set(a["features"]) == set(df.columns) - {target}
        for term, name in zip(["Intercept"] + a["features"], ["const"] + a["features"]):
            assert same(a["coefficients"][term]["estimate"], fit.params[name], 1e-6), (target, term)
            assert same(a["coefficients"][term]["std_err"], fit.bse[name], 1e-6), (target, term)
        assert same(a["r2"], fit.rsquared) and a["columns"][target]["max"] == df[target].max()


def test_impute_median_adds_an_indicator_and_says_so(tmp_path: Path):
    rng = random.Random(3)
    rows = []
    for i in range(120):
        x, z = rng.uniform(0, 10), rng.uniform(0, 5)
        y = 2 + 1.5 * x - z + rng.gauss(0, 0.3)
        rows.append([("" if i % 10 == 3 else round(x, 4)), round(z, 4), ("" if i % 25 == 7 else round(y, 4))])
    path = tmp_path / "gaps.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["x", "z", "y"]] + rows)
    plain_fit = run_tool("regression", tin(path, "y")).data
    assert plain_fit["dropped"]["rows"] == {"missing target": 5, "missing feature values": 12}
    assert plain_fit["n"] == 103 and "x_missing" not in plain_fit["coefficients"]
    res = run_tool("regression", tin(path, "y", impute="median"))
    a = res.data
    df = pd.read_csv(path).dropna(subset=["y"])
    df["x_missing"] = df["x"].isna().astype(float)
    df["x"] = df["x"].fillna(df["x"].median())
    fit = sm.OLS(df["y"], sm.add_constant(df[["x", "x_missing", "z"]])).fit()
    assert a["n"] == 115 and a["dropped"]["imputed"] == {"x": 12} and a["dropped"]["rows"] == {"missing target": 5}
    assert same(a["coefficients"]["x_missing"]["estimate"], fit.params["x_missing"], 1e-6)
    assert "`--impute median` was given" in res.markdown and "x: 12 values" in res.markdown


def test_impute_flag_reaches_the_model_and_is_refused_elsewhere(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n" + "".join(f"{i % 7},{'' if i % 9 == 0 else i % 5},{i % 7 * 2 + i % 5}\n"
                                        for i in range(60)), encoding="utf-8")
    a, doc = analysis_json_from_cli(tmp_path, path, "y", "--impute", "median")
    assert a["dropped"]["imputed"] == {"b": 7} and "b_missing" in a["coefficients"]
    assert "`--impute median` was given" in doc
    (tmp_path / "blog").mkdir()
    run = run_app(["--example", "blog", "--impute", "median"], tmp_path / "blog")
    assert run.code == 2 and "--impute applies to" in run.stderr


def test_leakage_only_for_an_exact_linear_copy_and_collinearity_is_kept(tmp_path: Path):
    rng = random.Random(5)
    rows = []
    for _ in range(80):
        a, b = rng.uniform(0, 10), rng.uniform(0, 10)
        y = 3 * a - b + rng.gauss(0, 1)
        near = y + rng.gauss(0, 0.05)  # r ≈ 0.9999: a strong predictor, not a copy
        rows.append([round(a, 6), round(b, 6), round(a + b + rng.gauss(0, 0.01), 6), round(near, 6),
                     repr(2.5 * y - 4), repr(y)])
    path = tmp_path / "leak.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["a", "b", "a_plus_b", "near", "copy", "y"]] + rows)
    res = run_tool("regression", tin(path, "y"))
    a = res.data
    assert a["features"] == ["a", "b", "a_plus_b", "near"]
    assert a["dropped"]["columns"] == {"copy": "leakage: an exact linear function of the target (copy)"}
    assert "Dropped as leakage: **copy**" in res.markdown
    from statsmodels.stats.outliers_influence import variance_inflation_factor
    X = sm.add_constant(pd.read_csv(path)[["a", "b", "a_plus_b", "near"]]).to_numpy()
    for j, term in enumerate(["a", "b", "a_plus_b", "near"], start=1):   # analysis.json holds each VIF
        assert same(a["vif"][term], variance_inflation_factor(X, j), rel=1e-6)
    assert "Collinearity warning: " + ", ".join(f"{t} ({plain(a['vif'][t], 4)})" for t in ("a", "b", "a_plus_b")) \
        in res.markdown


def test_cv_compares_three_models_on_the_same_folds(tmp_path: Path):
    rng = random.Random(8)
    rows = [[round(x := rng.uniform(-3, 3), 4), round(rng.uniform(0, 1), 4), round(x * x + rng.gauss(0, 0.2), 4)]
            for _ in range(200)]
    path = tmp_path / "curve.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["x", "noise", "y"]] + rows)
    res = run_tool("regression", tin(path, "y"))
    cv = res.data["cv"]
    assert list(cv) == ["baseline", "linear", "gradient boosting"]
    ys = [r[2] for r in rows]
    mean = sum(ys) / len(ys)
    assert cv["baseline"]["mean"] == pytest.approx(sum(abs(v - mean) for v in ys) / len(ys), rel=0.1)
    assert cv["gradient boosting"]["mean"] < cv["linear"]["mean"] / 2  # y = x² is not a line
    imp = cv["gradient boosting"]["permutation_importance"]
    assert list(imp)[0] == "x" and imp["x"] > 10 * abs(imp["noise"])
    assert "The best model, gradient boosting, misses the true y" in res.markdown
