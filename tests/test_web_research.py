"""The report workflow with web research, end to end: `main.py` against a fake model and a fake web.

The scripted model plans two research questions plus a gatherer for a user's `--input` file, and
its analyst cites whatever page keys reach it; the checks are on what the app did with that: which
pages were fetched and used, what the writers and the reviewer were shown, the Sources section, the
run.json records, and a second run served from the cache with zero fetches.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer, Reply
from fakes.fake_web import ARTICLE_BATTERIES, INJECTION, NOISE, FakeWeb
from tests.scripted import Script, request_kind, task_id
from tests.helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent
KEY_RE = re.compile(r"<<<BEGIN QUOTED PAGE (\S+)>>>")
GOAL = "The state of home battery storage in Europe"
SECRET = "tvly-SECRET-e2e-999"


def web_plan(with_research: bool = True) -> dict:
    tasks = [{"id": "g1", "title": "Facts from notes", "role": "gatherer", "instructions": "Extract facts",
              "depends_on": [], "priority": 1, "inputs": ["field_notes.md"]}]
    if with_research:
        tasks += [{"id": "q1", "title": "Installations", "role": "researcher", "priority": 1, "depends_on": [],
                   "instructions": "home battery installations Europe 2024"},
                  {"id": "q2", "title": "Prices", "role": "researcher", "priority": 1, "depends_on": [],
                   "instructions": "battery storage prices Europe"}]
    deps = ["g1", "q1", "q2"] if with_research else ["g1"]
    tasks += [{"id": "a1", "title": "Analysis", "role": "analyst", "instructions": "Analyse",
               "depends_on": deps, "priority": 2},
              {"id": "s1", "title": "Summary", "role": "summarizer", "instructions": "Summarise",
               "depends_on": ["a1"], "priority": 3}]
    return {"goal": GOAL, "notes": "", "tasks": tasks, "done": False}


def analyst(tid: str, req) -> Reply:
    """Cites every page key it was shown, one claim each, plus one key that no page has."""
    keys = KEY_RE.findall(req.last_user())
    if tid == "a1":
        claims = " ".join(f"Claim {i} [{k}]." for i, k in enumerate(keys, 1))
        return Reply(text=f"## Analysis\n\n{claims} Notes say so [field_notes.md:L3].")
    return Reply(text="## Executive summary\n\n- Storage is growing.")


def run_app(tmp: Path, home: Path, out: str, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out_dir = tmp / out
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--example", "report", GOAL,
                           "--output-dir", str(out_dir), *args], cwd=tmp, capture_output=True, text=True,
                          env=clean_env(ORCH_HOME=str(home), **env), timeout=90, stdin=subprocess.DEVNULL)
    dirs = sorted(p for p in out_dir.iterdir() if p.is_dir()) if out_dir.is_dir() else []
    assert proc.returncode == 0 and len(dirs) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, dirs[0]


@pytest.fixture
def setup(tmp_path: Path):
    web = FakeWeb(slow_s=2.0).start()
    llm = FakeLLMServer().start()
    notes = tmp_path / "field_notes.md"
    notes.write_text("# Field notes\n\nWe visited 14 installers in Bavaria.\nMost sold 10 kWh systems.\n",
                     encoding="utf-8")
    config = tmp_path / "orch.yaml"
    config.write_text("web_results: 9\n", encoding="utf-8")
    env = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "sk-test", "ORCH_SEARCH": "searxng",
           "SEARXNG_URL": web.url("/searxng"), "ORCH_WEB_TIMEOUT": "0.5",
           "ORCH_WEB_ALLOW_PRIVATE": "1"}  # the fake web is on 127.0.0.1
    try:
        yield web, llm, notes, config, env
    finally:
        llm.stop()
        web.stop()


def test_report_researches_the_web_cites_fetched_pages_and_reruns_from_the_cache(setup, tmp_path):
    web, llm, notes, config, env = setup
    llm.responder = Script(plans=[web_plan()], worker=analyst)
    home = tmp_path / "home"
    proc, run_dir = run_app(tmp_path, home, "runs1", env, "--input", str(notes), "--config", str(config))
    state = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    doc = (run_dir / "output.md").read_text(encoding="utf-8")

    plan_prompt = [r for r in llm.requests if request_kind(r) == "plan"][0].last_user()
    assert "`researcher` (deterministic tool" in plan_prompt and "field_notes.md" in plan_prompt

    # Research tasks ran as tasks, shown live with their failures named; run.json records each page
    # with its status, size and what was used.
    assert re.search(r"q1 done in .*web: 9 results, \d pages used, 5 failed \(http 404 ×1, timeout ×1", proc.stdout)
    research = [state["results"][t] for t in ("q1", "q2")]
    assert all(r["state"] == "done" and r["role"] == "researcher" for r in research)
    pages = [p for r in research for p in r["data"]["web"]["pages"]]
    statuses = {re.sub(r"^http://[^/]+", "", p["url"]): p["status"] for p in pages}
    assert statuses["/missing"] == "http 404" and statuses["/slow"] == "timeout"
    assert statuses["/huge"] == "too large" and statuses["/loop/a"] == "redirect loop"
    assert statuses["/file.bin"] == "blocked type" and statuses["/article/batteries"] == "ok"
    assert all({"status", "bytes", "used", "passages", "accessed"} <= set(p) for p in pages)
    used = [p for p in pages if p["used"]]
    assert used and all(p["status"] == "ok" for p in used)
    assert web.hits["/article/batteries"] == 1  # both questions found it: fetched once, then cached
    batteries = next(p for p in used if p["url"].endswith("/article/batteries"))
    assert ARTICLE_BATTERIES[0] in batteries["passages"]
    assert not any(n in " ".join(batteries["passages"]) for n in NOISE)

    # The analyst was shown the quoted passages, the injected text only inside its quotation.
    a1 = [r for r in llm.requests if request_kind(r) == "worker" and task_id(r) == "a1"][0].last_user()
    shown = KEY_RE.findall(a1)
    assert sorted(shown) == sorted(p["key"] for p in used)
    assert a1.count("<<<END QUOTED PAGE") == len(shown)
    fenced = re.findall(r"<<<BEGIN QUOTED PAGE \S+>>>\n.*?<<<END QUOTED PAGE \S+>>>", a1, re.S)
    assert any(INJECTION in block for block in fenced)
    assert INJECTION not in re.sub(r"<<<BEGIN QUOTED PAGE \S+>>>\n.*?<<<END QUOTED PAGE \S+>>>", "", a1, flags=re.S)
    # No prompt of the run (workers, reviewer, editor) carries the injected text outside a quotation.
    for req in llm.requests:
        text = "\n".join(str(m.get("content", "")) for m in req.messages)
        assert text.count("<<<BEGIN QUOTED PAGE") == text.count("<<<END QUOTED PAGE")
        outside = re.sub(r"<<<BEGIN QUOTED PAGE \S+>>>\n.*?<<<END QUOTED PAGE \S+>>>", "", text, flags=re.S)
        assert "IGNORE ALL PREVIOUS" not in outside, request_kind(req)
    # ...and the gatherer's facts from the --input file alongside them.
    assert "field_notes.md:L3" in a1

    # The reviewer was given the passages, so it can check each cited claim against them.
    review = [r for r in llm.requests if request_kind(r) == "review"][0].last_user()
    assert ARTICLE_BATTERIES[0] in review and "supported by a quoted passage" in review

    # Every numbered claim points at a page in Sources; Sources are exactly the pages used.
    sources = doc.split("\n## Sources\n", 1)[1]
    listed = re.findall(r"^(\d+)\. .+?\. <(\S+)> \(accessed \d{4}-\d\d-\d\d\)$", sources, re.M)
    assert sorted(u for _, u in listed) == sorted({p["url"] for p in used})  # each page once
    cited = {int(n) for n in re.findall(r"Claim \d+ \[(\d+)\]", doc)}
    assert cited == {int(n) for n, _ in listed}
    assert "#" not in "".join(re.findall(r"\[[^\]]*\]", doc.split("## Sources")[0]))  # no raw keys left
    assert "`field_notes.md`" in sources and "Drew on 1 input file and" in sources
    assert "PWNED-7731" not in doc and "could not be used" in sources
    assert "<<<" not in doc  # the quoted passages stay in run.json, not in the document

    # A second run fetches nothing: the search results and the pages come from the cache.
    before_pages, before_search = web.page_fetches(), web.search_calls()
    _, run2 = run_app(tmp_path, home, "runs2", env, "--input", str(notes), "--config", str(config))
    assert (web.page_fetches(), web.search_calls()) == (before_pages, before_search)
    state2 = json.loads((run2 / "run.json").read_text(encoding="utf-8"))
    assert all(state2["results"][t]["data"]["web"]["fetched"] == 0 for t in ("q1", "q2"))
    assert (run2 / "output.md").read_text(encoding="utf-8").split("\n## Sources\n", 1)[1] == sources


@pytest.mark.parametrize("how", ["--no-web", "no provider"])
def test_without_web_research_the_planner_never_sees_the_role_and_the_report_says_so(how, setup, tmp_path):
    web, llm, notes, config, env = setup
    llm.responder = Script(plans=[web_plan(with_research=False)], worker=analyst)
    if how == "no provider":
        env = {k: v for k, v in env.items() if k != "ORCH_SEARCH"}
    proc, run_dir = run_app(tmp_path, tmp_path / "home", "runs", env, "--input", str(notes),
                            *(["--no-web"] if how == "--no-web" else []))
    plan_prompt = [r for r in llm.requests if request_kind(r) == "plan"][0].last_user()
    assert "`researcher`" not in plan_prompt.split("# Planning guidance")[0]
    assert web.page_fetches() == 0 and web.search_calls() == 0
    doc = (run_dir / "output.md").read_text(encoding="utf-8")
    why = "turned off with --no-web" if how == "--no-web" else "no search provider configured"
    assert f"Drew on 1 input file only; no web research ({why}" in doc
    assert "No web research" in proc.stdout + proc.stderr


def test_hosted_provider_key_never_reaches_output_or_saved_files(setup, tmp_path):
    web, llm, notes, config, env = setup
    llm.responder = Script(plans=[web_plan()], worker=analyst)
    env = {**{k: v for k, v in env.items() if k != "SEARXNG_URL"}, "ORCH_SEARCH": "tavily",
           "ORCH_SEARCH_URL": web.url("/tavily/search"), "TAVILY_API_KEY": SECRET}
    home = tmp_path / "home"
    proc, run_dir = run_app(tmp_path, home, "runs", env, "--input", str(notes), "--verbose")
    assert web.hits["/tavily/search"] == 2 and web.search_headers[-1]["Authorization"] == f"Bearer {SECRET}"
    assert "/article/batteries" in (run_dir / "output.md").read_text(encoding="utf-8")
    saved = [p for root in (run_dir, home) for p in root.rglob("*") if p.is_file()]
    assert saved and not any(SECRET.encode() in p.read_bytes() for p in saved)
    assert SECRET not in proc.stdout + proc.stderr


def test_with_web_off_takes_the_web_roles_out_of_the_roles_and_the_example_plan(monkeypatch):
    from utils.app.settings import Settings
    from utils.app.websetup import with_web
    from utils.run.spec import load_spec

    spec = load_spec("report")
    spec = spec.model_copy(update={"offline_plan": {"tasks": [
        {"id": "q", "title": "Q", "role": "researcher"},
        {"id": "g", "title": "G", "role": "gatherer"},
        {"id": "a", "title": "A", "role": "analyst", "depends_on": ["q", "g"]}]}})
    args = Settings(topic="Batteries")
    inputs = {"inputs": ["sample.md"], "data": None}
    off, off_inputs, note = with_web(spec, inputs, args)
    assert "researcher" not in off.roles and "researcher" in spec.roles
    assert [(t["id"], t.get("depends_on", [])) for t in off.offline_plan["tasks"]] == [("g", []), ("a", ["g"])]
    assert off_inputs["web"]["enabled"] is False and note.startswith("No web research")
    assert off_inputs["inputs"] == ["sample.md"]

    monkeypatch.setenv("ORCH_SEARCH", "searxng")
    monkeypatch.setenv("SEARXNG_URL", "http://search.example")
    on, on_inputs, note = with_web(spec, inputs, args)
    assert "researcher" in on.roles and on_inputs["web"]["provider"] == "searxng"
    assert on_inputs["inputs"] == []  # a topic of one's own on the web: the shipped samples stay out
    args = args.replace(inputs=("notes.md",))
    assert with_web(spec, inputs, args)[1]["inputs"] == ["sample.md"]
    blog = load_spec("blog")
    assert with_web(blog, inputs, args) == (blog, inputs, None)  # no web roles: untouched
