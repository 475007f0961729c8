"""A review round's verdict as the run records it (utils/run/review.py): which verdicts count,
the --max-revisions bound, the dependents that re-run, the reuse of a clean review on resume."""
from utils.run.outputs import ReviewResult, TaskVerdict
from utils.run.plan import Plan, Task
from utils.run.review import DEPENDENT_FEEDBACK, failed_review, review_call, reusable, verdict
from utils.run.spec import load_spec

PLAN = Plan(goal="g", tasks=[Task(id="a", title="A", role="writer"),
                             Task(id="b", title="B", role="writer", depends_on=["a"]),
                             Task(id="c", title="C", role="writer")])
DONE = {tid: {"id": tid, "state": "done", "output": tid} for tid in ("a", "b", "c")}
OPTIONS = {"max_revisions": 1, "context_budget": 6000}


def review(*verdicts: tuple[str, str, str], score: float = 6.0) -> ReviewResult:
    return ReviewResult(score=score, summary="s", tasks=[TaskVerdict(id=i, verdict=v, feedback=f) for i, v, f in verdicts])


def test_a_sent_back_task_reruns_with_its_dependents_and_their_feedback():
    judged = verdict(review(("a", "revise", " more data "), ("c", "approve", "")), PLAN, DONE, [], OPTIONS, 1, "d1")
    assert judged.revise and judged.rerun == ["a", "b"]
    assert judged.feedback == {"a": "more data", "b": DEPENDENT_FEEDBACK}
    assert judged.record["revise"] == [{"id": "a", "feedback": "more data"}] and judged.record["approved"] == ["c"]
    assert judged.record["digest"] == "d1" and not judged.record["bounded"]
    assert judged.notice.startswith("revision: 2 task(s) will re-run (1 sent back, 1 depending on them)")


def test_verdicts_that_do_not_count_and_the_revision_bound():
    empty = verdict(review(("a", "revise", "  ")), PLAN, DONE, [], OPTIONS, 1, "d")  # no feedback: nothing to act on
    assert not empty.revise and empty.record["revise"] == [] and empty.notice is None
    failed = verdict(review(("a", "revise", "x")), PLAN, {**DONE, "a": {"id": "a", "state": "failed"}}, [],
                     OPTIONS, 1, "d")
    assert not failed.revise                                      # only finished work is sent back
    spent = verdict(review(("a", "revise", "x")), PLAN, DONE, [{"rerun": ["a"]}], OPTIONS, 2, "d")
    assert not spent.revise and spent.record["bounded"] and spent.rerun == []


def test_failed_review_record_and_reuse_of_a_clean_one():
    record = failed_review(2, "timeout")
    assert record["failed"] == "timeout" and record["score"] is None and "round 2 failed" in record["summary"]
    assert reusable([{"digest": "x", "rerun": []}], "x")
    assert not reusable([{"digest": "x", "rerun": ["a"]}], "x") and not reusable([record], "x")
    assert not reusable([{"digest": "y"}], "x") and not reusable([], "x")


def test_review_call_lists_the_finished_tasks_or_is_none():
    spec = load_spec("blog")
    assert review_call(spec, PLAN, {"a": {"id": "a", "state": "failed"}}, 1, OPTIONS, offline=False) is None
    messages, call = review_call(spec, PLAN, DONE, 3, {**OPTIONS, "reviewer_model": "m"}, offline=False)
    assert messages and call["model"] == "m" and call["purpose"] == "review round 3" and call["temperature"] == 0.1
    assert call["schema"] is not ReviewResult
    assert review_call(spec, PLAN, DONE, 1, OPTIONS, offline=True)[1]["schema"] is ReviewResult
