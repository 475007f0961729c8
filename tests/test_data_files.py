"""Files as they come: each layout quirk of real data files has a small file written here, and the
test checks the values read back against the text written (so a wrong reading fails)."""
from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

import pytest

from utils.errors import ToolError
from utils.tools import ToolInput, run_tool
from utils.tools.dataset import DATE, ID, NUMERIC, _classify, default_target, open_dataset
from utils.tools.stats import describe_dates, outliers


def tin(data_path: Path, target: str | None = None) -> ToolInput:
    return ToolInput(task={"id": "t1", "title": "t", "inputs": []}, data_path=data_path, input_paths=[],
                     deps={}, params={}, goal="test", target=target)


def kinds(path: Path) -> dict[str, str]:
    return {c.name: c.kind for c in open_dataset(path).columns}


def test_whitespace_separated_file_with_quoted_header(tmp_path: Path):
    rows = [[i, round(2 + i / 10, 2), 20 + i % 5, i % 2] for i in range(1, 13)]
    text = "'OBS' 'GPA' 'TUCE' 'GRADE'\n" + "".join(f"{a}  {b}\t {c} {d}\n" for a, b, c, d in rows)
    p = tmp_path / "spector.dat"
    p.write_text(text)
    ds = open_dataset(p)
    assert ds.names() == ["OBS", "GPA", "TUCE", "GRADE"] and ds.fmt["layout"] == "whitespace-separated"
    mean = run_tool("describe", tin(p)).data["numeric"]["GPA"]["mean"]
    assert mean == pytest.approx(sum(r[1] for r in rows) / len(rows), rel=1e-12)


def test_whitespace_file_with_a_ragged_line_is_an_error_naming_it(tmp_path: Path):
    p = tmp_path / "w.txt"
    p.write_text("x y z\n1 2 3\n4 5 6\n7 8\n9 10 11\n")
    with pytest.raises(ToolError, match="line 4 has 2 whitespace-separated fields, line 1 has 3"):
        open_dataset(p)


def test_tab_separated_file(tmp_path: Path):
    p = tmp_path / "t.tsv"
    p.write_text("name\tscore\tgroup\n" + "".join(f"n {i}\t{i * 1.5}\tg{i % 3}\n" for i in range(10)))
    ds = open_dataset(p)
    assert ds.fmt["delimiter"] == "\t" and kinds(p)["score"] == NUMERIC
    assert run_tool("describe", tin(p)).data["numeric"]["score"]["max"] == 13.5


def test_sklearn_metadata_first_line(tmp_path: Path):
    rng = random.Random(3)
    rows = [[round(rng.uniform(4, 8), 1), round(rng.uniform(2, 4), 1), i % 3] for i in range(30)]
    p = tmp_path / "iris_like.csv"
    p.write_text("30,2,setosa,versicolor,virginica\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    ds = open_dataset(p)
    assert ds.names() == ["column1", "column2", "target"] and ds.n_rows == 30
    assert ds.fmt["class_labels"] == ["setosa", "versicolor", "virginica"]
    desc = run_tool("describe", tin(p)).data["numeric"]
    assert desc["column1"]["mean"] == pytest.approx(sum(r[0] for r in rows) / 30, rel=1e-12)
    assert "metadata" in run_tool("load_data", tin(p)).markdown


def test_file_without_header_gets_numbered_columns(tmp_path: Path):
    p = tmp_path / "nohead.csv"
    p.write_text("".join(f"{i},{i * i},{(i * 7) % 5}\n" for i in range(1, 21)))
    ds = open_dataset(p)
    assert ds.names() == ["column1", "column2", "column3"] and ds.n_rows == 20  # the first line is data
    assert run_tool("describe", tin(p)).data["numeric"]["column2"]["min"] == 1.0


def test_year_columns_are_time_not_ids(tmp_path: Path):
    p = tmp_path / "longley_like.csv"
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["seq", "y", "x", "YEAR"])  # an integer sequence is a row number only in the first column
        w.writerows([[5000 + i, 60000 + 700 * i + (i * 37) % 11, 83 + i * 2.1, 1947 + i] for i in range(16)])
    assert kinds(p) == {"y": NUMERIC, "x": NUMERIC, "YEAR": NUMERIC, "seq": ID}  # 5000.. is no year
    ds = open_dataset(p)
    assert ds.column("YEAR").year and default_target(ds) == "x"  # years are time, never the target by rule
    charts = run_tool("charts", tin(p, target="y"))
    assert charts.data["time"] == "YEAR" and "over_time.png" in charts.artifacts


def test_yes_no_columns_keep_the_files_labels(tmp_path: Path):
    labels = ["yes", "no", "no", "yes", "yes"] * 4
    p = tmp_path / "yn.csv"
    p.write_text("churned,spend\n" + "".join(f"{v},{i}\n" for i, v in enumerate(labels)))
    counts = run_tool("describe", tin(p)).data["categorical"]["churned"]["counts"]
    assert counts == {"yes": 12, "no": 8}


@pytest.mark.parametrize("values, fmt, first, last", [
    (["Jan 1 2000", "Feb 1 2000", "Mar 1 2000", "Dec 11 2001"], "%b %d %Y", "2000-01-01", "2001-12-11"),
    (["2021-01", "2021-02", "2021-03", "2022-11"], "%Y-%m", "2021-01-01", "2022-11-01"),
    (["01/02/2003", "13/02/2003", "20/03/2003", "05/04/2003"], "%d/%m/%Y", "2003-02-01", "2003-04-05"),
    (["01/13/2003", "02/02/2003", "03/20/2003", "04/05/2003"], "%m/%d/%Y", "2003-01-13", "2003-04-05"),
])
def test_common_date_formats_are_dates(tmp_path: Path, values: list[str], fmt: str, first: str, last: str):
    p = tmp_path / "d.csv"
    p.write_text("when,value\n" + "".join(f"{v},{i * 1.5 + (i % 3)}\n" for i, v in enumerate(values * 3)))
    ds = open_dataset(p)
    assert ds.column("when").kind == DATE and ds.fmt["date_formats"] == {"when": fmt}
    assert describe_dates(ds)["when"] == {"from": first, "to": last, "missing": 0}
    assert "over_time.png" in run_tool("charts", tin(p)).artifacts


def test_ambiguous_day_month_order_is_inferred_from_the_values(tmp_path: Path):
    """Every value reads both ways; day-first makes consecutive days, month-first jumps a month a row."""
    days = [dt.date(2003, 2, 1) + dt.timedelta(days=i) for i in range(12)]
    p = tmp_path / "daily.csv"
    p.write_text("day,v\n" + "".join(f"{d:%d/%m/%Y},{i % 5}\n" for i, d in enumerate(days)))
    ds = open_dataset(p)
    assert ds.fmt["date_formats"] == {"day": "%d/%m/%Y"}
    assert describe_dates(ds)["day"]["to"] == "2003-02-12"
    q = tmp_path / "daily_us.csv"
    q.write_text("day,v\n" + "".join(f"{d:%m/%d/%Y},{i % 5}\n" for i, d in enumerate(days)))
    assert open_dataset(q).fmt["date_formats"] == {"day": "%m/%d/%Y"}


def test_text_that_is_not_a_date_stays_text(tmp_path: Path):
    p = tmp_path / "codes.csv"
    p.write_text("code,v\n" + "".join(f"{i % 4}-{i % 3},{i}\n" for i in range(20)))
    assert kinds(p)["code"] == "categorical"  # '1-2' would parse as year 1, month 2


def test_outlier_rows_are_the_files_row_numbers(tmp_path: Path):
    values = [10.0 + (i % 7) for i in range(200)]
    values[136], values[17] = 400.0, -300.0          # data rows 137 and 18
    p = tmp_path / "o.csv"
    p.write_text("v,w\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values)))
    far = outliers(open_dataset(p))["v"]
    assert [(r["row"], r["value"]) for r in far["rows"]] == [(137, 400.0), (18, -300.0)]  # farthest first
    assert (far["low"], far["high"]) == (1, 1)


def test_integer_sequence_is_an_id_even_with_approximate_distinct_counts():
    """Large files count distinct values with HyperLogLog (a few per cent off): 95 % still means all."""
    assert _classify("order_no", "BIGINT", 10**6, 10**6, 950_000, 1, 10**6, exact=False, first=True).kind == ID
    assert _classify("order_no", "BIGINT", 10**6, 10**6, 950_000, 1, 10**6, exact=True).kind == NUMERIC


def test_charts_draw_the_raw_values(tmp_path: Path):
    """The histogram's values are the file's: the outlier kept, a missing value left out (no median spike)."""
    import numpy as np

    from utils.tools.data_charts import floats
    from utils.tools.stats import sample

    values = [str(10 + i % 9) for i in range(40)]
    values[5], values[11], values[30] = "250", "", "NA"
    p = tmp_path / "h.csv"
    p.write_text("v,w\n" + "".join(f"{v},{i % 4}\n" for i, v in enumerate(values)))
    drawn = floats(sample(open_dataset(p), ["v"])["v"])
    assert sorted(drawn[np.isfinite(drawn)]) == sorted(float(v) for v in values if v not in ("", "NA"))
    assert "histograms.png" in run_tool("charts", tin(p)).artifacts


def test_row_numbers_are_ids_anywhere_but_years_and_time_steps_are_data(tmp_path: Path):
    """A careful user's reading: 1..n in file order is a row number wherever it stands (an export's
    index column), an `id` name with distinct values is an ID, years and a `t`/`month` step are time,
    and a sequence that is not 1..n in file order outside the first column is data (Wampler's x)."""
    p = tmp_path / "rows.csv"
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["y", "row", "t", "customer_id", "year", "x", "shuffled"])
        order = [(i * 7) % 12 + 1 for i in range(12)]   # 1..12, all distinct, not in file order
        w.writerows([[round(3.5 * i + (i * 13) % 5, 2), i + 1, i + 1, 9000 + 3 * i, 1990 + i, i, order[i]]
                     for i in range(12)])
    assert kinds(p) == {"y": NUMERIC, "row": ID, "t": NUMERIC, "customer_id": ID, "year": NUMERIC,
                        "x": NUMERIC, "shuffled": NUMERIC}
    ds = open_dataset(p)
    assert ds.column("row").note == "ID-like: the row numbers 1..n in file order" and ds.column("year").year
