"""Real data sets that ship inside installed packages (statsmodels, scikit-learn, vega_datasets), read
as they come: every count, missing count, mean, SD, min, max, category count and correlation the tools
report equals an independent pandas computation on the raw file (rtol 1e-9). Files are copied to
tmp_path (never downloaded); a data set whose package is missing is skipped, not failed."""
from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

pd = pytest.importorskip("pandas")

from utils.tools import ToolInput, run_tool  # noqa: E402
from utils.tools.dataset import open_dataset  # noqa: E402
from utils.tools.stats import column_summary  # noqa: E402

RTOL = 1e-9


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def copy(package: str, rel: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        src = package_dir(package) / rel
        return Path(shutil.copy(src, tmp / src.name))
    return make


def gunzip(package: str, rel: str, name: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        out = tmp / name
        out.write_bytes(gzip.decompress((package_dir(package) / rel).read_bytes()))
        return out
    return make


def vega_json_as_csv(rel: str) -> Callable[[Path], Path]:
    """vega's cars.json written as a CSV with the csv module (null -> empty cell), nothing else changed."""
    def make(tmp: Path) -> Path:
        rows = json.loads((package_dir("vega_datasets") / rel).read_text(encoding="utf-8"))
        out = tmp / (Path(rel).stem + ".csv")
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        return out
    return make


@dataclass
class Case:
    package: str
    make: Callable[[Path], Path]
    read: Callable[[Path], "pd.DataFrame"]          # the independent reading of the same file
    left_out: set[str] = field(default_factory=set)  # columns the app leaves out (ID-like, dates, text)
    dates: set[str] = field(default_factory=set)


def metadata_csv(p: Path) -> "pd.DataFrame":
    n_features = int(p.read_text().split("\n", 1)[0].split(",")[1])
    return pd.read_csv(p, skiprows=1, header=None,
                       names=[f"column{i}" for i in range(1, n_features + 1)] + ["target"])


def whitespace(p: Path, **kw) -> "pd.DataFrame":
    return pd.read_csv(p, sep=r"\s+", quotechar="'", **kw)


SM = "statsmodels.datasets"
CASES = {
    "statsmodels fair": Case("statsmodels", copy("statsmodels", "datasets/fair/fair.csv"), pd.read_csv),
    "statsmodels longley": Case("statsmodels", copy("statsmodels", "datasets/longley/longley.csv"), pd.read_csv,
                                left_out={"Obs"}),
    "statsmodels spector (whitespace)": Case("statsmodels", copy("statsmodels", "datasets/spector/spector.csv"),
                                             whitespace, left_out={"OBS"}),
    "statsmodels star98": Case("statsmodels", copy("statsmodels", "datasets/star98/star98.csv"), pd.read_csv),
    "sklearn iris (metadata line)": Case("sklearn", copy("sklearn", "datasets/data/iris.csv"), metadata_csv),
    "sklearn wine (metadata line)": Case("sklearn", copy("sklearn", "datasets/data/wine_data.csv"), metadata_csv),
    "sklearn breast_cancer (metadata line)": Case("sklearn", copy("sklearn", "datasets/data/breast_cancer.csv"),
                                                  metadata_csv),
    "sklearn diabetes (whitespace, no header)": Case(
        "sklearn", gunzip("sklearn", "datasets/data/diabetes_data_raw.csv.gz", "diabetes.txt"),
        lambda p: whitespace(p, header=None, names=[f"column{i}" for i in range(1, 11)])),
    "sklearn linnerud (whitespace)": Case("sklearn", copy("sklearn", "datasets/data/linnerud_physiological.csv"),
                                          whitespace),
    "vega cars (missing values)": Case("vega_datasets", vega_json_as_csv("_data/cars.json"), pd.read_csv,
                                       left_out={"Name", "Year"}, dates={"Year"}),
    "vega stocks (Jan 1 2000)": Case("vega_datasets", copy("vega_datasets", "_data/stocks.csv"), pd.read_csv,
                                     left_out={"date"}, dates={"date"}),
    "vega seattle-weather": Case("vega_datasets", copy("vega_datasets", "_data/seattle-weather.csv"), pd.read_csv,
                                 left_out={"date"}, dates={"date"}),
    "vega iowa-electricity": Case("vega_datasets", copy("vega_datasets", "_data/iowa-electricity.csv"),
                                  pd.read_csv, left_out={"year"}, dates={"year"}),
    "vega us-employment": Case("vega_datasets", copy("vega_datasets", "_data/us-employment.csv"), pd.read_csv,
                               left_out={"month"}, dates={"month"}),
}


def tin(path: Path) -> ToolInput:
    return ToolInput(task={"id": "t1", "title": "t", "inputs": []}, data_path=path, input_paths=[],
                     deps={}, params={}, goal="test")


def close(a: float | None, b: float) -> bool:
    return (a is None and pd.isna(b)) or (a is not None and a == pytest.approx(float(b), rel=RTOL, abs=1e-12))


@pytest.mark.parametrize("name", list(CASES))
def test_figures_equal_pandas_on_the_raw_file(name: str, tmp_path: Path):
    case = CASES[name]
    if package_dir(case.package) is None:
        pytest.skip(f"{case.package} is not installed")
    path = case.make(tmp_path)
    df = case.read(path)
    ds = open_dataset(path)
    assert ds.n_rows == len(df) and ds.names() == [str(c) for c in df.columns]
    assert {c.name for c in ds.columns if not c.usable} == case.left_out, [(c.name, c.note) for c in ds.columns]
    assert {c.name for c in ds.columns if c.kind == "date"} == case.dates

    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and c not in case.left_out]
    summary = column_summary(ds)
    assert list(summary) == numeric
    for col in numeric:
        s, raw = summary[col], df[col]
        assert (s["n"], s["missing"]) == (int(raw.count()), int(raw.isna().sum())), col
        for key, want in (("mean", raw.mean()), ("sd", raw.std()), ("min", raw.min()), ("max", raw.max())):
            assert close(s[key], want), (col, key, s[key], want)

    described = run_tool("describe", tin(path)).data
    for col, info in described["categorical"].items():
        counts = df[col].astype(str)[df[col].notna()].value_counts()
        assert info["missing"] == int(df[col].isna().sum())
        assert all(info["counts"][k] == int(counts[k]) for k in info["counts"]), col
        assert sorted(info["counts"].values(), reverse=True) == sorted(counts.values, reverse=True)[:20]

    corr = run_tool("correlations", tin(path)).data
    if len(numeric) >= 2:
        want = df[corr["columns"]].corr()  # pairwise-complete rows, Pearson
        for i, a in enumerate(corr["columns"]):
            for j, b in enumerate(corr["columns"]):
                assert close(corr["matrix"][i][j], want.loc[a, b]), (a, b)


def test_raw_data_not_clipped_on_fair(tmp_path: Path):
    """The issue's example: `affairs` has mean 0.7055 and max 57.6 in the file (clipping showed 0.28, 1.21)."""
    if package_dir("statsmodels") is None:
        pytest.skip("statsmodels is not installed")
    path = copy("statsmodels", "datasets/fair/fair.csv")(tmp_path)
    df = pd.read_csv(path)
    affairs = run_tool("describe", tin(path)).data["numeric"]["affairs"]
    assert affairs["max"] == df["affairs"].max() == pytest.approx(57.599991)
    q1, q3 = df["affairs"].quantile([0.25, 0.75])
    fence = q3 + 1.5 * (q3 - q1)
    assert affairs["outliers"] == int((df["affairs"] > fence).sum() + (df["affairs"] < q1 - 1.5 * (q3 - q1)).sum())
    far = run_tool("preprocess", tin(path)).data["outliers"]["affairs"]
    top = df["affairs"].sort_values(ascending=False, kind="stable").head(3)
    assert [r["row"] for r in far["rows"][:3]] == [int(i) + 1 for i in top.index]  # row 1 = first data row
    assert [r["value"] for r in far["rows"][:3]] == list(top.values)


def test_stocks_dates_chart_over_time(tmp_path: Path):
    """vega's stocks.csv writes dates as `Jan 1 2000`: they are dates, and the prices are drawn over them."""
    if package_dir("vega_datasets") is None:
        pytest.skip("vega_datasets is not installed")
    path = copy("vega_datasets", "_data/stocks.csv")(tmp_path)
    dates = pd.to_datetime(pd.read_csv(path)["date"], format="%b %d %Y")
    described = run_tool("describe", tin(path)).data["dates"]["date"]
    assert (described["from"], described["to"]) == (str(dates.min().date()), str(dates.max().date()))
    charts = run_tool("charts", tin(path))
    assert charts.data["time"] == "date" and charts.data["time_columns"] == ["price"]
    assert charts.data["series"] == "symbol"  # one line per stock, not a cloud of points
    assert charts.artifacts["over_time.png"].startswith(b"\x89PNG")
