"""The user's own material end to end (issue 11): their topic without sources, their calendar and team.

`main.py` runs as a subprocess (offline, or against the fake server) on material that is not the
shipped samples: a free-text research topic with no files, a CI-migration project.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from fakes.fake_llm import FakeLLMServer
from tests.scripted import Script, request_kind
from tests.test_workflows import run_main
from utils.tools.sources import NO_SOURCES

SAMPLE_SOURCES = ("market_notes.md", "survey.csv", "metrics.json")
CI_BREAKDOWN = {"summary": "CI migration", "work_items": [
    {"id": "c1", "name": "Inventory of existing pipelines", "estimate_days": 2, "depends_on": [], "role": "devops"},
    {"id": "c2", "name": "Port build jobs to hosted runners", "estimate_days": 5, "depends_on": ["c1"], "role": "devops"},
    {"id": "c3", "name": "Port deployment jobs", "estimate_days": 4, "depends_on": ["c1"], "role": "devops"},
    {"id": "c4", "name": "Regression test the new pipelines", "estimate_days": 3, "depends_on": ["c2", "c3"], "role": "qa"},
    {"id": "c5", "name": "Switch over and decommission", "estimate_days": 1, "depends_on": ["c4"], "role": "devops"}]}
CI_PLAN = {"goal": "CI", "notes": "", "tasks": [
    {"id": "wbs", "title": "Breakdown", "role": "breakdown", "depends_on": [], "priority": 1},
    {"id": "sched", "title": "Schedule", "role": "scheduler", "depends_on": ["wbs"], "priority": 1}]}


def test_free_text_research_topic_never_cites_the_samples(tmp_path: Path):
    run = run_main(["Research the market for e-bikes in Germany"], tmp_path)
    assert run.code == 0, run.explain()
    state = run.state()
    assert state["workflow"] == "report" and state["inputs"]["inputs"] == []
    doc = (run.run_dir() / "output.md").read_text(encoding="utf-8")
    assert NO_SOURCES in doc.split("## Executive summary", 1)[0]  # said plainly, before the summary
    assert "No source files were given" in run.stdout + run.stderr  # and on screen
    assert not any(name in doc for name in SAMPLE_SOURCES)
    assert "e-bikes in Germany" in " ".join(t["title"] for t in state["plan"]["tasks"])


def test_example_report_with_a_topic_has_no_samples_but_the_demo_does(tmp_path: Path):
    topic = run_main(["--example", "report", "Heat pump adoption in Norway"], tmp_path, out_name="a")
    assert topic.code == 0, topic.explain()
    assert topic.state()["inputs"]["inputs"] == []
    demo = run_main(["--example", "report"], tmp_path, out_name="b")
    assert demo.code == 0, demo.explain()
    assert sorted(Path(p).name for p in demo.state()["inputs"]["inputs"]) == sorted(SAMPLE_SOURCES)


def test_start_date_and_team_flags_reach_the_schedule(tmp_path: Path):
    run = run_main(["--example", "project", "Plan the migration of our CI to GitHub Actions",
                    "--start-date", "2026-03-02", "--team", "backend=2,frontend=1,qa=1,pm=1,designer=1"], tmp_path)
    assert run.code == 0, run.explain()
    state = run.state()
    assert state["options"]["tool_params"]["team"]["backend"] == 2
    sched = state["results"]["sched"]["data"]
    assert sched["start_date"] == "2026-03-02" and sched["team"]["backend"] == 2
    for row in sched["items"]:
        assert dt.date.fromisoformat(row["start_date"]).weekday() < 5
    doc = (run.run_dir() / "output.md").read_text(encoding="utf-8")
    assert "| w1 | Discovery and requirements | pm | pm-1 | 2026-03-02 |" in doc
    assert "migration of our CI to GitHub Actions" in doc and "feedback" not in doc.lower()


def test_bad_team_or_date_is_one_line_exit_2(tmp_path: Path):
    for flags, message in ((["--team", "backend=lots"], "--team: expected ROLE=PEOPLE"),
                           (["--start-date", "next monday"], "--start-date must be a date")):
        run = run_main(["--example", "project", *flags], tmp_path, out_name=flags[0].strip("-"))
        assert run.code == 2 and message in run.stderr and "Traceback" not in run.stderr, run.explain()
        assert len(run.stderr.strip().splitlines()) == 1


def test_model_proposes_the_team_and_idle_roles_are_not_staffed(fake_llm: FakeLLMServer, tmp_path: Path):
    team = {"members": [{"role": "devops", "people": 2}, {"role": "qa", "people": 1},
                        {"role": "designer", "people": 1}], "reason": "An infrastructure migration."}
    fake_llm.responder = Script(plans=[CI_PLAN], team=team,
                                worker=lambda tid, req: json.dumps(CI_BREAKDOWN))
    run = run_main(["--example", "project", "Migrate our CI to GitHub Actions"], tmp_path, server=fake_llm)
    assert run.code == 0, run.explain()
    assert "team" in [request_kind(r) for r in fake_llm.requests]
    team_req = next(r for r in fake_llm.requests if request_kind(r) == "team")
    enum = json.dumps(team_req.response_format)
    assert '"enum": ["pm", "designer", "backend"' in enum  # roles are an enum in the schema
    assert "Team: devops 2, qa 1, designer 1 (proposed by the model: An infrastructure migration." in run.stdout
    sched = run.state()["results"]["sched"]["data"]
    assert sched["team"] == {"devops": 2, "qa": 1}  # the designer has no work: not staffed, and said why
    assert all(u > 0 for u in sched["utilisation"].values())
    assert any("designer: proposed but no work item needs it" in n for n in sched["team_notes"])


def test_ragged_csv_input_is_refused_before_planning(tmp_path: Path):
    ragged = tmp_path / "jobs.csv"
    ragged.write_text("job,duration_min\nbuild,7\ntest,9,extra\n", encoding="utf-8")
    run = run_main(["--example", "report", "--input", str(ragged)], tmp_path)
    assert run.code == 2 and "line 3 has 3 fields" in run.stderr, run.explain()
    assert run.run_dirs() == []  # nothing planned, nothing saved


def test_report_from_user_inputs_is_titled_from_them_and_lists_every_source(tmp_path: Path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Heat pumps\n\nInstallations rose to 87% of new homes from 81% in 2024.\n"
                     "We spent $48,000 of a $60,000 allocation.\n", encoding="utf-8")
    table = tmp_path / "figures.csv"
    table.write_text("year,source,net_generation\n2001,Fossil,35361\n2001,Wind,1100\n2002,Fossil,35991\n"
                     "2002,Wind,1400\n", encoding="utf-8")
    empty = tmp_path / "readme.txt"
    empty.write_text("Version 3.2 through 3.9, port 8080, on 2024-05-01.\n", encoding="utf-8")
    run = run_main(["--example", "report", "--input", str(notes), "--input", str(table), "--input", str(empty)], tmp_path)
    assert run.code == 0, run.explain()
    doc = (run.run_dir() / "output.md").read_text(encoding="utf-8")
    assert "sample product market" not in doc and "sample product market" not in run.state()["goal"]
    assert doc.startswith("# Research report from notes.md, figures.csv and readme.txt")
    facts = json.loads((run.run_dir() / "facts.json").read_text(encoding="utf-8"))
    assert {k for f in facts for k in f} >= {"file", "line", "value", "unit", "what", "scope", "earlier", "total"}
    rose = next(f for f in facts if f["file"] == "notes.md" and f["value"] == 87)
    assert (rose["line"], rose["unit"], rose["earlier"], rose["scope"]) == (3, "%", 81, "in 2024")
    spent = next(f for f in facts if f["value"] == 48000)
    assert (spent["unit"], spent["total"], spent["earlier"]) == ("$", 60000, None)
    # per series, never pooled: Fossil and Wind each get their own mean
    assert sorted((f["group"], f["value"]) for f in facts if f["file"] == "figures.csv") == [
        ("Fossil", 35676.0), ("Wind", 1250.0)]
    sources = doc.split("\n## Sources\n", 1)[1]
    for line in ("- `notes.md`: 2 facts", "- `figures.csv`: 2 facts", "- `readme.txt`: 0 facts"):
        assert line in sources, sources
