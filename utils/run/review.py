"""A review round's verdict as the run records it, and the revision pass it asks for.

Pure functions the reviewer node calls (nodes.py keeps reading and writing the shared store): which
verdicts count (feedback-free "revise" verdicts give a worker nothing to act on), whether
--max-revisions allows another pass, which dependents re-run with the flagged tasks
(`bounded_rerun`), and the record kept in `reviews` (run.json).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from utils.run.context import review_messages
from utils.run.outputs import ReviewResult, review_model
from utils.run.plan import Plan, bounded_rerun
from utils.run.results import TaskState, ids_with, state_of
from utils.run.state import count_revisions

DEPENDENT_FEEDBACK = "A task you depend on was revised; update your part to match."


def reusable(reviews: list[dict], digest: str) -> bool:
    """Whether the last review judged exactly this work (same digest) and ended cleanly: a resumed
    run whose work has not changed since then keeps that review instead of paying for another."""
    last = reviews[-1] if reviews else {}
    return bool(last) and last.get("digest") == digest and not last.get("failed") and not last.get("rerun")


def failed_review(round_no: int, error: str) -> dict:
    """The record of a review round that failed: not an approval, the work is kept unreviewed."""
    reason = f"review round {round_no} failed; the work is kept unreviewed: {error}"
    return {"round": round_no, "score": None, "summary": reason, "failed": error,
            "revise": [], "approved": [], "rerun": [], "bounded": False}


@dataclass
class Verdict:
    """A review round's outcome: its record, and the revision pass it asks for (none: approved)."""

    record: dict
    revise: bool = False                                 # a revision pass follows
    rerun: list[str] = field(default_factory=list)      # the tasks the revision pass runs again
    feedback: dict[str, str] = field(default_factory=dict)  # task id -> what its worker is told
    notice: str | None = None                            # the revision pass, said in one line


def verdict(review: Any, plan: Plan, results: Mapping[str, Any], reviews: list[dict] | None, options: dict,
            round_no: int, digest: str) -> Verdict:
    """Read a reviewer's reply (`ReviewResult`) against the run: only a finished task with feedback
    is sent back, only while the revisions done stay under --max-revisions, with the dependents
    `bounded_rerun` allows (the rest keep their version)."""
    flagged = {v.id: v.feedback.strip() for v in review.tasks
               if v.verdict == "revise" and v.feedback.strip() and state_of(results.get(v.id)) == TaskState.DONE}
    will_revise = bool(flagged) and count_revisions(reviews) < options["max_revisions"]
    rerun, held = bounded_rerun(plan, flagged, results, options.get("max_rerun")) if will_revise else ([], [])
    record = {"round": round_no, "score": review.score, "summary": review.summary,
              "revise": [{"id": k, "feedback": v} for k, v in flagged.items()],
              "approved": [v.id for v in review.tasks if v.verdict == "approve"],
              "rerun": rerun, "held": held, "bounded": bool(flagged) and not will_revise, "digest": digest}
    if not will_revise:
        return Verdict(record)
    notice = (f"revision: {len(rerun)} task(s) will re-run ({len(flagged)} sent back, "
              f"{len(rerun) - len(flagged)} depending on them)"
              + (f"; {len(held)} further dependent(s) keep their version (cap {len(rerun)})" if held else ""))
    return Verdict(record, True, rerun, {tid: flagged.get(tid) or DEPENDENT_FEEDBACK for tid in rerun}, notice)


def review_call(spec: Any, plan: Plan, results: Mapping[str, Any], round_no: int, options: dict,
                offline: bool) -> tuple[list[dict], dict] | None:
    """A review round's model call: (messages, the other arguments of `llm.complete`), or None when
    nothing is finished to review. The schema lists the finished tasks; offline there is no judge:
    the stand-in approves without a score, which the run's schema (a score is required) would refuse."""
    done = ids_with(results, TaskState.DONE)
    if not done:
        return None
    messages = review_messages(spec=spec, plan=plan, results=results, round_no=round_no,
                               budget_tokens=options["context_budget"] * 2)
    return messages, {"model": options.get("reviewer_model"), "schema": ReviewResult if offline else review_model(done),
                      "temperature": 0.1, "purpose": f"review round {round_no}"}
