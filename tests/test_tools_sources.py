"""Report tools: facts are quantities with a unit, what they measure and a file:line pointer."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from utils.errors import ToolError
from utils.tools import ToolInput, run_tool
from utils.tools.quantities import quantities
from utils.tools.sources import MAX_JSON_DEPTH, NO_SOURCES, check_source, read_source

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "data" / "sources"

# A CI-migration status note: headings, versions, ports, dates, ids and times among the real quantities.
NOTES = """# CI migration status 2.0

Intro without numbers. Build time fell from 42 min to 17 min after the move.
Flaky tests dropped to 3.5 percent, a record
low for the team. Nothing here.

## Runners in 2025
- Each runner costs $1,200 a month.
- We upgraded to version 3.12.1 and Python 3.11 on port 8080 (localhost:5432) on 2025-05-01 at 10:30.
- Ticket #4521 and issue 77 track it since March 2024.

| stage | duration_min | share |
|---|---:|---:|
| tests | 11 | 64% |
| lint | 4 | 12% |

```
code 123 is skipped
```
"""


def tin(paths: list[Path], inputs: list[str] | None = None, deps: dict | None = None) -> ToolInput:
    return ToolInput(task={"id": "t2", "title": "facts", "inputs": inputs or []}, data_path=None,
                     input_paths=paths, deps=deps or {}, params={}, goal="test")


def by_pointer(facts: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in facts:
        out.setdefault(f["pointer"], []).append(f)
    return out


def test_text_facts_are_quantities_with_units_and_lines(tmp_path: Path):
    p = tmp_path / "ci.md"
    p.write_text(NOTES, encoding="utf-8")
    res = run_tool("extract_facts", tin([p]))
    facts = by_pointer(res.data["facts"])
    build = facts["ci.md:L3"]
    # "fell from 42 to 17" is one claim whose current figure is 17
    assert [(f["value"], f["unit"], f["earlier"], f["what"]) for f in build] == [(17.0, "min", 42.0, "Build time fell")]
    # a sentence wrapped over two lines is kept whole and points at the line of its number
    flaky = facts["ci.md:L4"][0]
    assert flaky["text"] == "Flaky tests dropped to 3.5 percent, a record low for the team."
    assert (flaky["value"], flaky["unit"], flaky["what"], flaky["line"]) == (3.5, "%", "Flaky tests", 4)
    assert (facts["ci.md:L8"][0]["value"], facts["ci.md:L8"][0]["unit"]) == (1200.0, "$")
    # table cells: the unit comes from the cell or the column name
    assert {(f["what"], f["value"], f["unit"]) for f in facts["ci.md:L14"]} == {
        ("tests duration", 11.0, "min"), ("tests share", 64.0, "%")}
    values = {f["value"] for f in res.data["facts"]}
    # headings, versions, ports, dates, times, ids and years are not facts
    assert not {2.0, 3.12, 3.11, 8080.0, 5432.0, 2025.0, 10.0, 30.0, 4521.0, 77.0, 2024.0, 123.0} & values
    assert not any(f["pointer"] in ("ci.md:L1", "ci.md:L7", "ci.md:L9", "ci.md:L10") for f in res.data["facts"])
    assert all(f["unit"] and f["what"] for f in res.data["facts"])
    assert "- Each runner costs $1,200 a month. [source: ci.md:L8] → Each runner: $1,200 (a month)" in res.markdown


def test_quantities_read_the_unit_and_measure():
    got = [(q.what, q.value, q.unit) for q in quantities(
        "Pipelines account for 38% of spend, runners for 27% and storage for 14%.")]
    assert got == [("Pipelines", 38.0, "%"), ("runners", 27.0, "%"), ("storage", 14.0, "%")]
    assert [(q.value, q.unit) for q in quantities("We now run 12 stages and 3 runners.")] == [
        (12.0, "stages"), (3.0, "runners")]
    assert quantities("Released v2.3 in 2024 on port 443 as job #1045.") == []


def test_csv_facts_skip_ids_and_dates(tmp_path: Path):
    p = tmp_path / "jobs.csv"
    p.write_text("job_id,year,runner,duration_min,queue_s\n101,2024,a,7,30\n102,2024,b,9,NA\n103,2025,c,4,41\n",
                 encoding="utf-8")
    facts = by_pointer(run_tool("extract_facts", tin([p])).data["facts"])
    dur = facts["jobs.csv:L2-L4 (column 'duration_min')"][0]
    assert dur["value"] == pytest.approx(statistics.mean([7, 9, 4])) and dur["unit"] == "min"
    assert "min 4" in dur["text"] and "max 9" in dur["text"] and "3 rows" in dur["text"]
    queue = facts["jobs.csv:L2-L4 (column 'queue_s')"][0]
    assert queue["value"] == pytest.approx(35.5) and queue["unit"] == "s"
    assert set(facts) == {"jobs.csv:L2-L4 (column 'duration_min')", "jobs.csv:L2-L4 (column 'queue_s')"}


def test_json_facts_have_lines_units_and_skip_labels(tmp_path: Path):
    p = tmp_path / "m.json"
    doc = {"service": {"port": 8080, "version": 3, "build_id": 991},
           "ci": {"success_rate_pct": 97.5, "runs": [10, 12], "released_year": 2024},
           "ok": True, "odd name": 4}
    p.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    facts = run_tool("extract_facts", tin([p])).data["facts"]
    lines = p.read_text(encoding="utf-8").splitlines()
    got = {(f["value"], f["unit"]) for f in facts}
    # a key with no unit suffix gives no unit (its name is what is measured, never the unit)
    assert got == {(97.5, "%"), (10.0, "runs"), (12.0, "runs"), (4.0, "")}
    assert {f["what"] for f in facts if f["unit"] == "runs"} == {"ci runs #1", "ci runs #2"}
    for f in facts:
        line = int(f["pointer"].split(":L")[1].split()[0])
        assert f"{f['value']:g}" in lines[line - 1]


def test_deeply_nested_json_is_one_line_error(tmp_path: Path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    with pytest.raises(ToolError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        read_source(p)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"s": '\\"[[[[' * 100, "n_runs": 5}), encoding="utf-8")  # brackets in strings are text
    assert read_source(ok).parsed["n_runs"] == 5
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"latency (p95)_ms": 120, "größe_kg": 7}, ensure_ascii=False, indent=1), encoding="utf-8")
    got = {f["unit"]: f["pointer"] for f in run_tool("extract_facts", tin([keys])).data["facts"]}
    assert got == {"ms": 'keys.json:L2 ($["latency (p95)_ms"])', "kg": 'keys.json:L3 ($["größe_kg"])'}


def test_check_source_finds_a_ragged_csv(tmp_path: Path):
    p = tmp_path / "ragged.csv"
    p.write_text("a,b\n1,2\n3,4,5\n6,7\n", encoding="utf-8")
    read_source(p)  # reading alone does not parse the rows...
    with pytest.raises(ToolError, match="line 3 has 3 fields"):
        check_source(p)  # ...the check does, before any planning call
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,2\n3,4\n", encoding="utf-8")
    assert check_source(good).kind == "csv"


def test_long_single_spaced_paragraph_keeps_pointers(tmp_path: Path):
    body = "\n".join(f"Queue {i} waited {i % 50 + 1} minutes." for i in range(5000))
    p = tmp_path / "big.txt"
    p.write_text(body, encoding="utf-8")
    facts = run_tool("extract_facts", tin([p])).data["facts"]
    assert len(facts) == 200  # capped per source
    assert facts[123]["pointer"] == "big.txt:L124" and facts[123]["value"] == 123 % 50 + 1


def test_task_inputs_select_files(tmp_path: Path):
    a, b = tmp_path / "a.md", tmp_path / "b.txt"
    a.write_text("A has 1 fact.\n", encoding="utf-8")
    b.write_text("B has 2 facts.\n", encoding="utf-8")
    res = run_tool("extract_facts", tin([a, b], inputs=["b.txt", "zzz.md"]))
    assert res.data["sources"] == ["b.txt"] and res.data["unmatched"] == ["zzz.md"]
    assert res.data["facts"][0]["pointer"] == "b.txt:L1"
    assert run_tool("extract_facts", tin([a, b], inputs=[str(a)])).data["sources"] == ["a.md"]
    with pytest.raises(ToolError, match="none of the task inputs"):
        run_tool("extract_facts", tin([a, b], inputs=["/etc/passwd"]))
    empty = run_tool("extract_facts", tin([]))
    assert empty.data["facts"] == [] and empty.markdown == NO_SOURCES


@pytest.mark.parametrize("name, content, message", [
    ("missing.md", None, "not found"),
    ("script.py", b"print(1)", "unsupported source type .py"),
    ("latin.txt", b"caf\xe9 12%", "not UTF-8"),
    ("broken.json", b"{\"a\": ", "not valid JSON \\(line 1"),
])
def test_read_source_errors(tmp_path: Path, name: str, content: bytes | None, message: str):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ToolError, match=message):
        read_source(p)


def test_chart_compares_like_with_like(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import utils.tools.facts_chart as facts_chart
    figures = []
    real = facts_chart.new_figure
    monkeypatch.setattr(facts_chart, "new_figure", lambda *a: figures.append(real(*a)) or figures[-1])
    p = tmp_path / "ci.md"
    p.write_text("Build time fell from 42 min to 17 min. Deploys take 9 min.\n"
                 "Flaky tests are 3.5% and cache misses 12.34%. Runners cost $1,200.\n"
                 "Usage grew 6.5% and then rose 2% more. We spent $48,000 of a $60,000 allocation.\n", encoding="utf-8")
    q = tmp_path / "m.json"
    q.write_text(json.dumps({"sales": {"by_quarter": [1020, 1020, 1265, 1510]}}), encoding="utf-8")
    facts = run_tool("extract_facts", tin([p, q])).data
    res = run_tool("chart_facts", tin([], deps={"t1": {"data": facts, "output": ""}}))
    assert res.artifacts["facts.png"].startswith(b"\x89PNG")
    # shares and growth rates are both "%" but never share a panel
    assert sorted(res.data["kinds"]) == ["amount (min)", "change (%)", "money ($)", "sales by quarter", "share (%)"]
    charted = {(c["kind"], c["value"]) for c in res.data["charted"]}
    assert {("amount (min)", 17.0), ("amount (min)", 9.0), ("change (%)", 6.5), ("change (%)", 2.0),
            ("money ($)", 1200.0), ("money ($)", 48000.0)} <= charted
    assert ("share (%)", 12.34) in charted  # values as the source states them, not rounded
    assert {c["value"] for c in res.data["charted"] if c["kind"] == "sales by quarter"} == {1020.0, 1265.0, 1510.0}
    assert "](facts.png)" in res.markdown and "of $60,000" in res.markdown
    texts = [t for ax in figures[0].axes for t in [ax._left_title, *ax.texts, *ax.get_yticklabels()]]
    assert any("$" in t.get_text() for t in texts) or any("$" in k for k in res.data["kinds"])
    assert texts and not any(t.get_parse_math() for t in texts)  # "$48,000 ... $60,000" is never mathtext
    empty = run_tool("chart_facts", tin([], deps={"t1": {"data": None}, "t2": {"data": {"facts": [
        {"text": "x", "file": "x", "pointer": "x:L1", "value": 3.0, "unit": "%"}]}}}))
    assert empty.artifacts == {} and empty.data == {"charted": []} and "nothing to compare" in empty.markdown


def test_bar_labels_tell_bars_apart_and_dollars_are_text():
    from utils.tools.facts_chart import bar_labels
    same = [{"what": "sales by quarter", "line": 3}, {"what": "sales by quarter", "line": 4},
            {"what": "mean net generation", "group": "Nuclear", "line": 2},
            {"what": "mean net generation", "group": "Solar", "line": 9}]
    labels = bar_labels(same)
    assert len(set(labels)) == 4 and "Nuclear" in labels[2]


def test_sample_sources_parse():
    paths = sorted(SAMPLES.iterdir())
    res = run_tool("extract_facts", tin(paths))
    json.dumps(res.data)
    assert set(res.data["sources"]) == {p.name for p in paths}
    assert all(":L" in f["pointer"] and f["line"] > 0 for f in res.data["facts"])
    assert all(f["unit"] for f in res.data["facts"] if f["file"] == "market_notes.md")
