"""Task states and the task result: one model class instead of 17-key dicts built in several places.

`TaskState` is a `str` enum, so code (and saved runs) comparing states with plain strings keeps
working while new code names them. `TaskResult` is what a worker pass produces for one task and
what `run.json` stores per task; loading a run validates every saved result against it.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field


class TaskState(StrEnum):
    PENDING = "pending"    # not started (or stopped before it started: runs on resume)
    WAITING = "waiting"    # progress only: waiting for its dependencies
    READY = "ready"        # progress only: waiting for a worker slot
    RUNNING = "running"    # progress only
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"    # a dependency did not finish


ENDED = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED})
SAVED_STATES = frozenset({TaskState.PENDING, TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED})


class TaskResult(BaseModel):
    """One task's outcome. Extra keys are kept (a newer or older app may add fields)."""

    model_config = ConfigDict(extra="allow")

    id: str
    title: str = ""
    role: str = ""
    state: TaskState = TaskState.PENDING
    output: str = ""
    data: Any = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    revision: int = 0
    worker: int | None = None
    started: float | None = None
    finished: float | None = None
    elapsed_s: float = 0.0
    # While the run is live: file name -> bytes; saved: the file names only.
    artifacts: dict[str, bytes] | list[str] = Field(default_factory=dict)

    @classmethod
    def start(cls, task: Any, previous: dict | None = None) -> "TaskResult":
        """A fresh result for `task`; a revision of a finished task counts one up from it."""
        prev = previous or {}
        revision = prev.get("revision", -1) + 1 if state_of(prev) == TaskState.DONE else 0
        return cls(id=task.id, title=task.title, role=task.role, revision=revision)

    def as_dict(self) -> dict[str, Any]:
        """The plain dict the shared store, events and prompts use."""
        return dict(self)  # fields and extras alike


def state_of(result: Any) -> str:
    """A result's state, from a `TaskResult` or a plain dict (absent: not started)."""
    if isinstance(result, TaskResult):
        return result.state
    return (result or {}).get("state", TaskState.PENDING) if isinstance(result, Mapping) or result is None else TaskState.PENDING


def ids_with(results: Mapping[str, Any], *states: str) -> list[str]:
    """Ids of the results (plain dicts or `TaskResult`s) whose state is one of `states`, in the
    mapping's order: the one way nodes, the run store and the summary ask "which tasks are done"."""
    return [tid for tid, r in results.items() if state_of(r) in states]


def saved_result(result: dict) -> dict:
    """A result as `run.json` stores it: artifact bytes replaced by their file names."""
    out = dict(result)
    arts = out.get("artifacts") or {}
    out["artifacts"] = sorted(arts) if isinstance(arts, dict) else list(arts)
    return out


def results_digest(results: dict[str, dict]) -> str:
    """sha256 of the finished tasks' outputs: a review recorded with the same digest judged exactly
    this work, so a resumed run reuses it instead of paying for the same review again."""
    import hashlib
    import json

    done = sorted((tid, str(results[tid].get("output") or "")) for tid in ids_with(results, TaskState.DONE))
    return hashlib.sha256(json.dumps(done, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def review_shortfall(reviews: list[dict], min_score: float) -> str | None:
    """Why a run whose final review scored below `min_score` needs work (the reviewer's summary and
    its per-task feedback), or None. A review that failed, or an offline one, has no score: no verdict."""
    scored = [r for r in reviews or [] if isinstance(r.get("score"), (int, float)) and not isinstance(r["score"], bool)]
    if not scored or scored[-1]["score"] >= min_score:
        return None
    last = scored[-1]
    reasons = [str(last.get("summary") or "").strip()] + [f"{x.get('id')}: {x.get('feedback')}"
                                                          for x in last.get("revise") or []]
    said = "; ".join(r for r in reasons if r) or "no reasons given"
    return f"the final review scored {last['score']:g}/10, below the minimum {min_score:g}: {said}"
