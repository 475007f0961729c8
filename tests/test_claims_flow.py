"""The citation check in whole runs: `main.py` against the fake model (and the fake web).

The scripted workers plant every kind of error the check must catch (a wrong number, a citation of a
line that does not say the number, a web passage that was never fetched, a line past the end of the
file, a misquote, an uncited number, a number the analysis tools never computed) between faithful
sentences. Each planted error must go back to its worker once with its problem, be marked unverified
with a footnote when the revision repeats it, and no faithful sentence may be flagged; the counts in
run.json and the summary line are compared with counts made here from the script itself.
"""
from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer, Reply
from fakes.fake_web import FakeWeb
from tests.helpers import cli_env, only_run, run_main
from tests.scripted import Script, worker_requests
from utils.run.claims import MARKER

NOTES = ("# Market notes\n\nThe market grew 6.5 % in 2025.\n"
         "Revenue reached $4.2 billion, and buyers called prices \"too high\".\nChurn fell to 3.47 percent.\n")
# The passage the fake web serves for every search (fakes/fake_web.py ARTICLE_BATTERIES).
FAITHFUL_A1 = [
    "The market grew 6.5 percent in 2025 [source: notes.md:L3].",
    "Revenue reached 4,200,000,000 dollars [source: notes.md:L4].",
    "Churn fell to 3.5 % [source: notes.md:L5].",
    "Buyers called prices \"too high\" [source: notes.md:L4].",
    "German home battery installations reached 1.2 million units [q1#1].",
]
PLANTED_A1 = {  # sentence -> the words its problem must name
    "The market grew 9.9 % in 2025 [source: notes.md:L3].": "9.9 % is not in notes.md:L3",
    "Revenue reached $4.2 billion [source: notes.md:L3].": "$4.2 billion is not in notes.md:L3",
    "Installations rose 40 percent [q1#7].": "q1#7 is a web passage that was never fetched",
    "Margins were 18 % [source: notes.md:L40].": "notes.md has no line 40",
    "Buyers called prices \"a bargain\" [source: notes.md:L4].": "\"a bargain\" are not in notes.md:L4",
}
UNCITED_A1 = "Prices fell by 12 % last year."
FIXED_A1 = ("Churn fell to 2.9 % [source: notes.md:L5].", "Churn fell to 3.47 % [source: notes.md:L5].")
FAITHFUL_S1 = "The market grew 6.5 % [source: notes.md:L3]."
PLANTED_S1 = "Revenue hit $5 billion [source: notes.md:L4]."
PLAIN = "Storage is a growing business."  # no number, no citation: not checked


def report_plan() -> dict:
    def task(tid, role, deps, **kw):
        return {"id": tid, "title": f"Title {tid}", "role": role, "instructions": f"Do {tid}",
                "depends_on": deps, "priority": 2, **kw}
    return {"goal": "Market report", "notes": "", "done": False,
            "tasks": [task("g1", "gatherer", [], inputs=["notes.md"]), task("q1", "researcher", []),
                      task("a1", "analyst", ["g1", "q1"]), task("s1", "summarizer", ["a1"])]}


def report_worker(tid: str, req) -> Reply:
    """Ignores the check's feedback (so planted errors survive to be marked), except one fix."""
    revising = "citation check found" in req.last_user()
    if tid == "a1":
        lines = FAITHFUL_A1 + list(PLANTED_A1) + [UNCITED_A1, FIXED_A1[revising], PLAIN]
        return Reply(text="## Analysis\n\n" + "\n".join(f"- {s}" for s in lines))
    return Reply(text=f"## Executive summary\n\n- {FAITHFUL_S1}\n- {PLANTED_S1}")


@pytest.fixture
def web_env(tmp_path: Path):
    web = FakeWeb(slow_s=0.1).start()
    llm = FakeLLMServer().start()
    env = cli_env(tmp_path / "home", llm.base_url, ORCH_SEARCH="searxng", SEARXNG_URL=web.url("/searxng"),
                  ORCH_WEB_ALLOW_PRIVATE="1")
    try:
        yield llm, env
    finally:
        llm.stop()
        web.stop()


def test_every_planted_error_is_sent_back_then_marked_and_no_faithful_sentence_is_flagged(web_env, tmp_path):
    llm, env = web_env
    notes = tmp_path / "notes.md"
    notes.write_text(NOTES, encoding="utf-8")
    (tmp_path / "orch.yaml").write_text("web_results: 1\n", encoding="utf-8")  # one page: q1#1
    llm.responder = Script(plans=[report_plan()], worker=report_worker)
    done = run_main(["--example", "report", "Market report", "--input", notes, "--config", tmp_path / "orch.yaml",
                     "--output-dir", tmp_path / "runs"], env, cwd=tmp_path)
    assert done.code == 0, done.output[-3000:]
    run_dir = only_run(tmp_path / "runs")
    state = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    doc = (run_dir / "output.md").read_text(encoding="utf-8")

    # Sent back once, each planted error named with its problem, no faithful sentence named.
    a1, s1 = worker_requests(llm, "a1"), worker_requests(llm, "s1")
    assert len(a1) == 2 and len(s1) == 2
    def feedback_of(req) -> str:
        return req.last_user().split("citation check found", 1)[1].split("# Your previous version")[0]
    feedback = feedback_of(a1[1])
    for sentence, problem in PLANTED_A1.items():
        assert sentence in feedback and problem in feedback, sentence
    assert UNCITED_A1 in feedback and "12 % has no citation" in feedback
    assert FIXED_A1[0] in feedback
    assert not any(s in feedback for s in FAITHFUL_A1 + [PLAIN])
    assert PLANTED_S1 in feedback_of(s1[1]) and FAITHFUL_S1 not in feedback_of(s1[1])

    # Marked in the document: each surviving planted sentence, with its reason in a footnote.
    body = doc.split("[^unverified-a1-1]:")[0]
    marked = re.findall(rf"- (.*?) {re.escape(MARKER)}\[\^unverified-(\w+)-(\d+)\]", body)
    shown = {re.sub(r"\[q1#7\?\]", "[q1#7]", m[0]) for m in marked}  # the doc marks an unknown web key `?`
    assert shown == set(PLANTED_A1) | {UNCITED_A1, PLANTED_S1}
    for _, tid, n in marked:
        assert re.search(rf"^\[\^unverified-{tid}-{n}\]: Unverified \(", doc, re.M)
    assert doc.count(MARKER) == len(PLANTED_A1) + 2
    assert FIXED_A1[1] in doc and FIXED_A1[0] not in doc

    # run.json counts: made here from the script, not read back from the app.
    a1_sentences = len(FAITHFUL_A1) + len(PLANTED_A1) + 3
    expected = {"sentences": a1_sentences + 2, "checked": a1_sentences - 1 + 2,
                "supported": len(FAITHFUL_A1) + 1 + 1, "unsupported": len(PLANTED_A1) + 1, "uncited": 1,
                "revised": len(PLANTED_A1) + 2 + 1}
    assert state["verification"] == expected
    assert state["results"]["a1"]["claims"]["revised"] == len(PLANTED_A1) + 2
    assert f"claims: {expected['checked']} checked, {expected['unsupported']} unsupported, 1 uncited" in done.stdout


def test_analysis_numbers_must_be_figures_the_tools_computed(fake_llm: FakeLLMServer, tmp_path):
    rows = [(i, 10 + i * 0.37, 3 + (i % 5)) for i in range(1, 31)]
    data = tmp_path / "prices.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("row", "price", "rooms")] + rows)
    mean = statistics.fmean(r[1] for r in rows)  # computed here, independently of the tools
    right, wrong = f"The mean price is {mean:.2f}.", f"The mean price is {mean + 1.31:.2f}."

    def interpreter(tid, req):
        return Reply(text=f"## Figures\n\n{right} {wrong} Prices vary across rooms.")
    fake_llm.responder = Script(worker=interpreter, plans=[{"goal": "g", "notes": "", "done": False, "tasks": [
        {"id": "load", "title": "Load", "role": "loader", "instructions": "", "depends_on": [], "priority": 1},
        {"id": "stats", "title": "Stats", "role": "statistician", "instructions": "", "depends_on": ["load"],
         "priority": 2},
        {"id": "i1", "title": "Interpret", "role": "interpreter", "instructions": "", "depends_on": ["stats"],
         "priority": 3}]}])
    done = run_main(["--example", "analysis", "--data", data, "--target", "price", "--output-dir", tmp_path / "runs"],
                    cli_env(tmp_path / "home", fake_llm.base_url), cwd=tmp_path)
    assert done.code == 0, done.output[-3000:]
    state = json.loads((only_run(tmp_path / "runs") / "run.json").read_text(encoding="utf-8"))
    assert len(worker_requests(fake_llm, "i1")) == 2
    assert state["verification"] == {"sentences": 3, "checked": 2, "supported": 1, "unsupported": 1,
                                     "uncited": 0, "revised": 1}
    out = state["results"]["i1"]["output"]
    assert f"{right} {wrong} {MARKER}" in out and "matches no figure the tools computed" in out
