"""Analysis tools: every figure is checked against a value computed independently in the test."""
from __future__ import annotations

import csv
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from utils.errors import ToolError
from utils.tools import TOOLS, ToolInput, run_tool, tool_names
from utils.tools.table import load_csv

ROOT = Path(__file__).resolve().parent.parent
SALES = ROOT / "examples" / "data" / "sales.csv"


def tin(data_path: Path | None = None, **params) -> ToolInput:
    return ToolInput(task={"id": "t1", "title": "t", "inputs": []}, data_path=data_path, input_paths=[],
                     deps={}, params=params, goal="test")


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


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


def test_load_csv_types_and_missing(tmp_path: Path):
    p = tmp_path / "m.csv"
    p.write_text("a,b,c\n1,x,\n2,NA,3.5\nnull,y,NaN\n4,x,7\n", encoding="utf-8")
    t = load_csv(p)
    assert t.columns == ["a", "b", "c"] and t.n_rows == 4
    assert t.types == {"a": "numeric", "b": "categorical", "c": "numeric"}
    assert t.values["a"] == [1.0, 2.0, None, 4.0]
    assert t.values["b"] == ["x", None, "y", "x"]
    assert t.missing() == {"a": 1, "b": 1, "c": 2}
    res = run_tool("load_data", tin(p))
    assert res.data["missing"] == {"a": 1, "b": 1, "c": 2} and res.data["rows"] == 4
    assert "| b | categorical | 3 | 1 |" in res.markdown


def test_utf8_bom_is_accepted(tmp_path: Path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffa,b\n1,2\n3,4\n".encode("utf-8"))
    assert load_csv(p).columns == ["a", "b"]


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b"a,b\n1,2\n3,4,5\n6,7\n", "line 3 has 3 fields, the header \\(line 1\\) has 2"),
    (b"a,b\n1,\xe9\n3,4\n", "not UTF-8 \\(byte 0xe9"),
    (b"a,b\n1,2\n", "at least 2 data rows, found 1"),
    (b"1,2\n3,4\n5,6\n", "no header row"),
    (b"a,,c\n1,2,3\n4,5,6\n", "no header row"),
    (b"a,a\n1,2\n3,4\n", "duplicate column name 'a'"),
])
def test_csv_errors_are_one_clear_line(tmp_path: Path, content: bytes | None, message: str):
    p = tmp_path / "bad.csv"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ToolError, match=message) as exc:
        load_csv(p)
    assert "\n" not in str(exc.value)
    with pytest.raises(ToolError):  # the tools surface the same error
        run_tool("describe", tin(p))


def test_directory_is_not_a_csv(tmp_path: Path):
    with pytest.raises(ToolError, match="not a regular file"):
        load_csv(tmp_path)


def test_no_data_path():
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
    json.dumps(res.data)


def test_preprocess_imputes_and_clips_known_values(tmp_path: Path):
    xs = [1, 2, 3, 4, 5, 6, 7, 8, 100]          # 100 is the known outlier
    rows = [[x, "a"] for x in xs] + [["", "b"], [5, ""], [6, "a"]]  # one numeric and one categorical missing
    p = write_csv(tmp_path / "p.csv", ["x", "g"], rows)
    observed = [float(x) for x in xs] + [5.0, 6.0]
    q1, _, q3 = statistics.quantiles(observed, n=4, method="inclusive")
    hi = q3 + 1.5 * (q3 - q1)
    clipped = [min(v, hi) for v in observed]
    res = run_tool("preprocess", tin(p))
    ch = res.data["changes"]
    assert ch["x"]["imputed"] == 1 and ch["x"]["clipped_high"] == 1 and ch["x"]["clipped_low"] == 0
    assert ch["x"]["upper_fence"] == pytest.approx(hi)
    assert ch["x"]["fill"] == pytest.approx(statistics.median(clipped))
    assert ch["g"] == {"type": "categorical", "imputed": 1, "fill": "a"}
    assert res.data["imputed_total"] == 2 and res.data["clipped_total"] == 1
    desc = run_tool("describe", tin(p)).data["numeric"]["x"]
    assert desc["max"] == pytest.approx(hi)
    assert desc["mean"] == pytest.approx(statistics.mean(clipped + [statistics.median(clipped)]))
    assert run_tool("preprocess", tin(p)).data == res.data  # deterministic


def test_zero_iqr_column_is_not_clipped(tmp_path: Path):
    p = write_csv(tmp_path / "flag.csv", ["flag", "v"], [[0, i] for i in range(9)] + [[1, 9]])
    ch = run_tool("preprocess", tin(p)).data["changes"]["flag"]
    assert ch["clipped_high"] == 0 and ch["clipping"].startswith("skipped")


def test_correlations_match_statistics(clean_csv: Path):
    res = run_tool("correlations", tin(clean_csv))
    rows = list(csv.DictReader(clean_csv.open(encoding="utf-8")))
    r = statistics.correlation([float(x["x"]) for x in rows], [float(x["y"]) for x in rows])
    cols = res.data["columns"]
    assert cols == ["x", "y"]
    assert res.data["matrix"][0][1] == pytest.approx(r)
    assert res.data["pairs"][0]["r"] == pytest.approx(r)


def test_correlations_need_two_numeric_columns(tmp_path: Path):
    p = write_csv(tmp_path / "one.csv", ["g", "x"], [["a", 1], ["b", 2], ["c", 3]])
    with pytest.raises(ToolError, match="at least 2 numeric columns"):
        run_tool("correlations", tin(p))


@pytest.fixture
def linear_csv(tmp_path: Path) -> Path:
    """y = 5 + 3*x1 - 2*x2 + tiny noise: the fit must recover it."""
    rng = random.Random(7)
    rows = []
    for _ in range(50):
        x1, x2 = rng.uniform(0, 10), rng.uniform(-5, 5)
        rows.append([round(x1, 6), round(x2, 6), 5 + 3 * x1 - 2 * x2 + rng.gauss(0, 0.001)])
    return write_csv(tmp_path / "lin.csv", ["x1", "x2", "y"], rows)


def test_regression_recovers_exact_relation(linear_csv: Path):
    res = run_tool("regression", tin(linear_csv, target="y"))
    d = res.data
    assert d["r2_test"] > 0.9999 and d["mae_test"] < 0.01
    assert d["coefficients"]["x1"] == pytest.approx(3, abs=1e-3)
    assert d["coefficients"]["x2"] == pytest.approx(-2, abs=1e-3)
    assert d["intercept"] == pytest.approx(5, abs=1e-2)
    assert (d["n_train"], d["n_test"]) == (40, 10)
    assert run_tool("regression", tin(linear_csv)).data == d  # default target: last numeric column
    assert run_tool("regression", tin(linear_csv, target="y", seed=1)).data["seed"] == 1
    json.dumps(d)


def test_regression_bad_target(linear_csv: Path, tmp_path: Path):
    with pytest.raises(ToolError, match="column 'nope' not in lin.csv"):
        run_tool("regression", tin(linear_csv, target="nope"))
    p = write_csv(tmp_path / "cat.csv", ["x", "g"], [[1, "a"], [2, "b"], [3, "a"]])
    with pytest.raises(ToolError, match="not numeric"):
        run_tool("regression", tin(p, target="g"))


def test_charts_are_png(linear_csv: Path):
    res = run_tool("charts", tin(linear_csv, target="y"))
    assert set(res.artifacts) == {"histograms.png", "correlations.png", "scatter.png"}
    for name, blob in res.artifacts.items():
        assert blob.startswith(b"\x89PNG")
        assert f"]({name})" in res.markdown
    assert res.data["best_predictor"] == "x1"
    json.dumps(res.data)


def test_sample_sales_data_is_reproducible_and_has_the_documented_defects(tmp_path: Path):
    out = tmp_path / "sales.csv"
    subprocess.run([sys.executable, str(ROOT / "examples/data/make_sample_data.py"), str(out)], check=True)
    assert out.read_bytes() == SALES.read_bytes()
    loaded = run_tool("load_data", tin(SALES)).data
    assert loaded["rows"] == 200 and sum(loaded["missing"].values()) == 6
    assert loaded["types"]["region"] == "categorical" and loaded["types"]["revenue"] == "numeric"
    assert run_tool("preprocess", tin(SALES)).data["clipped_total"] >= 2
    reg = run_tool("regression", tin(SALES, target="revenue")).data
    assert reg["coefficients"]["ad_spend"] == pytest.approx(1.8, rel=0.1) and reg["r2_test"] > 0.9
