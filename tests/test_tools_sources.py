"""Report tools: facts carry correct pointers (line numbers, columns, JSON paths) to their sources."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from utils.errors import ToolError
from utils.tools import ToolInput, run_tool
from utils.tools.sources import first_value, read_source

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "data" / "sources"

NOTES = """# Title

Intro without numbers. Revenue grew 12% in 2025.
Churn fell to 3.5 percent, a record
low for the firm. Nothing here.

## Costs
- Rent is $1,200 a month.

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


def test_text_facts_point_at_the_right_lines(tmp_path: Path):
    p = tmp_path / "notes.md"
    p.write_text(NOTES, encoding="utf-8")
    res = run_tool("extract_facts", tin([p]))
    facts = by_pointer(res.data["facts"])
    lines = NOTES.splitlines()
    assert [f["text"] for f in facts["notes.md:L1"]] == ["Heading: Title"]
    assert facts["notes.md:L3"][0]["text"] == "Revenue grew 12% in 2025."
    assert facts["notes.md:L3"][0]["value"] == 12.0
    assert "Revenue grew 12%" in lines[3 - 1]
    # a sentence wrapped over two lines is kept whole and points at both lines
    assert facts["notes.md:L4-L5"][0]["text"] == "Churn fell to 3.5 percent, a record low for the firm."
    assert facts["notes.md:L4-L5"][0]["value"] == 3.5
    assert facts["notes.md:L7"][0]["text"] == "Heading: Costs"
    assert facts["notes.md:L8"][0]["text"] == "Rent is $1,200 a month." and facts["notes.md:L8"][0]["value"] == 1200
    texts = " ".join(f["text"] for f in res.data["facts"])
    assert "Intro without numbers" not in texts and "Nothing here" not in texts and "code 123" not in texts
    assert res.data["sources"] == ["notes.md"]
    assert "- Revenue grew 12% in 2025. [source: notes.md:L3]" in res.markdown


def test_csv_facts(tmp_path: Path):
    p = tmp_path / "s.csv"
    p.write_text("name,score,age\na,7,30\nb,9,NA\nc,4,41\n", encoding="utf-8")
    facts = by_pointer(run_tool("extract_facts", tin([p])).data["facts"])
    score = facts["s.csv:column 'score' (rows 2-4)"][0]
    assert score["value"] == pytest.approx(statistics.mean([7, 9, 4]))
    assert "min 4" in score["text"] and "max 9" in score["text"] and "3 values" in score["text"]
    age = facts["s.csv:column 'age' (rows 2-4)"][0]
    assert age["value"] == pytest.approx(35.5) and "2 values" in age["text"]
    assert "s.csv:column 'name' (rows 2-4)" not in facts


def test_json_facts_have_paths(tmp_path: Path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"a": {"b": [1, 2, 3.5]}, "ok": True, "label": "x", "odd key": 4}), encoding="utf-8")
    facts = run_tool("extract_facts", tin([p])).data["facts"]
    got = {f["pointer"]: f["value"] for f in facts}
    assert got == {"m.json:$.a.b[0]": 1.0, "m.json:$.a.b[1]": 2.0, "m.json:$.a.b[2]": 3.5,
                   'm.json:$["odd key"]': 4.0}


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
    with pytest.raises(ToolError, match="--input"):
        run_tool("extract_facts", tin([]))


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


def test_first_value_prefers_percentages_and_skips_years():
    assert first_value("In 2025 sales rose 12% to $3.4m") == 12.0
    assert first_value("In 2025 we sold 1,500 units") == 1500.0
    assert first_value("Founded 1999") == 1999.0
    assert first_value("no numbers") is None


def test_chart_facts_png_and_empty_note(tmp_path: Path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"v": list(range(20))}), encoding="utf-8")
    facts = run_tool("extract_facts", tin([p])).data
    res = run_tool("chart_facts", tin([], deps={"t1": {"data": facts, "output": ""}}))
    assert res.artifacts["facts.png"].startswith(b"\x89PNG")
    assert len(res.data["charted"]) == 12 and res.data["charted"][3]["value"] == 3.0
    assert "](facts.png)" in res.markdown
    empty = run_tool("chart_facts", tin([], deps={"t1": {"data": None}, "t2": {"data": {"facts": [
        {"text": "Heading", "source": "x", "pointer": "x:L1", "value": None}]}}}))
    assert empty.artifacts == {} and empty.data == {"charted": []} and "No numeric facts" in empty.markdown


def test_sample_sources_parse():
    paths = sorted(SAMPLES.iterdir())
    assert {p.name for p in paths} == {"market_notes.md", "survey.csv", "metrics.json"}
    res = run_tool("extract_facts", tin(paths))
    json.dumps(res.data)
    assert set(res.data["sources"]) == {p.name for p in paths}
    pointers = {f["pointer"] for f in res.data["facts"]}
    assert "metrics.json:$.sales.by_quarter[3]" in pointers
    assert any(p.startswith("survey.csv:column 'satisfaction'") for p in pointers)
    lines = (SAMPLES / "market_notes.md").read_text(encoding="utf-8").splitlines()
    for f in res.data["facts"]:
        if f["source"] == "market_notes.md" and not f["text"].startswith("Heading"):
            first, _, last = f["pointer"].rsplit(":L", 1)[1].partition("-L")
            assert f["text"].split()[0] in lines[int(first) - 1]
            assert f["text"].split()[-1] in lines[int(last or first) - 1]
