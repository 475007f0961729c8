"""Document assembly and run status: plan order, cohesion text, honest gaps."""
from types import SimpleNamespace

from utils.run.assemble import OFFLINE_BANNER, assemble, cohesion_call, document_sections, final_document
from utils.run.outputs import Cohesion
from utils.tools.sources import NO_SOURCES
from utils.run.plan import Plan, Task

PLAN = Plan(goal="The goal", tasks=[Task(id="an", title="Analysis", role="analyst"),
                                    Task(id="s1", title="One", role="writer"),
                                    Task(id="s2", title="Two", role="writer", depends_on=["s1"]),
                                    Task(id="sum", title="Summary", role="summarizer")])


def test_sections_in_plan_order_summary_first_and_gaps_named():
    results = {"an": {"state": "done", "output": "AN"}, "s1": {"state": "failed", "error": "boom"},
               "s2": {"state": "skipped"}, "sum": {"state": "done", "output": "## Summary\nSUM"}}
    sections = document_sections(PLAN, results, ["writer"], summary_role="summarizer")
    assert [s[0] for s in sections] == ["sum", "s1", "s2"]
    assert "failed: boom" in sections[1][2] and "was skipped" in sections[2][2]


def test_assemble_with_cohesion_and_offline_banner():
    sections = [("s1", "One", "Body one"), ("s2", "Two", "## Two\nBody two")]
    cohesion = Cohesion(title="Title", meta_description="Meta", introduction="Intro",
                        transitions={"s2": "Next, two."})
    doc = assemble(PLAN, sections, cohesion, offline=True, notes=["a note"], sources=["`a.md`: 3 facts"])
    assert doc.startswith("# Title\n") and OFFLINE_BANNER in doc
    assert doc.index("## One") < doc.index("Body one") < doc.index("## Two") < doc.index("Next, two.") < doc.index("Body two")
    assert doc.count("## Two") == 1 and "## Sources" in doc and "- `a.md`: 3 facts" in doc and "> a note" in doc


def test_final_document_says_plainly_when_nothing_backs_a_cited_report():
    spec = SimpleNamespace(assembly=SimpleNamespace(cite_inputs=True))
    results = {"s1": {"state": "done", "output": "Body one"}}
    sections = [("s1", "One", "Body one")]
    doc = final_document(spec, PLAN, results, sections, None, offline=False, notes=[], inputs=[], web=None)
    assert NO_SOURCES in doc and doc.index(NO_SOURCES) < doc.index("Body one") and sections == [("s1", "One", "Body one")]
    with_web = final_document(spec, PLAN, results, sections, None, offline=False, notes=[], inputs=[],
                              web={"enabled": True})
    plain = final_document(SimpleNamespace(assembly=SimpleNamespace(cite_inputs=False)), PLAN, results, sections, None,
                           offline=False, notes=[], inputs=[], web=None)
    assert NO_SOURCES not in with_web and "web research was on" in with_web  # the web citer speaks instead
    assert "## Sources" not in plain and "Body one" in plain


def test_cohesion_call_names_the_sections():
    from utils.run.spec import load_spec

    messages, call = cohesion_call(load_spec("blog"), PLAN, [("s1", "One", "Body one")],
                                   {"context_budget": 6000, "reviewer_model": "r"})
    assert messages and call["model"] == "r" and call["purpose"] == "cohesion pass"
    assert "s1" in str(call["schema"].model_json_schema())
