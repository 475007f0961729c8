"""Analysis tools on CSVs the tests generate (never the shipped sample): every figure is checked against
a value computed independently here, and every real-world quirk has its own file."""
from __future__ import annotations

import csv
import json
import math
import os
import random
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from utils.errors import ToolError
from utils.tools import TOOLS, ToolInput, run_tool, tool_names
from utils.tools.data_charts import MAX_PANELS, plain
from utils.tools.dataset import open_dataset
from utils.tools.stats import MAX_CORR_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
ANALYSIS = ["load_data", "preprocess", "describe", "correlations", "regression", "charts"]


def tin(data_path: Path | None = None, target: str | None = None, **params) -> ToolInput:
    return ToolInput(task={"id": "t1", "title": "t", "inputs": []}, data_path=data_path, input_paths=[],
                     deps={}, params=params, goal="test", target=target)


def write_csv(path: Path, header: list[str], rows: list[list], *, delimiter: str = ",",
              encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def run_all(path: Path, target: str | None = None) -> dict:
    return {name: run_tool(name, tin(path, target)) for name in ANALYSIS}


@pytest.fixture
def clean_csv(tmp_path: Path) -> Path:
    """No missing values and no outliers: preprocessing changes nothing, so raw statistics apply."""
    rng = random.Random(1)
    rows = [[f"r{i}", rng.choice(["a", "b", "c"]), round(rng.uniform(0, 10), 3), round(rng.gauss(50, 5), 3)]
            for i in range(30)]
    return write_csv(tmp_path / "clean.csv", ["name", "group", "x", "y"], rows)


def test_registry_names_and_unknown_tool():
    assert {"load_data", "preprocess", "describe", "correlations", "regression", "charts",
            "schedule", "extract_facts", "chart_facts"} <= set(TOOLS)
    assert tool_names() == sorted(TOOLS)
    with pytest.raises(ToolError, match="unknown tool 'nope'.*known tools: .*describe"):
        run_tool("nope", tin())


def test_semicolons_decimal_commas_thousands_and_latin1(tmp_path: Path):
    """A European export: `;`, `1.234,5`, Latin-1 names, a quoted field holding the delimiter."""
    rng = random.Random(3)
    amounts = [round(rng.uniform(100, 20000), 2) for _ in range(40)]
    rows = [[f"Müller; Söhne {i}" if i % 7 == 0 else f"Café {i % 4}", f"{a:,.2f}".replace(",", "X")
             .replace(".", ",").replace("X", "."), rng.choice(["Zürich", "Genève", "Köln"])]
            for i, a in enumerate(amounts)]
    p = write_csv(tmp_path / "eu.csv", ["kunde", "betrag", "ort"], rows, delimiter=";", encoding="latin-1")
    assert b"\xfc" in p.read_bytes() and b"1." in p.read_bytes()  # really Latin-1, really thousands dots
    loaded = run_tool("load_data", tin(p)).data
    assert loaded["format"] == {"encoding": "latin-1", "delimiter": ";", "decimal": ",", "thousands": "."}
    assert loaded["types"]["betrag"] == "numeric" and loaded["types"]["ort"] == "categorical"
    stats = run_tool("describe", tin(p)).data
    assert stats["numeric"]["betrag"]["mean"] == pytest.approx(statistics.fmean(amounts))
    assert set(stats["categorical"]["ort"]["counts"]) <= {"Zürich", "Genève", "Köln"}


def test_thousands_commas_in_a_comma_file(tmp_path: Path):
    p = tmp_path / "th.csv"
    p.write_text('item,amount\na,"1,234.50"\nb,"12.25"\nc,"3,000"\nd,"45"\n', encoding="utf-8")
    s = run_tool("describe", tin(p)).data["numeric"]["amount"]
    assert s["mean"] == pytest.approx(statistics.fmean([1234.5, 12.25, 3000, 45]))


def id_date_file(tmp_path: Path) -> Path:
    rng = random.Random(5)
    rows = []
    for i in range(60):
        x = rng.uniform(0, 10)
        rows.append([1000 + i, f"C-{rng.randrange(10**9)}", f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                     rng.choice(["true", "false"]), "" if i % 5 else "note", round(x, 4),
                     round(2 * x + rng.gauss(0, 0.5), 4)])
    return write_csv(tmp_path / "ids.csv", ["row", "customer_id", "day", "active", "comment", "x", "y"], rows)


def test_ids_dates_booleans_and_mostly_empty_columns(tmp_path: Path):
    p = id_date_file(tmp_path)
    types = run_tool("load_data", tin(p)).data["types"]
    assert types == {"row": "id", "customer_id": "id", "day": "date", "active": "categorical",
                     "comment": "mostly empty", "x": "numeric", "y": "numeric"}
    desc = run_tool("describe", tin(p)).data
    assert set(desc["numeric"]) == {"x", "y"}  # the ID sequence is not a statistic
    assert desc["dates"]["day"]["from"] == "2024-01-01" and desc["categorical"]["active"]["n_unique"] == 2
    with p.open(newline="", encoding="utf-8") as fh:  # the file's own labels, as written
        labels = [r["active"] for r in csv.DictReader(fh)]
    assert desc["categorical"]["active"]["counts"] == {v: labels.count(v) for v in set(labels)}
    model = run_tool("regression", tin(p)).data
    assert model["target"] == "y" and "row" not in model["features"] and "customer_id" not in model["features"]
    assert "ID-like" in model["dropped"]["columns"]["customer_id"] and "missing" in model["dropped"]["columns"]["comment"]
    charts = run_tool("charts", tin(p)).data  # no panel for an ID, a date or an empty column
    assert charts["histogram_columns"] == ["y", "x"] and set(charts["charts"]) >= {"histograms.png", "scatter.png"}


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b"a,b\n1,2\n3\n6,7\n", "line 3 has 1 fields, the header \\(line 1\\) has 2"),
    (b"a,b\n1,2\n", "at least 2 data rows, found 1"),
    (b"a,,c\n1,2,3\n4,5,6\n", "no name for column 2"),
    (b"id,name,empty\n" + b"".join(b"%d,person %d,\n" % (i, i) for i in range(30)),
     "no column can be analysed \\(id: ID-like.*; name: ID-like: text.*; empty: 100% of values missing\\)"),
])
def test_csv_errors_are_one_clear_line(tmp_path: Path, content: bytes | None, message: str):
    p = tmp_path / "bad.csv"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ToolError, match=message) as exc:
        open_dataset(p)
    assert "\n" not in str(exc.value)
    with pytest.raises(ToolError):  # the tools surface the same error
        run_tool("describe", tin(p))


def test_directory_and_no_data_path(tmp_path: Path):
    with pytest.raises(ToolError, match="not a regular file"):
        open_dataset(tmp_path)
    with pytest.raises(ToolError, match="--data"):
        run_tool("describe", tin(None))


def test_describe_matches_statistics_module(clean_csv: Path):
    res = run_tool("describe", tin(clean_csv))
    rows = list(csv.DictReader(clean_csv.open(encoding="utf-8")))
    for col in ("x", "y"):
        xs = [float(r[col]) for r in rows]
        s = res.data["numeric"][col]
        q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive")
        assert s["count"] == len(xs)
        assert s["mean"] == pytest.approx(statistics.mean(xs))
        assert s["std"] == pytest.approx(statistics.stdev(xs))
        assert (s["min"], s["max"]) == (min(xs), max(xs))
        assert (s["q1"], s["median"], s["q3"]) == pytest.approx((q1, med, q3))
    counts = {g: sum(r["group"] == g for r in rows) for g in {r["group"] for r in rows}}
    assert res.data["categorical"]["group"]["counts"] == counts
    json.dumps(res.data, allow_nan=False)


def test_preprocess_reports_outliers_and_changes_nothing(tmp_path: Path):
    xs = [1, 2, 3, 4, 5, 6, 7, 8, 100]          # 100 is the known outlier, in data row 9
    rows = [[x, "a"] for x in xs] + [["", "b"], [5, ""], [6, "a"]]  # one numeric and one categorical missing
    p = write_csv(tmp_path / "p.csv", ["x", "g"], rows)
    observed = [float(x) for x in xs] + [5.0, 6.0]
    q1, _, q3 = statistics.quantiles(observed, n=4, method="inclusive")
    hi = q3 + 1.5 * (q3 - q1)
    res = run_tool("preprocess", tin(p))
    far = res.data["outliers"]["x"]
    assert (far["count"], far["low"], far["high"]) == (1, 0, 1) and far["upper_fence"] == pytest.approx(hi)
    assert far["rows"] == [{"row": 9, "value": 100.0, "beyond": pytest.approx(100 - hi),
                            "iqrs": pytest.approx((100 - hi) / (q3 - q1))}]
    assert res.data["missing"] == {"x": 1, "g": 1} and res.data["outliers_total"] == 1
    assert "row 9: 100" in res.markdown and "not changed" in res.markdown
    desc = run_tool("describe", tin(p)).data["numeric"]["x"]
    assert (desc["min"], desc["max"], desc["count"], desc["missing"]) == (1.0, 100.0, 11, 1)  # raw, not clipped
    assert desc["mean"] == pytest.approx(statistics.mean(observed)) and desc["outliers"] == 1
    assert run_tool("preprocess", tin(p)).data == res.data  # deterministic


def test_zero_iqr_column_has_no_outliers(tmp_path: Path):
    p = write_csv(tmp_path / "flag.csv", ["flag", "v"], [[0, i] for i in range(9)] + [[1, 9]])
    assert "flag" not in run_tool("preprocess", tin(p)).data["outliers"]
    assert run_tool("describe", tin(p)).data["numeric"]["flag"]["max"] == 1.0


def test_correlations_match_statistics(clean_csv: Path):
    res = run_tool("correlations", tin(clean_csv))
    rows = list(csv.DictReader(clean_csv.open(encoding="utf-8")))
    r = statistics.correlation([float(x["x"]) for x in rows], [float(x["y"]) for x in rows])
    assert res.data["columns"] == ["x", "y"]
    assert res.data["matrix"][0][1] == pytest.approx(r)
    assert res.data["pairs"][0]["r"] == pytest.approx(r)


def test_one_numeric_column_is_explained_not_failed(tmp_path: Path):
    rows = [[i, f"p{i % 3}", round(1.5 * i, 2)] for i in range(1, 31)]
    p = write_csv(tmp_path / "one.csv", ["id", "label", "value"], rows)
    res = run_all(p)
    assert "needs at least two numeric columns" not in res["correlations"].markdown
    assert "has 1 (value)" in res["correlations"].markdown and res["correlations"].data["skipped"]
    assert res["regression"].data["target"] == "value"
    only_id = write_csv(tmp_path / "lone.csv", ["id", "value"], [[i, i * i % 7] for i in range(1, 31)])
    lone = run_all(only_id)
    assert "no other column can serve as a feature" in lone["regression"].markdown
    assert "ID-like" in lone["regression"].data["dropped"]["columns"]["id"]
    assert "histograms.png" in lone["charts"].artifacts


@pytest.fixture
def linear_csv(tmp_path: Path) -> Path:
    """y = 5 + 3*x1 - 2*x2 + small noise, an ID column and a copy of y in other units (leakage)."""
    rng = random.Random(7)
    rows = []
    for i in range(200):
        x1, x2 = rng.uniform(0, 10), rng.uniform(-5, 5)
        y = 5 + 3 * x1 - 2 * x2 + rng.gauss(0, 0.5)
        rows.append([f"order-{i:04d}", round(x1, 6), round(x2, 6), round(y * 0.92, 6), round(y, 6)])
    return write_csv(tmp_path / "lin.csv", ["order", "x1", "x2", "y_eur", "y"], rows)


def test_regression_recovers_relation_with_intervals_and_leakage_guards(linear_csv: Path):
    d = run_tool("regression", tin(linear_csv, target="y")).data
    assert d["method"] == "ols" and d["features"] == ["x1", "x2"] and d["n"] == 200  # every row, no split
    assert "exact linear function" in d["dropped"]["columns"]["y_eur"] and "ID-like" in d["dropped"]["columns"]["order"]
    for name, truth in (("x1", 3), ("x2", -2)):
        c = d["coefficients"][name]
        assert c["ci_low"] < truth < c["ci_high"] and c["estimate"] == pytest.approx(truth, abs=0.1)
        assert c["p_value"] < 1e-6
    assert d["r2"] > 0.98 and d["cv"]["linear"]["mean"] < 0.1 * d["cv"]["baseline"]["mean"]
    assert run_tool("regression", tin(linear_csv, target="y")).data == d  # same file, same model
    json.dumps(d, allow_nan=False)


def test_regression_bad_target(linear_csv: Path):
    with pytest.raises(ToolError, match="column 'nope' not in lin.csv"):
        run_tool("regression", tin(linear_csv, target="nope"))
    with pytest.raises(ToolError, match="cannot be a target"):
        run_tool("regression", tin(linear_csv, target="order"))


def test_categorical_target_gets_a_classifier(tmp_path: Path):
    rng = random.Random(11)
    rows = []
    for _ in range(300):
        a, b = rng.gauss(0, 1), rng.gauss(0, 1)
        label = "churned" if a + 0.5 * b + rng.gauss(0, 0.3) > 0.3 else "stayed"
        rows.append([round(a, 4), round(b, 4), rng.choice(["web", "shop"]), label])
    p = write_csv(tmp_path / "churn.csv", ["usage", "tenure", "channel", "status"], rows)
    res = run_tool("regression", tin(p, target="status"))
    d = res.data
    assert d["method"] == "logit" and d["n"] == 300 and "channel[T.web]" in d["coefficients"]  # shop: reference
    assert d["coefficients"]["usage"]["estimate"] < 0  # P(stayed) falls with usage
    cv = d["cv"]
    assert cv["linear"]["metric"] == "accuracy" and cv["linear"]["mean"] > cv["baseline"]["mean"] + 0.1
    assert "odds ratio" in res.markdown and "probability that status is 'stayed'" in res.markdown
    charts = run_tool("charts", tin(p, target="status"))
    assert "categories.png" in charts.artifacts


def test_wide_file_is_charted_and_correlated_within_caps(tmp_path: Path):
    rng = random.Random(2)
    header = [f"m{i}" for i in range(59)] + ["target"]
    rows = []
    for _ in range(80):
        vals = [round(rng.gauss(0, 1), 4) for _ in range(59)]
        rows.append(vals + [round(vals[3] * 2 + rng.gauss(0, 0.1), 4)])
    p = write_csv(tmp_path / "wide.csv", header, rows)
    corr = run_tool("correlations", tin(p, "target")).data
    assert len(corr["columns"]) == MAX_CORR_COLUMNS and corr["columns"][0] == "target" and "m3" in corr["columns"]
    charts = run_tool("charts", tin(p, "target"))
    assert len(charts.data["histogram_columns"]) == MAX_PANELS and charts.data["histogram_columns"][0] == "target"
    assert len(charts.data["heatmap_columns"]) <= 12 and charts.data["best_predictor"] == "m3"


def test_two_thousand_columns_stay_bounded(tmp_path: Path):
    rng = random.Random(4)
    p = write_csv(tmp_path / "w2000.csv", [f"c{i}" for i in range(2000)],
                  [[rng.randint(0, 99) for _ in range(2000)] for _ in range(60)])
    res = run_all(p)
    assert len(res["correlations"].data["columns"]) == MAX_CORR_COLUMNS
    assert len(res["describe"].data["numeric"]) == 200
    assert len(res["regression"].data["features"]) <= 20
    assert "beyond the 200-column cap" in res["load_data"].markdown


def test_values_near_the_float_limit_chart_without_warnings(tmp_path: Path):
    rng = random.Random(9)
    rows = [[repr(rng.uniform(-1, 1) * 1.7e308), repr(rng.uniform(1e307, 1.79e308)), round(rng.gauss(0, 1), 4),
             rng.choice("xy")] for _ in range(40)]
    p = write_csv(tmp_path / "huge.csv", ["a", "b", "c", "label"], rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_all(p, target="a")
    assert not caught, [str(w.message) for w in caught]
    assert set(res["charts"].data["histogram_columns"]) == {"a", "b", "c"}
    stats = res["describe"].data["numeric"]["a"]
    assert stats["max"] <= 1.7e308 and math.isfinite(stats["std"])
    assert "too large" in res["regression"].markdown
    for r in res.values():
        json.dumps(r.data, allow_nan=False)


def test_plain_numbers_in_tables_and_ticks(clean_csv: Path, tmp_path: Path):
    assert [plain(13400.0), plain(0.031234), plain(-2.5), plain(1234567.0)] == ["13,400", "0.03123", "-2.5", "1,234,567"]
    p = write_csv(tmp_path / "big.csv", ["a", "b"], [[10000 + 37 * i, 13400 + 11 * i * i] for i in range(30)])
    md = run_tool("describe", tin(p)).markdown
    assert "e+0" not in md and "13,400" in md


def test_sample_data_still_loads_and_models(tmp_path: Path):
    """The sample's recording error (visitors x 5 in one row) stays in the data: the fit is the raw file's,
    complete cases, as statsmodels gives it."""
    sm = pytest.importorskip("statsmodels.formula.api")
    pd = pytest.importorskip("pandas")
    sales = ROOT / "examples" / "data" / "sales.csv"
    reg = run_tool("regression", tin(sales, target="revenue")).data
    df = pd.read_csv(sales)
    fit = sm.ols("revenue ~ " + " + ".join(reg["features"]), df).fit()
    assert reg["n"] == int(fit.nobs) and reg["dropped"]["rows"]["missing feature values"] == len(df) - int(fit.nobs)
    for term, est in fit.params.items():
        assert reg["coefficients"][term]["estimate"] == pytest.approx(est, rel=1e-7), term


def test_sample_data_is_reproducible(tmp_path: Path):
    out = tmp_path / "sales.csv"
    subprocess.run([sys.executable, str(ROOT / "examples/data/make_sample_data.py"), str(out)], check=True)
    assert out.read_bytes() == (ROOT / "examples" / "data" / "sales.csv").read_bytes()


def test_importing_the_tools_loads_no_heavy_library():
    code = ("import sys, utils.tools; heavy = [m for m in ('duckdb', 'statsmodels', 'matplotlib', 'pandas') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_query_threads_follow_the_cpus_a_ray_task_was_given():
    from utils.tools.dataset import query_threads
    assert query_threads({"OMP_NUM_THREADS": "1"}) == 1  # Ray sets it to a task's --ray-cpus
    assert query_threads({"OMP_NUM_THREADS": "3"}) == 3
    machine = max(1, min(4, os.cpu_count() or 1))
    assert query_threads({}) == machine
    assert query_threads({"OMP_NUM_THREADS": "0"}) == query_threads({"OMP_NUM_THREADS": "two"}) == machine
