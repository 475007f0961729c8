"""The citation check's rules, one at a time (`utils/run/claims.py`, `utils/run/claim_evidence.py`).

Each normalisation is tested both ways, so a rule that is dropped or made too loose fails a test:
4.2 billion equals 4,200,000,000 but not 4.2 million; 6.5 % equals 6.5 percent but not 6.6; a number
shown to one decimal may round the source, one shown to two may not.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from utils.run.claim_evidence import check_drafts, run_evidence, tool_figures
from utils.run.claims import (MARKER, SUPPORTED, UNCITED, UNSUPPORTED, Evidence, Figures, Sentence, check_draft,
                              check_sentence, citations, evidence_numbers, mark, sentence_numbers, split_sentences,
                              supports)


def held(stated: str, source: str) -> bool:
    """Does source text `source` support the one number stated in `stated`?"""
    nums = sentence_numbers(stated)
    assert len(nums) == 1, nums
    return supports(nums[0], evidence_numbers(source))


@pytest.mark.parametrize("stated, source, ok", [
    ("revenue of $4.2 billion", "revenue was 4,200,000,000 dollars", True),
    ("revenue of 4,200,000,000 dollars", "revenue was $4.2 billion", True),
    ("revenue of $4.2 billion", "revenue was $4.2bn", True),
    ("revenue of $4.2 billion", "revenue was $4.2 million", False),
    ("revenue of $4.2 billion", "revenue was 4,300,000,000 dollars", False),
    ("revenue of 4.2 million euros", "revenue_mn: 4.2", True),       # a column in millions
])
def test_billion_and_million_are_the_numbers_they_name(stated, source, ok):
    assert held(stated, source) is ok


@pytest.mark.parametrize("stated, source, ok", [
    ("growth of 6.5 %", "the market grew 6.5 percent", True),
    ("growth of 6.5 percent", "the market grew 6.5%", True),
    ("growth of 6.5 per cent", "the market grew 6.5 %", True),
    ("growth of 6.5 %", "the market grew 6.6 percent", False),
    ("a share of 41 %", "share: 0.41", True),                        # a share written as a fraction
    ("a share of 41 %", "share: 0.45", False),
])
def test_percent_and_the_word_percent_are_one_unit(stated, source, ok):
    assert held(stated, source) is ok


@pytest.mark.parametrize("stated, source, ok", [
    ("churn of 3.5 %", "churn was 3.47 percent", True),     # rounded to the one decimal shown
    ("churn of 3 %", "churn was 3.47 percent", True),       # rounded to the whole number shown
    ("churn of 3.5 %", "churn was 3.56 percent", False),    # 3.56 rounds to 3.6
    ("churn of 3.47 %", "churn was 3.5 percent", False),    # more precision than the source has
    ("revenue of $4.2 billion", "4,213,000,000 dollars", True),
    ("revenue of $4.21 billion", "$4.2 billion", False),
])
def test_rounding_is_allowed_to_the_precision_shown_and_no_further(stated, source, ok):
    assert held(stated, source) is ok


def test_versions_dates_years_and_positions_are_not_numbers_to_check():
    text = "Version 2.5 shipped on 2025-05-01, in May 2024, as the 3rd release, ticket #4411."
    assert sentence_numbers(text) == []
    assert [n.text for n in sentence_numbers("It grew 12 % in 2025 to 300 units [source: a.md:L12].")] == \
        ["12 %", "300"]


@pytest.mark.parametrize("stated, source, ok", [
    ("a correlation of -0.42", "r: 0.42", False),            # the sign is part of the number
    ("a correlation of 0.42", "r: -0.42", False),
    ("a correlation of −0.42", "r: -0.42", True),             # U+2212 is a minus too
    ("a correlation of (-0.42)", "r = −0.4213", True),        # after a bracket; rounded as shown
    ("a change of -$5 million", "change: -5,000,000", True),
    ("19 cases", "COVID-19 cases", True),                     # a hyphen after a word is no sign
    ("21 teams", "the 2020-21 season", True),                 # nor after a digit
])
def test_a_minus_sign_counts(stated, source, ok):
    assert held(stated, source) is ok


def test_signs_count_against_the_tools_figures_and_words_of_a_fall_may_stand_for_one():
    ev = Evidence(mode="figures", figures=Figures(tool_figures({"r": -0.42, "slope": 0.8, "change": -3.0}, [])))
    assert verdict("Price and demand correlate at -0.42.", ev).status == SUPPORTED
    assert verdict("Price and demand correlate at 0.42.", ev).status == UNSUPPORTED
    assert verdict("The slope is -0.8 per unit.", ev).status == UNSUPPORTED
    assert verdict("The slope is 0.8 per unit.", ev).status == SUPPORTED
    assert verdict("Sales fell by 3 units.", ev).status == SUPPORTED          # "fell by 3" states -3 in words
    assert verdict("Sales rose by 3 units.", ev).status == UNSUPPORTED
    assert verdict("There is a negative correlation of 0.42.", ev).status == SUPPORTED
    assert [(n.text, n.value) for n in sentence_numbers("r is −0.42 [q1#2].")] == [("−0.42", -0.42)]


def test_enumerations_are_not_claimed_numbers():
    for text in ("Claim 7 [q2#3]: revenue rose 12 %.", "Step 7: revenue rose 12 %.", "Task 3 says revenue rose 12 %."):
        assert [n.text for n in sentence_numbers(text)] == ["12 %"], text
    ev = Evidence(mode="figures", figures=Figures([12.0]))
    assert verdict("Claim 7: revenue rose 12 %.", ev).status == SUPPORTED


def test_sentences_citations_and_what_is_not_a_sentence():
    md = ("## Heading with 12 items\n\nFirst claim is 6.5 % [source: notes.md:L3]. Second one [q1#2, q2#1].\n"
          "- Third, cited after the stop. [source: a.md:L2-L4; b.csv:L2-L9 (column 'x')]\n\n"
          "```\nprint(42)\n```\n[^n1]: a footnote with 7 words\n| cell | 9 |\n")
    texts = [s.text for s in split_sentences(md)]
    assert texts == ["First claim is 6.5 % [source: notes.md:L3].", "Second one [q1#2, q2#1].",
                     "Third, cited after the stop. [source: a.md:L2-L4; b.csv:L2-L9 (column 'x')]", "| cell | 9 |"]
    assert citations(texts[1]) == [("web", "q1#2"), ("web", "q2#1")]
    assert citations(texts[2]) == [("file", "a.md:L2-L4"), ("file", "b.csv:L2-L9 (column 'x')")]
    assert citations("see [the docs](http://x.org/a:L3) and [^n1]") == []


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nThe market grew 6.5 % in 2025.\nBuyers called prices \"too high\".\n",
                    encoding="utf-8")
    return path


def verdict(text: str, ev: Evidence):
    return check_sentence(Sentence(0, len(text), text), ev)


def test_file_citations_must_exist_and_say_the_number_and_the_quoted_words(notes):
    ev = run_evidence("sources", [str(notes)], [], [])
    assert verdict("The market grew 6.5 percent [source: notes.md:L3].", ev).status == SUPPORTED
    wrong = verdict("The market grew 9.9 % [source: notes.md:L3].", ev)
    assert wrong.status == UNSUPPORTED and "9.9 % is not in notes.md:L3" in wrong.problems[0]
    assert "The market grew 6.5 % in 2025." in wrong.problems[0]  # the worker is shown what the line says
    assert "no line 40 (it has 4 lines)" in verdict("It grew 6.5 % [source: notes.md:L40].", ev).problems[0]
    assert "other.md is not one of the sources" in verdict("It grew 6.5 % [source: other.md:L3].", ev).problems[0]
    assert verdict("Buyers called prices \"too high\" [source: notes.md:L4].", ev).status == SUPPORTED
    quote = verdict("Buyers called prices \"a bargain\" [source: notes.md:L4].", ev)
    assert quote.status == UNSUPPORTED and "\"a bargain\"" in quote.problems[0]
    assert verdict("Prices rose 12 % last year.", ev).status == UNCITED
    assert verdict("Prices rose sharply last year.", ev) is None


def test_web_keys_must_be_passages_that_were_fetched():
    page = {"url": "http://x/a", "title": "Batteries", "used": True, "key": "q1#1", "status": "ok",
            "passages": ["Installations reached 1.2 million units in 2024."]}
    research = {"id": "q1", "state": "done", "data": {"web": {"enabled": True, "pages": [page]}}}
    ev = run_evidence("sources", [], [research], [research])
    assert verdict("Installations reached 1.2 million units [q1#1].", ev).status == SUPPORTED
    assert verdict("Installations reached 1.5 million units [q1#1].", ev).status == UNSUPPORTED
    never = verdict("Installations reached 1.2 million units [q1#7].", ev)
    assert never.status == UNSUPPORTED and "q1#7 is a web passage that was never fetched" in never.problems[0]


def test_a_csv_mean_is_held_to_the_fact_its_pointer_names(tmp_path):
    csv = tmp_path / "survey.csv"
    csv.write_text("score\n4\n5\n3\n", encoding="utf-8")
    fact = {"pointer": "survey.csv:L2-L4 (column 'score')", "value": 4.0, "text": "score: mean 4 over 3 rows"}
    gather = {"id": "g1", "state": "done", "data": {"facts": [fact]}}
    ev = run_evidence("sources", [str(csv)], [gather], [gather])
    assert verdict("The mean score is 4.0 [source: survey.csv:L2-L4 (column 'score')].", ev).status == SUPPORTED
    assert verdict("The mean score is 4.4 [source: survey.csv:L2-L4 (column 'score')].", ev).status == UNSUPPORTED


def test_in_the_analysis_a_number_must_be_a_figure_the_tools_computed():
    figures = tool_figures({"describe": {"price": {"mean": 12.5321, "n": 40}}, "note": "r2 = 0.614"}, [])
    ev = Evidence(mode="figures", figures=Figures(figures))
    assert verdict("The mean price is 12.53 dollars over 40 rows.", ev).status == SUPPORTED
    assert verdict("The model explains 61 % of the variance.", ev).status == SUPPORTED   # 0.614 as a share
    wrong = verdict("The mean price is 13.2 dollars.", ev)
    assert wrong.status == UNSUPPORTED and "13.2 matches no figure the tools computed" in wrong.problems[0]


def test_a_draft_goes_back_once_then_its_failing_sentences_are_marked(notes):
    draft = "## Market\n\nThe market grew 6.5 % [source: notes.md:L3]. It grew 9.9 % [source: notes.md:L3].\n"
    first = check_drafts("sources", [str(notes)], [], [], {"a1": draft}, sent={})
    assert first["a1"]["record"]["sent_back"] == 1 and "It grew 9.9 %" in first["a1"]["feedback"]
    assert "The market grew 6.5 % [source" not in first["a1"]["feedback"]   # the faithful sentence is not named
    again = check_drafts("sources", [str(notes)], [], [], {"a1": draft}, sent={"a1": 1})["a1"]
    assert "feedback" not in again
    out = again["output"]
    assert out.count(MARKER) == 1 and f"[source: notes.md:L3]. {MARKER}[^unverified-a1-1]" in out
    assert "[^unverified-a1-1]: Unverified (the citation check failed): 9.9 % is not in notes.md:L3" in out
    assert again["record"] | {"problems": None, "digest": None} == {
        "sentences": 2, "checked": 2, "supported": 1, "unsupported": 1, "uncited": 0, "revised": 1,
        "problems": None, "digest": None}


def test_marking_keeps_the_rest_of_the_text_and_counts_each_status(notes):
    ev = run_evidence("sources", [str(notes)], [], [])
    md = "Growth was 6.5 % [source: notes.md:L3]. Prices rose 12 %.\nNo numbers here."
    check = check_draft(md, ev)
    assert check.counts() == {"sentences": 3, "checked": 2, "supported": 1, "unsupported": 0, "uncited": 1,
                              "revised": 0}
    marked = mark(md, check.failing, "a 1")
    assert marked.startswith(f"Growth was 6.5 % [source: notes.md:L3]. Prices rose 12 %. {MARKER}[^unverified-a-1-1]\n"
                             "No numbers here.")
    assert "[^unverified-a-1-1]: Unverified (no citation): 12 % has no citation" in marked


def test_worker_prompts_name_the_citation_syntax_the_check_reads():
    from utils.run.spec import load_spec

    report, analysis = load_spec("report"), load_spec("analysis")
    assert (report.claims, analysis.claims, load_spec("blog").claims) == ("sources", "figures", "none")
    for role in ("analyst", "summarizer"):
        system = report.roles[role].system
        assert "[source: FILE:Lnn]" in system and "[q1#2]" in system, role
        # the example the prompt gives is itself read as a citation by the check
        example = "[source: notes.md:L12]" if role == "analyst" else "[source: FILE:Lnn]"
        assert citations(example) == [("file", example[9:-1])]
    assert "checked against the figures the tools computed" in " ".join(analysis.roles["interpreter"].system.split())


def test_the_summary_line_says_how_many_claims_were_checked_and_unsupported():
    from utils.app.render_plain import summary_line

    info = {"status": "ok", "elapsed_s": 2.0, "calls": 3, "output_dir": "runs/x"}
    line = summary_line({**info, "claims": {"checked": 14, "unsupported": 6, "uncited": 1}})
    assert line.endswith("· claims: 14 checked, 6 unsupported, 1 uncited · runs/x")
    assert "claims: 2 checked, 0 unsupported ·" in summary_line({**info, "claims": {"checked": 2, "unsupported": 0}})
    assert "claims" not in summary_line(info)


def test_only_new_model_drafts_are_checked_and_finished_records_counted():
    from types import SimpleNamespace

    from utils.run.claim_evidence import drafts_to_check, verification_records
    from utils.run.claims import digest
    from utils.run.plan import Plan, Task

    plan = Plan(goal="g", tasks=[Task(id=i, title=i, role=r) for i, r in
                                 (("load", "loader"), ("w1", "writer"), ("w2", "writer"), ("w3", "writer"))])
    roles = {"loader": SimpleNamespace(kind="tool"), "writer": SimpleNamespace(kind="llm")}
    results = {"w3": {"id": "w3", "role": "writer", "state": "failed"},
               "w2": {"id": "w2", "role": "writer", "state": "done", "output": "old",
                      "claims": {"digest": digest("old"), "checked": 1}},
               "w1": {"id": "w1", "role": "writer", "state": "done", "output": "new"},
               "load": {"id": "load", "role": "loader", "state": "done", "output": "facts"}}
    ordered, tools, drafts = drafts_to_check(plan, results, roles)
    assert [r["id"] for r in ordered] == ["load", "w1", "w2", "w3"] and [r["id"] for r in tools] == ["load"]
    assert drafts == {"w1": "new"}                      # w2 was checked as it is; w3 has no draft
    assert verification_records(results) == [{"digest": digest("old"), "checked": 1}]
