"""Every workflow against a server that follows the schema it is sent literally, and nothing more.

The fake server's "literal" mode answers each structured request with a random value valid against
the request's `json_schema` (random words for free text, random enum members, random array lengths
within bounds). If a rule lived only in a validator and not in the schema, these runs would fail at
planning or discard their reviews; they must instead complete, with a review that counts.
"""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows import STRATEGIES, build_flow
from fakes.fake_llm import FakeLLMServer, random_instance, random_match
from tests.scripted import Script
from utils.app.run import execute, fanout, new_shared
from utils.options import DEFAULT_OPTIONS
from utils.events import Collector
from utils.model.client import LLMClient, LLMSettings
from utils.model.structured import strict_schema
from utils.run.outputs import choice_model, cohesion_model, output_model, review_model
from utils.run.plan import plan_reply_model
from utils.run.runstore import RunStore
from utils.run.spec import load_spec


def _sources(tmp: Path) -> list[str]:
    """Source files that are not the shipped samples: notes with quantities, a CSV with a BOM."""
    notes = tmp / "battery_notes.md"
    notes.write_text("# Home batteries\n\nInstalled capacity rose to 12.5 GWh in 2024.\n"
                     "Average price fell from 900 EUR/kWh to 650 EUR/kWh.\n\nGermany leads with 40 %.\n",
                     encoding="utf-8")
    table = tmp / "installs.csv"
    table.write_text("\ufeffcountry;installs;share\nDE;410000;40\nIT;150000;15\nAT;61000;6\n", encoding="utf-8")
    return [str(notes), str(table)]


def _dataset(tmp: Path) -> str:
    path = tmp / "shops.csv"
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["shop_id", "visitors", "ads", "revenue"])
        for i in range(60):
            visitors, ads = rng.randint(100, 900), rng.randint(0, 50)
            w.writerow([f"S{i:03d}", visitors, ads, round(visitors * 2.5 + ads * 10 + rng.gauss(0, 40), 1)])
    return str(path)


def run_workflow(server: FakeLLMServer, name: str, strategy: str, tmp: Path):
    spec = load_spec(name)
    inputs = {"inputs": _sources(tmp) if name == "report" else [],
              "data": _dataset(tmp) if name == "analysis" else None}
    llm = LLMClient(LLMSettings(provider="openai", base_url=server.base_url, api_key="sk-test", cache=False,
                                max_retries=1, backoff_base_s=0.001, backoff_max_s=0.01, max_concurrency=16))
    events = Collector()
    run_dir = tmp / f"run-{name}-{strategy}"
    run_dir.mkdir()
    store = RunStore(run_dir)
    llm.emit = fanout(events, store)
    opts = {**DEFAULT_OPTIONS, "strategy": strategy, "max_tasks": 8,
            "min_score": 0}  # drawn at random, the review score says nothing here: no bar (issue 24.9)
    shared = new_shared(goal=f"{spec.default_topic} ({strategy})", spec=spec, options=opts, inputs=inputs,
                        llm=llm, emit=fanout(events, store))
    outcome = execute(shared, build_flow(strategy), store, meta={})
    return outcome, events


def _review_counts(shared: dict) -> bool:
    reviews = shared.get("reviews") or []
    return bool(reviews) and reviews[-1].get("score") is not None and not reviews[-1].get("failed")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_blog_completes_against_a_schema_literal_server(strategy, tmp_path):
    with FakeLLMServer(schema_mode="literal", seed=11) as server:
        server.responder = lambda req: "Some section text written by the fake model."
        outcome, _ = run_workflow(server, "blog", strategy, tmp_path)
    plan_req = next(r for r in server.requests if r.response_format)
    sent = plan_req.response_format["json_schema"]
    assert sent["strict"] is True
    assert sent["schema"]["properties"]["tasks"]["items"]["properties"]["role"]["enum"] == ["analyst", "writer"]
    shared = outcome.shared
    states = {t["id"]: shared["results"].get(t["id"], {}).get("state") for t in shared["plan"]["tasks"]}
    assert states and set(states.values()) == {"done"}, states
    assert _review_counts(shared), shared.get("reviews")
    assert outcome.status == "ok" and outcome.document_path and outcome.document_path.is_file()
    doc = outcome.document_path.read_text(encoding="utf-8")
    assert sum(1 for line in doc.splitlines() if line.startswith("# ")) == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", ["report", "analysis", "project"])
def test_tool_workflows_never_fail_at_planning_against_a_schema_literal_server(name, strategy, tmp_path):
    with FakeLLMServer(schema_mode="literal", seed=5) as server:
        server.responder = lambda req: "Interpretation text from the fake model."
        outcome, events = run_workflow(server, name, strategy, tmp_path)
    shared = outcome.shared
    assert outcome.error is None, outcome.error
    assert shared["plan"]["tasks"] and outcome.document_path and outcome.document_path.is_file()
    assert _review_counts(shared), shared.get("reviews")
    # A tool task that needs another role's output either has it wired or was reported: never a crash.
    needs = {n: r.needs for n, r in load_spec(name).roles.items() if r.needs}
    for t in shared["plan"]["tasks"]:
        for role in needs.get(t["role"], []):
            providers = {p["id"] for p in shared["plan"]["tasks"] if p["role"] == role}
            wired = bool(providers & set(t["depends_on"]))
            reported = any(t["id"] in e["message"] and "needs" in e["message"] for e in events.of("notice"))
            if providers and strategy not in ("dynamic", "hybrid"):
                assert wired, (t, providers)
            else:  # later rounds may add providers after the task was planned: wired, or said
                assert wired or reported, (t, providers)


@pytest.mark.parametrize("seed", range(1, 7))
def test_blog_survives_a_server_with_30_percent_malformed_json(seed, tmp_path):
    """Broken JSON is a bad reply: repaired once, and after that the step's own fallback applies. Only
    two broken planning replies in a row (about 1 run in 11) end the run, with a one-line error."""
    with FakeLLMServer(schema_mode="malformed", seed=seed) as server:
        server.responder = lambda req: "Text."
        outcome, _ = run_workflow(server, "blog", "dependency", tmp_path)
    if outcome.error:
        assert outcome.error.startswith("planning:") and "\n" not in outcome.error
        assert not outcome.shared.get("plan")
        return
    assert outcome.document_path and outcome.document_path.is_file()
    assert outcome.status in ("ok", "unreviewed")
    assert outcome.status == "unreviewed" or _review_counts(outcome.shared)


def test_report_against_a_server_that_ignores_response_format(tmp_path):
    """The schema is only a request: the reply is still validated (here a scripted model that answers
    in a fence, with numbers as ids and full paths as input names, which validation tolerates)."""
    with FakeLLMServer(schema_mode="ignore") as server:
        files = _sources(tmp_path)
        plan = {"notes": "n", "tasks": [
            {"id": 1, "title": "Facts", "role": "gatherer", "inputs": files[:1], "priority": 0},
            {"id": 2, "title": "Chart", "role": "charter", "priority": 9},
            {"id": 3, "title": "Summary", "role": "summarizer", "depends_on": [1]}]}
        script = Script(plans=[plan])
        server.responder = lambda req: ("```json\n" + json.dumps(script.plans[0]) + "\n```"
                                        if (req.response_format or {}).get("json_schema", {}).get("name") == "Plan"
                                        else script(req))
        outcome, _ = run_workflow(server, "report", "dependency", tmp_path)
    tasks = {t["id"]: t for t in outcome.shared["plan"]["tasks"]}
    assert tasks["1"]["inputs"] == ["battery_notes.md"] and tasks["1"]["priority"] == 1
    assert "1" in tasks["2"]["depends_on"]  # the chart's `needs: [gatherer]` wired from the spec
    assert outcome.document_path and outcome.document_path.is_file()


def test_every_schema_the_app_sends_is_openai_strict_and_its_random_values_validate():
    """One definition gives both: any value the schema allows, the same model class accepts."""
    from tests.test_structured import assert_openai_strict

    project = load_spec("project")
    models = [plan_reply_model(["a", "b"], ["x.md", "dir/y.csv"], 6), plan_reply_model(["a"], [], 3, allow_empty=True),
              review_model(["t1", "t2"]), cohesion_model(["t1", "t2"]), choice_model(["blog", "report"]),
              output_model("work_breakdown", project.roles)]
    rng = random.Random(0)
    for model in models:
        schema = strict_schema(model)
        assert_openai_strict(schema)
        for _ in range(30):
            try:
                model.model_validate(random_instance(schema, rng))
            except ValidationError as exc:  # only what a schema cannot say: references between items
                assert "unique" in str(exc) or "unknown work items" in str(exc), exc


def test_plan_schema_carries_the_rules():
    schema = strict_schema(plan_reply_model(["analyst", "writer"], [], 7))
    tasks = schema["properties"]["tasks"]
    assert tasks["minItems"] == 1 and tasks["maxItems"] == 7
    task = tasks["items"]["properties"]
    assert task["role"]["enum"] == ["analyst", "writer"]
    assert task["priority"]["minimum"] == 1 and task["priority"]["maximum"] == 5
    assert "pattern" in task["id"] and "inputs" not in task   # no input files: no field
    with_files = strict_schema(plan_reply_model(["analyst"], ["/a/notes.md", "/b/t.csv"], 3))
    assert with_files["properties"]["tasks"]["items"]["properties"]["inputs"]["items"]["enum"] == ["notes.md", "t.csv"]
    review = strict_schema(review_model(["t1"]))["properties"]
    assert review["score"]["minimum"] == 0 and review["score"]["maximum"] == 10
    assert review["tasks"]["items"]["properties"]["id"]["enum"] == ["t1"]
    assert review["tasks"]["items"]["properties"]["verdict"]["enum"] == ["approve", "revise"]


def test_random_match_follows_the_pattern():
    rng = random.Random(1)
    for pattern in ("^[A-Za-z0-9_.-]{1,40}$", "^t[0-9]+$", "^w\\d{2}x?$"):
        for _ in range(20):
            random_match(pattern, rng)  # asserts the match itself


def test_unreviewed_run_is_saved_as_such_with_its_reason_and_exit_1(tmp_path):
    """A failed review is not an approval: run.json and the summary say `unreviewed`, and why."""
    from utils.app.summary import summary_info
    from utils.app.render_plain import summary_details

    rng = random.Random(2)

    def answer(req):
        if any("# Review round" in str(m.get("content")) for m in req.messages):
            return "I would rather not score this."              # never JSON: fails after its one repair
        if req.response_format:                                   # plans and cohesion: drawn literally
            return json.dumps(random_instance(req.response_format["json_schema"]["schema"], rng))
        return "Text."

    with FakeLLMServer() as server:
        server.responder = answer
        outcome, _ = run_workflow(server, "blog", "dependency", tmp_path)
    saved = json.loads((outcome.run_dir / "run.json").read_text(encoding="utf-8"))
    assert outcome.status == "unreviewed" and outcome.exit_code == 1
    assert saved["status"] == "unreviewed" and "review round 1 failed" in saved["status_reason"]
    assert (outcome.run_dir / "output.md").is_file()
    info = summary_info(outcome, outcome.shared["runtime"]["llm"], outcome.shared["options"])
    assert any(line.startswith("  why: review round 1 failed") for line in summary_details(info))


def test_schedule_without_a_breakdown_gets_one_added_not_a_failed_task(tmp_path):
    """Issue 24.4: the producer the plan forgot is added (and said), so the scheduler has its material."""
    plan = {"notes": "", "tasks": [{"id": "s", "title": "Schedule", "role": "scheduler"},
                                   {"id": "w", "title": "Summary", "role": "writer", "depends_on": ["s"]}]}
    breakdown = {"summary": "s", "work_items": [{"id": "w1", "name": "Build", "estimate_days": 3, "role": "backend"}]}
    with FakeLLMServer() as server:
        server.responder = Script(plans=[plan], worker=lambda tid, req: json.dumps(breakdown) if tid == "breakdown"
                                  else f"## {tid}\n\nText.")
        outcome, events = run_workflow(server, "project", "dependency", tmp_path)
    assert any("added task 'breakdown' (breakdown): task 's' (scheduler)" in n["message"] for n in events.of("notice"))
    results = outcome.shared["results"]
    assert results["breakdown"]["state"] == "done" and results["s"]["state"] == "done"
    assert results["s"]["data"]["duration_days"] == 3 and results["w"]["state"] == "done"
