"""The web research tools against a local fake web: providers, fetch limits, extraction, cache, quoting.

No internet: `fakes/fake_web.py` serves every page and search API on 127.0.0.1.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.fake_web import ARTICLE_BATTERIES, ARTICLE_HEATPUMPS, INJECTION, NOISE, FakeWeb
from utils.tools import ToolInput, run_tool
from utils.tools.web import cache as web_cache
from utils.tools.web.cite import cite_web
from utils.tools.web.search import parse_brave, parse_searxng, parse_tavily
from utils.tools.web.settings import resolve_web

ROOT = Path(__file__).resolve().parent.parent
SECRET = "tvly-SECRET-abc123"


@pytest.fixture
def web():
    server = FakeWeb(slow_s=2.0).start()
    try:
        yield server
    finally:
        server.stop()


def settings(server: FakeWeb, provider: str = "searxng", **over) -> dict:
    env = {"ORCH_SEARCH": provider, "ORCH_WEB_TIMEOUT": "0.5", "ORCH_WEB_ALLOW_PRIVATE": "1"}
    if provider == "searxng":
        env["SEARXNG_URL"] = server.url("/searxng")
    else:
        env["ORCH_SEARCH_URL"] = server.url({"tavily": "/tavily/search", "brave": "/brave/res/v1/web/search"}[provider])
    out = resolve_web(no_web=False, no_cache=False, config={"web_results": 9}, env=env)
    assert out["enabled"], out
    return {**out, **over}


def research(web_settings: dict, question: str = "home battery storage Europe", tid: str = "q1"):
    inp = ToolInput(task={"id": tid, "title": "Research", "instructions": question}, data_path=None,
                    input_paths=[], deps={}, params={}, goal="goal", web=web_settings)
    return run_tool("web_research", inp)


def pages_by_path(result) -> dict[str, dict]:
    return {re.sub(r"^http://[^/]+", "", p["url"]): p for p in result.data["web"]["pages"]}


# ---------------------------------------------------------------- providers and settings

def test_parsers_read_each_providers_own_format():
    searx = {"results": [{"url": "https://a.example/x", "title": "A", "content": "about a"},
                         {"url": "https://a.example/x", "title": "dup", "content": ""},
                         {"url": "javascript:alert(1)", "title": "bad"}, "junk"]}
    assert [(h.url, h.title, h.snippet) for h in parse_searxng(searx)] == [("https://a.example/x", "A", "about a")]
    tavily = {"results": [{"url": "https://t.example/", "title": "T", "content": "tc", "score": 0.8}]}
    assert [h.snippet for h in parse_tavily(tavily)] == ["tc"]
    brave = {"web": {"results": [{"url": "https://b.example/", "title": "<strong>B</strong> page",
                                  "description": "the <strong>b</strong> text"}]}}
    assert [(h.title, h.snippet) for h in parse_brave(brave)] == [("B page", "the b text")]
    assert parse_brave({"web": None}) == [] and parse_searxng([]) == []


def test_no_provider_by_default_and_keys_stay_out_of_the_settings(monkeypatch):
    assert resolve_web(no_web=False, no_cache=False, config={}, env={})["enabled"] is False
    assert "--no-web" in resolve_web(no_web=True, no_cache=False, config={"search": "searxng"}, env={})["why"]
    off = resolve_web(no_web=False, no_cache=False, config={}, env={"ORCH_SEARCH": "tavily"})
    assert off["enabled"] is False and "TAVILY_API_KEY" in off["why"]
    monkeypatch.setenv("TAVILY_API_KEY", SECRET)
    on = resolve_web(no_web=False, no_cache=False, config={"search": "tavily"}, env={})
    assert on["enabled"] and on["url"] == "https://api.tavily.com/search"
    assert SECRET not in json.dumps(on)
    assert resolve_web(no_web=False, no_cache=False, config={}, env={"ORCH_SEARCH": "bing"})["enabled"] is False


@pytest.mark.parametrize("provider", ["searxng", "tavily", "brave"])
def test_each_provider_finds_the_pages_and_the_key_goes_only_in_a_header(provider, web, monkeypatch):
    monkeypatch.setenv("TAVILY_API_KEY", SECRET)
    monkeypatch.setenv("BRAVE_API_KEY", SECRET)
    res = research(settings(web, provider))
    pages = pages_by_path(res)
    assert pages["/article/batteries"]["used"] and pages["/article/heatpumps"]["used"]
    assert SECRET not in json.dumps(res.data) + res.markdown
    stored = "".join(p.read_text() for p in web_cache.web_home().rglob("*.json"))
    assert stored and SECRET not in stored
    if provider != "searxng":
        header = "Authorization" if provider == "tavily" else "X-Subscription-Token"
        assert web.search_headers[-1][header].endswith(SECRET)


# ---------------------------------------------------------------- fetching and extraction

def test_failures_are_named_and_counted_and_the_rest_is_used(web):
    res = research(settings(web))
    pages, info = pages_by_path(res), res.data["web"]
    assert pages["/missing"]["status"] == "http 404"
    assert pages["/slow"]["status"] == "timeout"
    assert pages["/huge"]["status"] == "too large"
    assert pages["/huge"]["bytes"] <= 5_000_000 + 200_000  # stopped reading near the cap, not at 20 MB
    assert pages["/loop/a"]["status"] == "redirect loop"
    assert pages["/file.bin"]["status"] == "blocked type" and pages["/file.bin"]["content_type"] == "application/octet-stream"
    assert info["failed"] == 5 and sorted(info["failures"]) == sorted(
        ["http 404", "timeout", "too large", "redirect loop", "blocked type"])
    for status in info["failures"]:
        assert status in res.markdown  # named where the writers and the reviewer see it
    assert info["used"] == 4 and pages["/plain.txt"]["used"]
    assert web.hits["/missing"] == 1  # a 404 is an answer: not retried


def test_extracted_passages_are_the_articles_main_text(web):
    res = research(settings(web))
    batteries = " ".join(pages_by_path(res)["/article/batteries"]["passages"])
    assert ARTICLE_BATTERIES[0] in batteries and ARTICLE_BATTERIES[1] in batteries
    heat = " ".join(pages_by_path(res)["/article/heatpumps"]["passages"])
    assert ARTICLE_HEATPUMPS[0] in heat
    for noise in NOISE + ("Ten gadgets you need", "Most read"):
        assert noise not in res.markdown


def test_a_page_without_a_charset_header_is_decoded_from_its_meta_tag(web):
    web.RESULT_PATHS = ("/latin1",)
    page = pages_by_path(research(settings(web), question="Wärmepumpe Speicher"))["/latin1"]
    assert page["title"] == "Wärmepumpen im Café"
    assert "Die Wärmepumpe im Café läuft seit 2024" in page["passages"][0]


def test_a_page_that_drips_forever_is_a_timeout(web):
    import time

    web.RESULT_PATHS = ("/drip", "/article/batteries")
    started = time.monotonic()
    pages = pages_by_path(research(settings(web)))
    assert pages["/drip"]["status"] == "timeout" and pages["/article/batteries"]["status"] == "ok"
    assert time.monotonic() - started < 5  # the hop deadline (0.5 + 2 x 0.5 s), not forever


def test_a_pdf_is_read_with_its_text(web):
    from fakes.fake_web import PDF_SENTENCES, pdf_bytes

    pdf_bytes(PDF_SENTENCES)  # made once, before the fetch's timeout starts
    web.RESULT_PATHS = ("/report.pdf",)
    page = pages_by_path(research(settings(web), question="battery storage Spain"))["/report.pdf"]
    assert page["status"] == "ok" and page["content_type"] == "application/pdf"
    assert page["title"] == "Battery report 2024"
    assert PDF_SENTENCES[0] in " ".join(page["passages"])


def test_transient_errors_are_retried_once(web):
    web.RESULT_PATHS = ("/flaky",)
    res = research(settings(web))
    assert pages_by_path(res)["/flaky"]["status"] == "ok" and web.hits["/flaky"] == 2


def test_per_host_concurrency_limit_holds(web):
    web.RESULT_PATHS = tuple(f"/article/batteries?n={i}" for i in range(6))
    web.hold_s = 0.15
    research(settings(web, per_host=1))
    assert web.max_in_flight == 1
    web.max_in_flight = 0
    research(settings(web, per_host=3, cache=False))
    assert 1 < web.max_in_flight <= 3 + 1  # + the search call


def test_a_second_run_is_served_from_the_cache(web):
    first = research(settings(web))
    before = dict(web.hits)
    second = research(settings(web))
    assert dict(web.hits) == before
    assert second.data["web"]["fetched"] == 0 and second.data["web"]["search_from_cache"]
    assert second.markdown == first.markdown
    research(settings(web, cache=False))  # --no-cache fetches again
    assert web.page_fetches() > sum(n for p, n in before.items() if not p.startswith("/searxng"))


def test_a_failed_search_is_reported_not_fatal(web, monkeypatch):
    s = settings(web)
    s["url"] = web.url("/nowhere")
    res = research(s)
    assert res.data["web"]["search_error"] and "search" in res.markdown and res.data["web"]["pages"] == []
    monkeypatch.setenv("TAVILY_API_KEY", SECRET)
    s = settings(web, "tavily", url=web.url("/brave/res/v1/web/search"))  # the wrong API: 401-ish answer
    err = research(s).data["web"]["search_error"]
    assert "HTTP 401 (check TAVILY_API_KEY)" in err and SECRET not in err


def test_pages_on_the_users_own_network_are_not_fetched_by_default(web):
    res = research(settings(web, allow_private=False))  # the fake web lives on 127.0.0.1
    assert {p["status"] for p in res.data["web"]["pages"]} == {"blocked address"}
    assert web.page_fetches() == 0 and web.search_calls() == 1  # the search endpoint is the user's choice


# ---------------------------------------------------------------- fetched text is data

def test_injected_text_stays_inside_its_quotation(web):
    md = research(settings(web)).markdown
    begins = re.findall(r"<<<BEGIN QUOTED PAGE (\S+)>>>", md)
    ends = re.findall(r"<<<END QUOTED PAGE (\S+)>>>", md)
    assert begins == ends and len(begins) == 4  # the page's fake end marker did not survive
    inside = [m.group(1) for m in re.finditer(r"<<<BEGIN QUOTED PAGE \S+>>>\n(.*?)\n<<<END QUOTED PAGE", md, re.S)]
    assert any(INJECTION in block for block in inside)
    outside = re.sub(r"<<<BEGIN QUOTED PAGE \S+>>>.*?<<<END QUOTED PAGE \S+>>>", "", md, flags=re.S)
    assert "IGNORE ALL PREVIOUS" not in outside
    for block in inside:  # passages are block-quoted lines under the title/url/accessed header
        body = [ln for ln in block.split("\n") if not ln.startswith(("title: ", "url: ", "accessed: "))]
        assert all(ln.startswith(">") for ln in body)


# ---------------------------------------------------------------- citations in the document

def _done(key_pages: list[tuple[str, str]], failed: int = 0) -> dict:
    pages = [{"key": k, "url": u, "title": f"Title {k}", "accessed": "2026-01-02", "used": True, "status": "ok"}
             for k, u in key_pages]
    pages += [{"key": None, "url": "https://x.example/404", "title": "x", "accessed": "2026-01-02", "used": False,
               "status": "http 404"}] * failed
    tid = key_pages[0][0].split("#")[0]
    return {"id": tid, "state": "done", "data": {"web": {"enabled": True, "provider": "searxng", "pages": pages}}}


def test_cite_web_numbers_the_keys_and_lists_exactly_the_pages_used():
    results = [_done([("q1#1", "https://a.example/1"), ("q1#2", "https://a.example/2")], failed=1),
               {"state": "done", "data": {"rows": 3}},
               _done([("q2#1", "https://b.example/1"), ("q2#2", "https://a.example/2")], failed=1)]
    doc = ("# T\n\n## Analysis\n\nGrowth [q1#2]. Prices [q2#1; q1#1]. Same page [q2#2]. Made up [q2#9]. C sharp [C#1]. File [notes.md:L3].\n\n"
           "## Sources\n\n- `notes.md`\n\n> a note\n")
    out = cite_web(doc, results, {"enabled": True}, n_files=1)
    assert "Growth [2]. Prices [3; 1]. Same page [2]. Made up [q2#9?]. C sharp [C#1]. File [notes.md:L3]." in out
    assert "1 citation point at no page that was used (marked `?`): q2#9." in out
    listed = re.findall(r"^(\d+)\. Title (\S+)\. <(\S+)> \(accessed 2026-01-02\)$", out, re.M)
    assert listed == [("1", "q1#1", "https://a.example/1"), ("2", "q1#2", "https://a.example/2"),
                      ("3", "q2#1", "https://b.example/1")]
    assert "x.example/404" not in out and "- `notes.md`" in out
    assert "Drew on 1 input file and 3 web pages from 2 searches" in out and "1 page could not be used" in out
    assert out.index("## Sources") < out.index("1. Title") < out.index("> a note")


def test_cite_web_says_when_there_was_no_web_research():
    doc = "# T\n\ntext\n"
    assert cite_web(doc, [], None) == doc  # a workflow without web roles is untouched
    out = cite_web(doc, [], {"enabled": False, "why": "turned off with --no-web"}, n_files=2)
    assert "Drew on 2 input files only; no web research (turned off with --no-web)." in out
    assert "Drew on no input files; no web research (x)." in cite_web(doc, [], {"enabled": False, "why": "x"})
    assert "web research was on (brave) but no research task ran" in cite_web(doc, [], {"enabled": True,
                                                                                       "provider": "brave"})


def test_importing_the_tools_does_not_import_the_http_or_extraction_libraries():
    code = ("import sys, utils.tools; bad = [m for m in ('httpx', 'trafilatura', 'openai') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_shortened_research_output_never_leaves_a_quotation_open(web):
    from utils.run.context import fit_outputs

    md = research(settings(web)).markdown
    for budget in range(150, 1200, 37):
        fitted, shortened = fit_outputs({"q1": md, "other": "x" * 8000}, budget)
        assert shortened
        text = fitted["q1"]
        assert text.count("<<<BEGIN QUOTED PAGE") == text.count("<<<END QUOTED PAGE"), budget


def test_the_live_display_names_a_research_tasks_failures(web):
    from utils.app.render import Display
    from utils.app.render_plain import task_line

    res = research(settings(web))
    data = {"id": "q1", "state": "done", "elapsed_s": 1.0, "tokens": 0, "result": {"data": res.data}}
    line = task_line(data)
    assert "web: 9 results, 4 pages used, 5 failed (http 404 ×1, timeout ×1, too large ×1" in line
    from utils.events import Event
    assert Display._rich_lines(None, Event("task", data)) == [(line, "dim")]


def test_a_task_without_instructions_searches_the_goal(web):
    inp = ToolInput(task={"id": "research", "title": "Web research", "instructions": ""}, data_path=None,
                    input_paths=[], deps={}, params={}, goal="home battery storage in Spain", web=settings(web))
    assert run_tool("web_research", inp).data["web"]["question"] == "home battery storage in Spain"
