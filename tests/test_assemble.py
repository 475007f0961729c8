"""Document assembly and run status: plan order, cohesion text, honest gaps."""
from utils.run.assemble import OFFLINE_BANNER, assemble, document_sections
from utils.run.outputs import Cohesion
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
