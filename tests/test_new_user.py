"""What a new user hits (issue 24): resume without the model settings, Ctrl-C's document, a topic
routed to analysis without data, the project plan's missing producer, the team, plan-then-run, and
the smaller points. In-process against the fake server unless a signal is the point."""
from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from fakes.fake_llm import Reply
from tests.helpers import cli_env, done_ids, fast_config, only_run, read_state, run_main
from tests.scripted import Script
from tests.test_resume import SIX_SECTIONS

UNIT = {"prompt_tokens": 500, "completion_tokens": 500, "total_tokens": 1000}


def _metered(req):
    reply = Script(plans=[SIX_SECTIONS])(req)
    reply = reply if isinstance(reply, Reply) else Reply(text=reply)
    reply.usage = dict(UNIT)
    return reply


def _stopped_run(fake_llm, tmp_path: Path) -> tuple[Path, list[str], str]:
    """A blog run against the fake server stopped by its token budget; (run dir, common args, hint)."""
    fake_llm.responder = _metered
    out = tmp_path / "runs"
    common = ["--no-cache", "--output-dir", str(out), "--config", str(fast_config(tmp_path / "fast.yaml"))]
    first = run_main(["--example", "blog", "--max-workers", "1", "--max-tokens-total", "3500", *common],
                     cli_env(tmp_path / "home", fake_llm.base_url))
    assert first.code == 1, first.explain()
    hint = re.findall(r"python main\.py (--resume .*)", first.output)[0]
    return only_run(out), common, hint


def _files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


# ---------------------------------------------------------------- 1. resume keeps the model settings

def test_resume_without_model_settings_says_what_is_needed_and_changes_nothing(fake_llm, tmp_path):
    run_dir, common, hint = _stopped_run(fake_llm, tmp_path)
    before, calls = _files(run_dir), len(fake_llm.requests)
    bare = run_main([*hint.split(), *common], cli_env(tmp_path / "home", None, None))
    assert bare.code == 2, bare.explain()
    lines = [line for line in bare.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "OPENAI_API_KEY" in lines[0], bare.explain()
    assert _files(run_dir) == before, "a refused resume must not touch the run folder"
    assert len(fake_llm.requests) == calls


def test_resume_uses_the_saved_provider_base_url_and_model(fake_llm, tmp_path):
    run_dir, common, hint = _stopped_run(fake_llm, tmp_path)
    saved = read_state(run_dir)["meta"]
    assert saved["provider"] == "openai" and saved["base_url"] == fake_llm.base_url
    # the key is a secret (never saved); the server, the model and the provider come from run.json
    again = run_main([*hint.split(), *common], cli_env(tmp_path / "home", None, "sk-test"))
    assert again.code == 0, again.explain()
    state = read_state(run_dir)
    assert state["status"] == "ok" and state["meta"]["provider"] == "openai"
    assert state["meta"]["model"] == saved["model"] and state["meta"]["base_url"] == fake_llm.base_url
    assert "offline" not in (run_dir / "output.md").read_text(encoding="utf-8").lower()


# ---------------------------------------------------------------- 2. Ctrl-C and SIGTERM keep a document

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_write_output_md_with_the_finished_work(sig, fake_llm, tmp_path):
    from tests.test_lifecycle import start_blocked, stop
    from tests.test_resume import section_text

    proc, gate, run_dir = start_blocked(fake_llm, tmp_path)
    stdout, stderr = stop(proc, gate, sig)
    assert proc.returncode in (130, 143), stdout + stderr
    done = done_ids(read_state(run_dir))
    doc = (run_dir / "output.md").read_text(encoding="utf-8")
    for tid in {"t2", "t3"} & done:  # the writers that finished are in it, the held ones are not
        assert section_text(tid) in doc
    assert section_text("t4") not in doc and "interrupted" in doc.lower()
    assert str(run_dir / "output.md") in stdout + stderr


# ---------------------------------------------------------------- 5. a topic routed to analysis needs data

ANALYSIS_TOPIC = "Research the market for e-bikes in Germany: analyse the data and its trends"


def test_a_topic_routed_to_analysis_without_data_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "runs"
    done = run_main([ANALYSIS_TOPIC, "--provider", "offline", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", None, None))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.code == 2 and len(lines) == 1 and "--data" in lines[0], done.explain()
    assert "Workflow: analysis" in done.stdout  # it was routed there, then stopped before planning
    assert not out.exists() or not list(out.iterdir()), "no run folder for a run that cannot start"


def test_the_demo_topic_routed_to_analysis_still_uses_the_sample(tmp_path):
    from utils.run.spec import load_spec

    out = tmp_path / "runs"
    done = run_main([load_spec("analysis").default_topic, "--provider", "offline", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", None, None))
    assert done.code == 0, done.explain()
    assert Path(read_state(only_run(out))["inputs"]["data"]).name == "sales.csv"


def test_interactive_asks_for_the_data_file_of_a_topic_routed_to_analysis(tmp_path):
    from tests.test_target import shop_csv

    csv = shop_csv(tmp_path)
    out = tmp_path / "runs"
    done = run_main(["--interactive", "--output-dir", str(out), "--provider", "offline"],
                    cli_env(tmp_path / "home", None, None), stdin=f"{ANALYSIS_TOPIC}\n{csv}\n/run\n/quit\n")
    assert done.code == 0, done.explain()
    assert "data file" in done.stdout.lower(), done.stdout
    assert read_state(only_run(out))["inputs"]["data"] == str(csv), done.stdout


# ---------------------------------------------------------------- 4. a plan's missing producer is added

def test_a_project_plan_with_a_scheduler_and_no_breakdown_gets_the_breakdown_added(fake_llm, tmp_path):
    import json

    from tests.scripted import plan_json
    from tests.test_workflows import cpm, model_breakdown

    plan = plan_json([("req", "analyst", []), ("sched", "scheduler", ["req"]), ("risks", "writer", ["sched"]),
                      ("summary", "writer", ["req", "sched", "risks"])], goal="Launch a portal")
    asked: list[str] = []

    def worker(tid, req):
        asked.append(tid)
        return json.dumps(model_breakdown()) if tid == "breakdown" else f"## Section {tid}\n\nText for {tid}."

    fake_llm.responder = Script(plans=[plan], worker=worker)
    out = tmp_path / "runs"
    done = run_main(["--example", "project", "--no-cache", "--output-dir", str(out), "--max-revisions", "0",
                     "--config", str(fast_config(tmp_path / "fast.yaml"))], cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 0, done.explain()
    state = read_state(only_run(out))
    tasks = {t["id"]: t for t in state["plan"]["tasks"]}
    assert tasks["breakdown"]["role"] == "breakdown" and "breakdown" in tasks["sched"]["depends_on"]
    assert "req" in tasks["breakdown"]["depends_on"]  # it takes the scheduler's place after the requirements
    assert state["status"] == "ok" and all(r["state"] == "done" for r in state["results"].values())
    assert state["results"]["sched"]["data"]["critical_path"] == cpm(model_breakdown()["work_items"])[1]
    assert "added" in done.output and "breakdown" in asked


def test_wire_needs_adds_a_producer_only_where_none_exists():
    from utils.run.plan import Plan, wire_needs

    plan = Plan.model_validate({"goal": "g", "tasks": [
        {"id": "a", "title": "A", "role": "analyst"},
        {"id": "s", "title": "S", "role": "scheduler", "depends_on": ["a"], "priority": 2}]})
    notes = wire_needs(plan, {"scheduler": ["breakdown"]}, titles={"breakdown": "Work breakdown"})
    assert [t.id for t in plan.tasks] == ["a", "breakdown", "s"]
    added = plan.task("breakdown")
    assert added.title == "Work breakdown" and added.depends_on == ["a"] and added.priority == 2
    assert plan.task("s").depends_on == ["a", "breakdown"] and len(notes) == 1 and "added" in notes[0]
    assert wire_needs(plan, {"scheduler": ["breakdown"]}) == [] and len(plan.tasks) == 3  # nothing twice


# ---------------------------------------------------------------- 3. the project team is honoured

TEAM_ITEMS = [{"id": "w1", "name": "API", "estimate_days": 6, "depends_on": [], "role": "backend"},
              {"id": "w2", "name": "Data model", "estimate_days": 4, "depends_on": [], "role": "backend"},
              {"id": "w3", "name": "UI", "estimate_days": 5, "depends_on": ["w1"], "role": "frontend"},
              {"id": "w4", "name": "Tests", "estimate_days": 3, "depends_on": ["w2", "w3"], "role": "qa"}]


def _role_enum(req) -> list[str]:
    import json

    found = re.findall(r'"role": \{[^{}]*?"enum": \[(.*?)\]', json.dumps(req.response_format or {}))
    return json.loads("[" + found[0] + "]") if found else []


@pytest.mark.parametrize("team_flag", ["backend=2,frontend=1,qa=1", None])
def test_the_breakdown_is_staffed_from_the_runs_team(team_flag, fake_llm, tmp_path):
    import json

    from tests.test_workflows import yaml_plan

    enums: list[list[str]] = []

    def worker(tid, req):
        if tid == "wbs":
            enums.append(_role_enum(req))
            return json.dumps({"summary": "s", "work_items": TEAM_ITEMS})
        return f"## Section {tid}\n\nText for {tid}."

    proposed = {"members": [{"role": "backend", "people": 1}, {"role": "frontend", "people": 1},
                            {"role": "qa", "people": 1}], "reason": "small"}
    fake_llm.responder = Script(plans=[yaml_plan("project")], worker=worker, team=proposed)
    out = tmp_path / "runs"
    done = run_main(["--example", "project", "--no-cache", "--output-dir", str(out), "--max-revisions", "0",
                     *(["--team", team_flag] if team_flag else []),
                     "--config", str(fast_config(tmp_path / "fast.yaml"))], cli_env(tmp_path / "home", fake_llm.base_url))
    assert done.code == 0, done.explain()
    team = {"backend": 2, "frontend": 1, "qa": 1} if team_flag else {"backend": 1, "frontend": 1, "qa": 1}
    assert enums and sorted(enums[0]) == sorted(team), enums  # the schema offered exactly the run's team
    sched = next(r for r in read_state(only_run(out))["results"].values() if r.get("model") == "tool:schedule")
    data = sched["data"]
    assert data["team"] == team
    busy = {r: sum(i["estimate_days"] for i in TEAM_ITEMS if i["role"] == r) for r in team}
    for role, people in team.items():  # busy days over people x the levelled duration, computed here
        assert data["utilisation"][role] == pytest.approx(busy[role] / (people * data["levelled_duration_days"]),
                                                          abs=1e-3)
        assert data["utilisation"][role] > 0


# ---------------------------------------------------------------- 6. plan, edit the file, run it

def _offline(tmp_path: Path, *args: str):
    out = tmp_path / "runs"
    return run_main([*args, "--provider", "offline", "--output-dir", str(out)], cli_env(tmp_path / "home", None, None))


def test_plan_only_writes_plan_yaml_and_run_plan_runs_it_from_the_folder(tmp_path):
    import yaml

    from tests.helpers import run_dirs

    planned = _offline(tmp_path, "--example", "blog", "--plan-only")
    assert planned.code == 0, planned.explain()
    plan_dir = only_run(tmp_path / "runs")
    saved = yaml.safe_load((plan_dir / "plan.yaml").read_text(encoding="utf-8"))
    assert saved["workflow"] == "blog"
    assert [t["id"] for t in saved["tasks"]] == [t["id"] for t in read_state(plan_dir)["plan"]["tasks"]]
    assert f"--run-plan {plan_dir}" in planned.output
    ran = _offline(tmp_path, "--run-plan", str(plan_dir))
    assert ran.code == 0, ran.explain()
    new = [d for d in run_dirs(tmp_path / "runs") if d != plan_dir]
    assert len(new) == 1
    state = read_state(new[0])
    assert state["status"] == "ok" and [t["id"] for t in state["plan"]["tasks"]] == [t["id"] for t in saved["tasks"]]
    assert state["goal"] == saved["goal"] and (new[0] / "output.md").is_file()


def test_an_edited_plan_yaml_runs_as_edited_and_a_broken_one_is_refused(tmp_path):
    import yaml

    from tests.helpers import run_dirs

    assert _offline(tmp_path, "--example", "blog", "--plan-only").code == 0
    plan_dir = only_run(tmp_path / "runs")
    plan = yaml.safe_load((plan_dir / "plan.yaml").read_text(encoding="utf-8"))
    last = plan["tasks"][-1]["id"]
    plan["tasks"] = [t for t in plan["tasks"] if t["id"] != last]  # nothing depended on the last task
    plan["tasks"][0]["title"] = "An edited title"
    edited = tmp_path / "my-plan.yaml"
    edited.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    ran = _offline(tmp_path, "--run-plan", str(edited))
    assert ran.code == 0, ran.explain()
    state = read_state(max(run_dirs(tmp_path / "runs"), key=lambda d: d.stat().st_mtime_ns))
    assert last not in [t["id"] for t in state["plan"]["tasks"]]
    assert state["plan"]["tasks"][0]["title"] == "An edited title" and state["status"] == "ok"

    plan["tasks"][0]["depends_on"] = ["nowhere"]
    edited.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    count = len(run_dirs(tmp_path / "runs"))
    bad = _offline(tmp_path, "--run-plan", str(edited))
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.code == 2 and len(lines) == 1 and "nowhere" in lines[0], bad.explain()
    assert len(run_dirs(tmp_path / "runs")) == count
