"""report.html (`utils/run/report_html.py`): safe rendering, the numbers it shows, and real pages in
headless Chromium (a blog, a report with web research, an analysis).

The browser tests need Debian's `chromium` (CI installs it; elsewhere they are skipped, saying why).
They check what a reader's browser does with the page: no console error, no request to any host
(Chromium runs behind a dead proxy, the DevTools protocol lists every request, and a local server
counts hits for the planted remote image), a screenshot that is not blank, every chart decoded and
laid out, planted `<script>` / `onerror=` in model text inert, and the PDF print has the headings.
"""
from __future__ import annotations

import io
import json
import re
import threading
import unicodedata
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer, Reply
from fakes.fake_web import FakeWeb
from tests.chromium import Chromium, find_chromium
from tests.helpers import run_app
from tests.scripted import Script
from utils.run.report_html import build_report, read_calls
from utils.run.report_markdown import gantt_table, markdown_html

KEY_RE = re.compile(r"<<<BEGIN QUOTED PAGE (\S+)>>>")
PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                        "0000000d49444154789c6360f8cf000000030101005ac2b1d00000000049454e44ae426082")


def hostile(port: int) -> str:
    """Model text that would act if the page passed HTML through."""
    return (f"<script>document.title='PWNED-SCRIPT';window.pwned=1</script>\n\n"
            f'<img src="http://127.0.0.1:{port}/onerror.png" onerror="document.title=\'PWNED-ONERROR\'">\n\n'
            f"![tracker](http://127.0.0.1:{port}/track.png)\n\n"
            f"[click me](javascript:document.title='PWNED-LINK')\n\n"
            f'<iframe src="http://127.0.0.1:{port}/frame"></iframe>\n')


# ---------------------------------------------------------------- rendering (no browser)

def test_markdown_keeps_no_html_no_handlers_no_remote_images(tmp_path):
    (tmp_path / "chart.png").write_bytes(PNG_1PX)
    out = markdown_html(hostile(9) + "\n![ok](chart.png)\n\n![up](../secret.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
                        tmp_path)
    assert "<script" not in out and "<iframe" not in out and "&lt;script&gt;" in out
    assert not re.search(r"<[^>]+\son\w+=", out)  # no event handler on any element
    assert "http://127.0.0.1:9" not in re.sub(r"&lt;.*?&gt;", "", out).replace("&quot;", "")  # only as escaped text
    assert "javascript:" not in re.findall(r'href="([^"]*)"', out) and 'href="javascript' not in out
    assert out.count("<img") == 1 and "data:image/png;base64," in out  # the folder's chart, embedded
    assert "[image not embedded: tracker]" in out and "[image not embedded: up]" in out
    assert "<table>" in out and "<td>2</td>" in out


def test_gantt_becomes_a_table():
    code = ("gantt\n    title Schedule\n    dateFormat YYYY-MM-DD\n    section pm\n"
            "    Discovery (pm-1) :crit, w1, 2026-12-04, 2026-12-09\n    section qa\n    Tests :w2, 2026-12-09, 2026-12-11\n")
    table = gantt_table(code)
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table)
    assert rows == [("pm", "Discovery (pm-1)", "2026-12-04", "2026-12-09", "yes"),
                    ("qa", "Tests", "2026-12-09", "2026-12-11", "")]
    assert gantt_table("graph LR\n a --> b") is None
    assert "<table" in markdown_html(f"```mermaid\n{code}```\n")


def test_header_and_calls_table_show_the_saved_numbers(tmp_path):
    calls = [{"purpose": "planning", "model": "m", "prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 0,
              "latency_s": 1.5, "cached": False, "cost_usd": 0.001},
             {"purpose": "task s1 (writer)", "model": "m", "prompt_tokens": 300, "completion_tokens": 40,
              "cached_tokens": 128, "latency_s": 0.25, "cached": False, "cost_usd": 0.0025},
             {"purpose": "task s2 (writer)", "model": "m", "prompt_tokens": 7, "completion_tokens": 3,
              "cached_tokens": 0, "latency_s": 0.0, "cached": True}]
    (tmp_path / "calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls) + "{torn", encoding="utf-8")
    state = {"goal": "G <b>x</b>", "workflow": "blog", "status": "ok", "meta": {"model": "m", "provider": "openai"},
             "reviews": [{"round": 1, "score": 7.5}], "verification": {"checked": 12, "unsupported": 2},
             "totals": {"calls": 3}, "document": "# Title\n\nText."}
    page = build_report(state, tmp_path)
    assert "G &lt;b&gt;x&lt;/b&gt;" in page and "7.5 / 10" in page and "checked: 12, unsupported: 2" in page
    assert len(read_calls(tmp_path)) == 3
    foot = re.search(r"<tfoot>(.*?)</tfoot>", page).group(1)
    cells = re.findall(r"<td class='n'>([^<]*)</td>", foot)
    assert cells[:5] == [f"{sum(c['prompt_tokens'] for c in calls):,}", f"{sum(c['cached_tokens'] for c in calls):,}",
                         f"{sum(c['completion_tokens'] for c in calls):,}", f"{0.001 + 0.0025:.6f}",
                         f"{sum(c['latency_s'] for c in calls):,.3f}"]
    assert "<td>s1</td>" in page and "<td>s2</td>" in page  # the task each call was for
    assert "Content-Security-Policy" in page and "script-src 'none'" in page


def test_every_run_folder_gets_a_report_and_open_opens_it(tmp_path, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    run = run_app(["--example", "blog", "--open"], tmp_path)
    assert run.code == 0, run.explain()
    page = run.run_dir() / "report.html"
    assert page.is_file() and opened == [page.resolve().as_uri()]
    run2 = run_app(["--example", "blog", "--plan-only"], tmp_path, out_name="plans")
    assert (run2.run_dir() / "report.html").is_file()


# ---------------------------------------------------------------- in a real browser

class _Counter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(PNG_1PX)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    chrome = Chromium(binary)
    try:
        yield chrome
    finally:
        chrome.close()


@pytest.fixture
def listener():
    _Counter.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Counter.hits
    finally:
        server.shutdown()
        server.server_close()


def web_report_run(tmp_path: Path, port: int) -> Path:
    """A report with web research (fake web, fake model) whose analyst plants hostile markup."""
    web, llm = FakeWeb(slow_s=2.0).start(), FakeLLMServer().start()
    try:
        notes = tmp_path / "field_notes.md"
        notes.write_text("# Field notes\n\nWe visited 14 installers in Bavaria.\n", encoding="utf-8")
        plan = {"goal": "Batteries", "notes": "", "done": False, "tasks": [
            {"id": "g1", "title": "Facts", "role": "gatherer", "instructions": "x", "depends_on": [], "priority": 1,
             "inputs": ["field_notes.md"]},
            {"id": "q1", "title": "Installations", "role": "researcher", "priority": 1, "depends_on": [],
             "instructions": "home battery installations Europe 2024"},
            {"id": "a1", "title": "Analysis", "role": "analyst", "instructions": "y", "depends_on": ["g1", "q1"],
             "priority": 2}]}

        def worker(tid, req):
            claims = " ".join(f"Claim {i} [{k}]." for i, k in enumerate(KEY_RE.findall(req.last_user()), 1))
            return Reply(text=f"## Analysis of installers\n\n{claims} Notes say so [source: field_notes.md:L3].\n\n"
                              f"{hostile(port)}")

        llm.responder = Script(plans=[plan], worker=worker, cohesion={
            "title": "Batteries <script>document.title='PWNED-TITLE'</script>", "meta_description": "m",
            "introduction": "Intro <img src=x onerror=\"document.title='PWNED-INTRO'\">.", "transitions": {}})
        env = {"ORCH_SEARCH": "searxng", "SEARXNG_URL": web.url("/searxng"), "ORCH_WEB_TIMEOUT": "0.5",
               "ORCH_WEB_ALLOW_PRIVATE": "1"}
        run = run_app(["--example", "report", "Home batteries in Europe", "--input", str(notes)], tmp_path,
                      server=llm, env=env, out_name="web")
        assert run.code == 0, run.explain()
        return run.run_dir()
    finally:
        llm.stop()
        web.stop()


PROBE = ("(document.querySelectorAll('details').forEach(d => d.open = true), {"
         "title: document.title, scripts: document.scripts.length, pwned: typeof window.pwned,"
         "handlers: document.querySelectorAll('[onerror],[onload],[onclick],iframe,object,embed').length,"
         "js_links: Array.from(document.links).filter(a => !/^(https?:|mailto:|#)/.test(a.href)).length,"
         "images: Array.from(document.images).map(i => ({ok: i.complete && i.naturalWidth > 0,"
         " w: i.getBoundingClientRect().width, h: i.getBoundingClientRect().height})),"
         "headings: Array.from(document.querySelectorAll('article h1, article h2')).map(h => h.textContent)})")


def _blank(png: bytes) -> bool:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    hist = img.histogram()
    return sum(hist[:200]) < 0.01 * img.width * img.height  # under 1 % of pixels darker than near-white


def _pdf_text(pdf: bytes) -> str:
    from pypdf import PdfReader

    text = "".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(pdf)).pages)
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))  # NFKC: a ligature is its letters


@pytest.mark.integration
def test_reports_open_cleanly_in_headless_chromium(browser, listener, tmp_path):
    port, hits = listener
    runs = {"web report": web_report_run(tmp_path, port),
            "blog": run_app(["--example", "blog"], tmp_path, out_name="blog").run_dir(),
            "analysis": run_app(["--example", "analysis"], tmp_path, out_name="analysis").run_dir()}
    for name, run_dir in runs.items():
        doc = (run_dir / "output.md").read_text(encoding="utf-8")
        page = browser.load(run_dir / "report.html", PROBE)
        facts = page.facts
        assert page.errors == [], (name, page.errors)
        assert [u[:60] for u in page.requests if not u.startswith(("file:", "data:"))] == [], name
        assert not _blank(page.screenshot), name
        charts = re.findall(r"!\[[^\]]*\]\(([\w.-]+\.png)\)", doc)
        # every chart of the document, plus the plan and the timeline, decoded and laid out
        assert len(facts["images"]) >= len(charts) + 2, (name, charts, facts["images"])
        assert all(i["ok"] and i["w"] > 50 and i["h"] > 50 for i in facts["images"]), (name, facts["images"])
        assert not facts["title"].startswith("PWNED") and facts["scripts"] == 0 and facts["pwned"] == "undefined", name
        assert facts["handlers"] == 0 and facts["js_links"] == 0, name
        headings = [h.strip() for h in re.findall(r"^#{1,2} (.+)$", doc, re.M)]
        assert headings and len(facts["headings"]) >= len(headings), (name, facts["headings"])
        text = _pdf_text(page.pdf)
        missing = [h for h in headings if re.sub(r"\s+", "", h.replace("`", "")) not in text]
        assert missing == [], (name, missing)
    web_page = (runs["web report"] / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;document.title=" in web_page  # the planted markup arrived, as text
    assert "Home battery installations in Germany" in web_page  # a quoted passage under Sources
    assert hits == []  # the planted remote image and iframe were never requested
