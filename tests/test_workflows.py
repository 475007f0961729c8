"""The four workflows end to end: `main.py` (in-process, see tests/helpers.py), against the fake server and offline.

Each run is checked for what a user relies on: exit code 0, `output.md` and `run.json` present and
consistent with each other, and every figure a tool reported recomputed here, independently of the
app (csv + statistics for the analysis, a small CPM for the project, the source files for the report).
"""
from __future__ import annotations

import csv
import json
import random
import re
import statistics
from pathlib import Path

import pytest
import yaml

from fakes.fake_llm import FakeLLMServer
from tests.helpers import ROOT
from tests.helpers import Run
from tests.helpers import run_app as run_main
from tests.scripted import Script, request_kind
from utils.tools.data_charts import plain

EXAMPLES = ROOT / "examples"
WORKFLOWS = ("blog", "report", "analysis", "project")
TEST_KEY = "sk-test"  # what tests.helpers.run_app sets as OPENAI_API_KEY
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


# ---------------------------------------------------------------- plans and scripts

def load_yaml(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))


def yaml_plan(name: str, goal: str | None = None) -> dict:
    """The workflow's `offline_plan` as a model would answer it: `per_input` tasks become one task per
    sample source with `inputs: [file name]`, and dependencies on the template expand to every copy."""
    spec = load_yaml(name)
    sources = [Path(p).name for p in spec.get("sample_inputs", [])]
    tasks: list[dict] = []
    groups: dict[str, list[str]] = {}
    for raw in spec["offline_plan"]["tasks"]:
        raw = dict(raw)
        if raw.pop("per_input", False):
            groups[raw["id"]] = []
            for i, source in enumerate(sources, 1):
                tid = f"{raw['id']}_{i}"
                groups[raw["id"]].append(tid)
                tasks.append({**raw, "id": tid, "title": f"{raw['title']}: {source}", "inputs": [source]})
        else:
            tasks.append(raw)
    for t in tasks:
        t["depends_on"] = [d for dep in t.get("depends_on", []) for d in groups.get(dep, [dep])]
        t.setdefault("instructions", t["title"])
    return {"goal": goal or spec["default_topic"], "notes": spec["offline_plan"].get("notes", ""), "tasks": tasks}


def sample_breakdown() -> dict:
    return load_yaml("project")["roles"]["breakdown"]["offline_data"]


def model_breakdown() -> dict:
    """The shipped breakdown with the user-facing work made long, so the critical path moves:
    proves the schedule is computed from what the model answered, not from the offline sample."""
    data = json.loads(json.dumps(sample_breakdown()))
    for item in data["work_items"]:
        if item["id"] == "w4":
            item["estimate_days"] = 12
    data["summary"] = "Scripted breakdown from the fake model."
    return data


def script_for(name: str) -> Script:
    def worker(tid: str, req):
        if name == "project" and tid == "wbs":
            return json.dumps(model_breakdown())
        return f"## Section {tid}\n\nScripted text for {tid}."
    return Script(plans=[yaml_plan(name)], worker=worker)


# ---------------------------------------------------------------- checks shared by every run

def check_run(run: Run, name: str, *, provider: str, run_dir: Path | None = None) -> tuple[Path, dict, str]:
    """The run succeeded and its document, run.json and chart files agree. Returns them."""
    assert run.code == 0, run.explain()
    run_dir = run_dir or run.run_dir()
    doc_path, state_path = run_dir / "output.md", run_dir / "run.json"
    assert doc_path.is_file() and state_path.is_file(), sorted(p.name for p in run_dir.iterdir())
    doc = doc_path.read_text(encoding="utf-8")
    state = json.loads(state_path.read_text(encoding="utf-8"))
    assert state["workflow"] == name
    assert state["status"] == "ok"
    plan_ids = [t["id"] for t in state["plan"]["tasks"]]
    assert len(plan_ids) == len(set(plan_ids))
    assert set(plan_ids) == set(state["results"]), "plan task ids and result ids differ"
    assert all(r["state"] == "done" for r in state["results"].values())
    for key in ("calls", "prompt_tokens", "completion_tokens"):
        assert isinstance(state["totals"][key], int), key
    assert state["totals"]["calls"] > 0
    meta = state["meta"]
    assert meta["provider"] == provider
    for key in ("engine", "strategy") + (("model",) if provider != "offline" else ()):
        assert meta.get(key), f"run.json meta has no {key}: {meta}"
    if provider == "offline":  # no model was used: none is named as if it had been
        assert meta.get("model") is None and meta.get("base_url") is None, meta
    else:  # the model named is the one every call used
        calls = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text(encoding="utf-8").splitlines()]
        assert calls and {c["model"] for c in calls} == {meta["model"]}, (meta["model"], calls[:1])
    assert meta["strategy"] == state["options"]["strategy"]
    assert state["document"] == doc

    assembly = load_yaml(name).get("assembly", {})
    included = assembly.get("include_roles")
    summary_role = assembly.get("summary_role")
    for tid in plan_ids:
        result = state["results"][tid]
        in_doc = included is None or result["role"] in included or result["role"] == summary_role
        if in_doc:
            assert result["output"].strip() in doc, f"output of {tid} ({result['role']}) missing from output.md"
        elif result["output"].strip():
            assert result["output"].strip() not in doc, f"{tid} ({result['role']}) is not meant for the document"
        for art in result.get("artifacts") or []:
            assert (run_dir / art).is_file(), f"{tid}: artifact {art} not written"

    images = IMAGE.findall(doc)
    for rel in images:
        png = run_dir / rel
        assert png.is_file(), f"output.md links {rel}, which is not in {run_dir}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
    return run_dir, state, doc


def result_of(state: dict, role: str) -> dict:
    found = [r for r in state["results"].values() if r["role"] == role]
    assert len(found) == 1, f"expected one {role} task, got {[r['id'] for r in found]}"
    return found[0]


# ---------------------------------------------------------------- independent recomputation

def cpm(items: list[dict]) -> tuple[float, list[str]]:
    """Duration and the critical chain of a work breakdown (assumes one chain, as in the samples)."""
    by_id = {it["id"]: it for it in items}
    finish: dict[str, float] = {}

    def ef(iid: str) -> float:
        if iid not in finish:
            finish[iid] = max((ef(d) for d in by_id[iid].get("depends_on", [])), default=0.0) \
                + float(by_id[iid]["estimate_days"])
        return finish[iid]

    duration = max(ef(i) for i in by_id)
    current = max(by_id, key=ef)
    chain = [current]
    while True:
        start = ef(current) - float(by_id[current]["estimate_days"])
        preds = [d for d in by_id[current].get("depends_on", []) if abs(ef(d) - start) < 1e-9]
        if not preds:
            break
        assert len(preds) == 1, "sample should have a single critical chain"
        current = preds[0]
        chain.append(current)
    return duration, chain[::-1]


def raw_column(path: Path, column: str) -> list[float]:
    """A numeric column's values as written, the missing ones left out (csv + float, no library)."""
    missing = {"", "na", "n/a", "nan", "null"}
    with path.open(newline="", encoding="utf-8") as fh:
        return [float(row[column]) for row in csv.DictReader(fh) if row[column].strip().lower() not in missing]


# ---------------------------------------------------------------- per-workflow tool checks

def check_blog(run_dir: Path, state: dict, doc: str) -> None:
    assert sum(1 for r in state["results"].values() if r["role"] == "writer") >= 3


def check_report(run_dir: Path, state: dict, doc: str) -> None:
    sources = {p.name: p for p in (EXAMPLES / "data" / "sources").iterdir()}
    gatherers = [r for r in state["results"].values() if r["role"] == "gatherer"]
    assert sorted(s for r in gatherers for s in r["data"]["sources"]) == sorted(sources)
    checked = 0
    for r in gatherers:
        for fact in r["data"]["facts"]:
            src = sources[fact["file"]]
            pointer = fact["pointer"]
            assert pointer.startswith(f"{src.name}:L{fact['line']}")
            cited = [(int(a), int(b or a)) for a, b in re.findall(rf"\[source: {re.escape(src.name)}:L(\d+)(?:-L(\d+))?", doc)]
            assert any(a <= fact["line"] <= b for a, b in cited), pointer  # the document shows where it came from
            if src.suffix == ".md":
                line = src.read_text(encoding="utf-8").splitlines()[fact["line"] - 1]
                assert f"{fact['value']:g}" in line.replace(",", ""), (pointer, fact["value"], line)  # on that line
                assert fact["unit"] and fact["what"], pointer
                checked += 1
            elif src.suffix == ".json":
                node = json.loads(src.read_text(encoding="utf-8"))
                for key in re.findall(r"\.(\w+)|\[(\d+)\]", pointer.split("(", 1)[1].rstrip(")")[1:]):
                    node = node[key[0]] if key[0] else node[int(key[1])]
                assert float(node) == fact["value"], pointer
                checked += 1
            elif src.suffix == ".csv":
                with src.open(newline="", encoding="utf-8") as fh:
                    vals = [float(row[fact["column"]]) for row in csv.DictReader(fh)
                            if row[fact["column"]].strip().upper() != "NA"]
                assert fact["value"] == pytest.approx(statistics.fmean(vals)), pointer
                checked += 1
    assert checked >= 15
    assert "\n## Sources\n" in doc
    sources_part = doc.split("\n## Sources\n", 1)[1]
    saved = json.loads((run_dir / "facts.json").read_text(encoding="utf-8"))
    assert len(saved) == sum(len(r["data"]["facts"]) for r in gatherers)
    for name in sources:  # every file, with the number of facts it gave
        n = sum(1 for f in saved if f["file"] == name)
        assert f"- `{name}`: {n} fact{'s' if n != 1 else ''}" in sources_part, name


def check_analysis(run_dir: Path, state: dict, doc: str, data: Path | None = None) -> None:
    data = data or EXAMPLES / "data" / "sales.csv"
    stats = result_of(state, "statistician")["data"]["numeric"]
    # every column as written: missing values left out, outliers kept
    for col in ("revenue", "ad_spend", "price", "visitors"):
        values = raw_column(data, col)
        assert stats[col]["count"] == len(values)
        assert (stats[col]["min"], stats[col]["max"]) == (min(values), max(values)), col
        assert stats[col]["mean"] == pytest.approx(statistics.fmean(values), rel=1e-9), col
        assert stats[col]["median"] == pytest.approx(statistics.median(values), rel=1e-9), col
        assert stats[col]["std"] == pytest.approx(statistics.stdev(values), rel=1e-9), col
    far = result_of(state, "cleaner")["data"]["outliers"]  # the rows make_sample_data.py corrupted
    assert {(c, r["row"]) for c, o in far.items() for r in o["rows"]} == {("price", 30), ("price", 150),
                                                                           ("visitors", 99)}
    charts = result_of(state, "charter")
    assert charts["artifacts"] and all(a.endswith(".png") for a in charts["artifacts"])
    assert all(a in IMAGE.findall(doc) for a in charts["artifacts"])
    model = result_of(state, "modeller")["data"]
    saved = json.loads((run_dir / "analysis.json").read_text(encoding="utf-8"))  # the run's machine-readable result
    assert saved["target"] == "revenue" and saved["method"] == "ols" and 0 < saved["r2"] <= 1
    assert {k: model[k] for k in saved} == saved
    assert f"| R² | {plain(saved['r2'], 6)} |" in doc and f"{saved['n']:,} usable rows" in doc


def check_project(run_dir: Path, state: dict, doc: str, items: list[dict]) -> None:
    sched = result_of(state, "scheduler")
    duration, chain = cpm(items)
    assert sched["data"]["critical_path"] == chain
    assert sched["data"]["duration_days"] == pytest.approx(duration)
    assert " → ".join(chain) in doc
    assert sched["artifacts"] and (run_dir / sched["artifacts"][0]).is_file()
    assert sched["artifacts"][0] in IMAGE.findall(doc)


def check_tools(name: str, run_dir: Path, state: dict, doc: str, *, offline: bool) -> None:
    if name == "blog":
        check_blog(run_dir, state, doc)
    elif name == "report":
        check_report(run_dir, state, doc)
    elif name == "analysis":
        check_analysis(run_dir, state, doc)
    else:
        items = (sample_breakdown() if offline else model_breakdown())["work_items"]
        check_project(run_dir, state, doc, items)


# ---------------------------------------------------------------- the tests

def test_sample_project_critical_path_by_hand():
    """The test's own CPM against numbers worked out on paper for the shipped sample."""
    duration, chain = cpm(sample_breakdown()["work_items"])
    assert (duration, chain) == (22.0, ["w1", "w3", "w5", "w6", "w7"])
    duration, chain = cpm(model_breakdown()["work_items"])
    assert (duration, chain) == (25.0, ["w1", "w2", "w4", "w6", "w7"])


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_against_fake_model(name: str, fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.responder = script_for(name)
    run = run_main(["--example", name], tmp_path, server=fake_llm)
    run_dir, state, doc = check_run(run, name, provider="openai")
    assert state["meta"]["base_url"] == fake_llm.base_url
    kinds = [request_kind(r) for r in fake_llm.requests]
    assert kinds.count("plan") == 1 and "review" in kinds and "cohesion" in kinds
    llm_tasks = [t for t in state["plan"]["tasks"] if load_yaml(name)["roles"][t["role"]].get("kind") != "tool"]
    assert kinds.count("worker") == len(llm_tasks)
    assert state["totals"]["calls"] == len(fake_llm.requests)
    assert doc.startswith("# Scripted title\n") and "Offline provider" not in doc
    assert TEST_KEY not in (run_dir / "run.json").read_text(encoding="utf-8")
    for t in llm_tasks:
        if not (name == "project" and t["id"] == "wbs"):
            assert state["results"][t["id"]]["output"] == f"## Section {t['id']}\n\nScripted text for {t['id']}."
    check_tools(name, run_dir, state, doc, offline=False)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_offline(name: str, tmp_path: Path):
    run = run_main(["--example", name], tmp_path)
    run_dir, state, doc = check_run(run, name, provider="offline")
    assert "Offline provider" in doc and "Offline provider" in run.stdout + run.stderr
    assert state["meta"]["base_url"] is None
    check_tools(name, run_dir, state, doc, offline=True)


def test_analysis_regression_recovers_a_known_relation(tmp_path: Path):
    rng = random.Random(7)
    data = tmp_path / "linear.csv"
    rows = ["x,z,revenue"]  # two drivers, a little noise
    for _ in range(80):
        x, z = rng.uniform(0, 100), rng.uniform(0, 100)
        rows.append(f"{x:.4f},{z:.4f},{3 * x + 2 * z + 2 + rng.gauss(0, 0.05):.4f}")
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = run_main(["--example", "analysis", "--data", str(data)], tmp_path)
    run_dir, state, doc = check_run(run, "analysis", provider="offline")
    assert state["inputs"]["data"] == str(data)
    model = result_of(state, "modeller")["data"]
    assert model["target"] == "revenue" and model["features"] == ["x", "z"] and model["n"] == 80
    assert model["r2"] > 0.99 and model["cv"]["linear"]["mean"] < 0.01 * model["cv"]["baseline"]["mean"]
    assert model["coefficients"]["x"]["estimate"] == pytest.approx(3, abs=0.01)
    assert model["coefficients"]["Intercept"]["estimate"] == pytest.approx(2, abs=0.1)
    with data.open(newline="", encoding="utf-8") as fh:
        revenue = [float(r["revenue"]) for r in csv.DictReader(fh)]
    stats = result_of(state, "statistician")["data"]["numeric"]
    assert stats["revenue"]["mean"] == pytest.approx(statistics.fmean(revenue), rel=1e-9)


def test_example_all_offline_runs_the_four_and_prints_a_table(tmp_path: Path):
    run = run_main(["--example", "all"], tmp_path, timeout=120)
    assert run.code == 0, run.explain()
    dirs = run.run_dirs()
    assert sorted(d.name.split("-")[2] for d in dirs) == sorted(WORKFLOWS)
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["workflow", "status"])
    assert all(word in lines[header] for word in ("time", "tokens", "output"))
    table = lines[header + 2:header + 2 + len(WORKFLOWS)]
    assert [row.split()[0] for row in table] == list(WORKFLOWS)
    for row, name in zip(table, WORKFLOWS):
        cells = row.split()
        assert cells[1] == "ok", row
        assert re.search(r"\d+\.\d s", row), row
        out = Path(cells[-1])
        assert out.is_file() and out.name == "output.md", row
        state = json.loads((out.parent / "run.json").read_text(encoding="utf-8"))
        assert state["workflow"] == name and state["status"] == "ok"
        assert cells[4:6] == ["-", "-"], row  # offline: no calls or tokens reported as if a model ran
    for d in dirs:
        check_run(run, d.name.split("-")[2], provider="offline", run_dir=d)
