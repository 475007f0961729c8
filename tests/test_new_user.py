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
    """A blog run against the fake server stopped by its token budget; (run dir, common args, hint).
    The hint is the one command the output offers; the tests below run it (it works, issue 12)."""
    fake_llm.responder = _metered
    out = tmp_path / "runs"
    common = ["--no-cache", "--output-dir", str(out), "--config", str(fast_config(tmp_path / "fast.yaml"))]
    first = run_main(["--example", "blog", "--max-workers", "1", "--max-tokens-total", "3500", *common],
                     cli_env(tmp_path / "home", fake_llm.base_url))
    assert first.code == 1, first.explain()
    hints = re.findall(r"python main\.py (--resume .*)", first.output)
    assert len(hints) == 1 and "--max-tokens-total" in hints[0], first.output  # the hint raises the budget
    return only_run(out), common, hints[0]


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
    # --plan-only: the data file is chosen and recorded before planning; the analysis itself is
    # tested elsewhere (tests/test_workflows.py) and costs most of this test's time
    done = run_main([load_spec("analysis").default_topic, "--provider", "offline", "--plan-only",
                     "--output-dir", str(out)], cli_env(tmp_path / "home", None, None))
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


# ---------------------------------------------------------------- 9. the smaller points

def test_a_topic_from_standard_input(tmp_path):
    out = tmp_path / "runs"
    done = run_main(["-", "--example", "blog", "--plan-only", "--provider", "offline", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", None, None), stdin="Write about barn owls\n")
    assert done.code == 0, done.explain()
    assert read_state(only_run(out))["goal"] == "Write about barn owls"


def test_a_final_review_below_min_score_ends_needs_work_with_the_reasons(fake_llm, tmp_path):
    from tests.scripted import plan_json

    review = {"score": 0.7, "summary": "The sections contradict each other", "tasks": []}
    fake_llm.responder = Script(plans=[plan_json([("t1", "writer", []), ("t2", "writer", [])])], reviews=[review])
    out = tmp_path / "runs"
    args = ["--example", "blog", "--no-cache", "--output-dir", str(out), "--max-revisions", "0",
            "--config", str(fast_config(tmp_path / "fast.yaml"))]
    env = cli_env(tmp_path / "home", fake_llm.base_url)
    done = run_main(args, env)
    assert done.code == 1, done.explain()
    summary = [line for line in done.stdout.splitlines() if line.startswith("needs-work")]
    assert summary and "0.7/10" in done.stdout and "contradict each other" in done.stdout, done.stdout
    assert read_state(only_run(out))["status"] == "needs-work"
    lenient = run_main([*args, "--min-score", "0.5"], env)  # the reviewer's judgement, the user's bar
    assert lenient.code == 0, lenient.explain()


def test_a_config_typo_gets_did_you_mean(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_worker: 3\n", encoding="utf-8")
    done = run_main(["--example", "blog", "--config", str(cfg), "--provider", "offline"],
                    cli_env(tmp_path / "home", None, None))
    assert done.code == 2 and "did you mean 'max_workers'" in done.stderr, done.explain()


def test_an_offline_run_reports_no_calls_or_tokens(tmp_path):
    import json

    done = run_main(["--example", "blog", "--json", "--provider", "offline", "--output-dir", str(tmp_path / "runs")],
                    cli_env(tmp_path / "home", None, None))
    data = json.loads(done.stdout)
    assert done.code == 0 and data["offline"] is True
    assert (data["calls"], data["prompt_tokens"], data["completion_tokens"]) == (0, 0, 0), data


def test_example_all_table_shows_cached_calls():
    import io

    from utils.app.render import all_table

    out = io.StringIO()
    all_table([{"workflow": "blog", "status": "ok", "seconds": 1.0, "calls": 9, "cached": 9, "tokens": 1200,
                "output": "runs/x/output.md"}], file=out)
    header, _, row = out.getvalue().splitlines()
    assert "cached" in header and row.split()[:6] == ["blog", "ok", "1.0", "s", "9", "9"], out.getvalue()


def test_christmas_and_new_year_are_not_working_days_and_holidays_add_more():
    from tests.test_tools_project import item, tin
    from utils.run.team import project_options
    from utils.tools import run_tool

    work = [item("a", 5, [], "dev")]
    res = run_tool("schedule", tin(work_items=work, team={"dev": 1}, start="2026-12-21"))
    assert (res.data["start_date"], res.data["end_date"]) == ("2026-12-21", "2026-12-28")  # the 25th skipped
    params = project_options(None, "2026-12-21", {}, holidays="2026-12-24, 2026-12-31")["tool_params"]
    res = run_tool("schedule", tin(work_items=work, team={"dev": 1}, **params))
    assert res.data["end_date"] == "2026-12-29"
    new_year = run_tool("schedule", tin(work_items=work, team={"dev": 1}, start="2027-01-01"))
    assert new_year.data["start_date"] == "2027-01-04"  # a holiday start moves to the next working day


# ---------------------------------------------------------------- run history, completion

def test_every_run_is_indexed_and_runs_lists_and_shows_them(tmp_path):
    env = cli_env(tmp_path / "home", None, None)
    out = tmp_path / "runs"
    first = run_main(["--example", "blog", "--provider", "offline", "--output-dir", str(out)], env)
    second = run_main(["--example", "project", "--plan-only", "--provider", "offline", "--output-dir", str(out)], env)
    assert first.code == 0 and second.code == 0, first.explain() + second.explain()
    listed = run_main(["runs"], env)
    assert listed.code == 0, listed.explain()
    rows = listed.stdout.splitlines()[2:]
    assert len(rows) == 2 and rows[0].split()[0] == "2" and rows[1].split()[0] == "1", listed.stdout
    assert "project" in rows[0] and "planned" in rows[0] and "blog" in rows[1] and " ok " in rows[1]
    blog_dir = next(d for d in out.iterdir() if "-blog-" in d.name)
    assert str(blog_dir.resolve()) in rows[1]
    shown = run_main(["runs", "show", "1"], env)
    assert shown.code == 0 and str(blog_dir.resolve() / "output.md") in shown.stdout, shown.explain()
    assert run_main(["runs", "show", "9"], env).code == 2
    again = run_main(["--resume", "1", "--output-dir", str(out)], env)  # an ID from the list
    assert again.code == 0 and "already complete" in again.output, again.explain()


def test_completion_scripts_name_the_flags_and_their_choices(tmp_path):
    import subprocess

    for shell in ("bash", "zsh"):
        done = run_main(["--completion", shell], cli_env(tmp_path / "home", None, None))
        assert done.code == 0 and "--example" in done.stdout and "--run-plan" in done.stdout
        assert "blog report analysis project all" in done.stdout
    bash = run_main(["--completion", "bash"], cli_env(tmp_path / "home", None, None)).stdout
    assert subprocess.run(["bash", "-n"], input=bash, text=True).returncode == 0


# ---------------------------------------------------------------- 7. the terminal

class _Tty:
    def __init__(self) -> None:
        import io
        self.buf = io.StringIO()

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self.buf.write(text)

    def flush(self) -> None:
        pass


def test_lines_on_a_terminal_wrap_at_word_boundaries(monkeypatch):
    from utils.app.render_plain import write_line

    monkeypatch.setenv("COLUMNS", "80")
    text = "warning: " + " ".join(f"word{i:02d}-supercalifragilistic" for i in range(12))
    tty = _Tty()
    write_line(tty, "  " + text)
    lines = tty.buf.getvalue().splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines), lines
    assert " ".join(" ".join(lines).split()) == text  # every word whole, in order
    assert all(line.startswith("  ") for line in lines)  # the indent kept
    import io
    piped = io.StringIO()
    write_line(piped, text)  # a pipe or a file gets the one line, for grep
    assert piped.getvalue() == text + "\n"


def test_the_live_table_titles_use_the_width_there_is():
    import io

    from rich.console import Console

    from utils.app.render import Display
    from utils.events import Event

    title = "A title that is long enough to be cut at eighty columns only"
    display = Display("rich", file=io.StringIO(), width=200)
    display(Event("plan", {"plan": {"goal": "g", "tasks": [{"id": "t1", "title": title, "role": "writer",
                                                            "depends_on": []}]}}))
    probe = Console(file=io.StringIO(), width=200, record=True)
    probe.print(display._renderable())
    assert title in probe.export_text()


def test_no_color_keeps_the_rich_display():
    from tests.test_render import _Tty as Tty
    from utils.app.render import choose_mode

    assert choose_mode(quiet=False, json_out=False, stream=Tty(), env={"NO_COLOR": "1"}) == "rich"


def test_show_plan_includes_instructions_set_with_instr(tmp_path):
    done = run_main(["--interactive", "--example", "blog", "--provider", "offline", "--output-dir", str(tmp_path / "r")],
                    cli_env(tmp_path / "home", None, None),
                    stdin="Write about owls\n/instr t2 Cover barn owls only, with three examples\n/show plan\n/quit\n")
    assert done.code == 0, done.explain()
    after = done.stdout.split("/show plan")[-1] if "/show plan" in done.stdout else done.stdout
    assert after.count("Cover barn owls only, with three examples") >= 2, done.stdout  # after /instr and /show
