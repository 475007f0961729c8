"""A scripted "model" for the fake server: answers plan, review, cohesion and worker requests.

Workflow tests describe what the model says per kind of request and per task; requests are told
apart by the schema they ask for (or, when the server refuses json_schema, by the prompt).
"""
from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable

from fakes.fake_llm import RecordedRequest, Reply

TASK_RE = re.compile(r"# Your task \[([^\]]+)\]")


def request_kind(req: RecordedRequest) -> str:
    fmt = req.response_format or {}
    name = (fmt.get("json_schema") or {}).get("name", "")
    text = "\n".join(str(m.get("content", "")) for m in req.messages)
    if name == "WorkflowChoice" or "You route a user's request" in text:
        return "route"
    if name == "TeamProposal":  # issue 11: the project team proposed for the topic
        return "team"
    if name == "TargetChoice" or "You choose the target column" in text:
        return "target"
    if name == "Plan" or "Answer with JSON matching the schema: {goal" in text:
        return "plan"
    if name == "ReviewResult" or "# Review round" in text:
        return "review"
    if name == "Cohesion" or "# Assembled sections" in text:
        return "cohesion"
    return "worker"


def task_id(req: RecordedRequest) -> str | None:
    match = TASK_RE.search(req.last_user())
    return match.group(1) if match else None


def plan_json(tasks: list[tuple], goal: str = "goal", notes: str = "notes", done: bool = False) -> dict:
    """tasks: (id, role, depends_on[, priority]) tuples -> a plan dict."""
    out = []
    for t in tasks:
        tid, role, deps = t[0], t[1], t[2]
        out.append({"id": tid, "title": f"Title {tid}", "role": role, "instructions": f"Do {tid}",
                    "depends_on": list(deps), "priority": t[3] if len(t) > 3 else 3})
    return {"goal": goal, "notes": notes, "tasks": out, "done": done}


class Script:
    """Callable responder. Each argument may be a value or a callable taking the request.

    plans: list of plan dicts returned in order for plan requests (the last one repeats).
    reviews: list of review dicts in order (default: approve everything, score 8).
    worker: fn(task_id, request) -> Reply | str; default "## Section <id>\\n\\nText for <id>."
    """

    def __init__(self, plans: list[dict] | None = None, reviews: list[dict] | None = None,
                 worker: Callable[[str, RecordedRequest], Any] | None = None,
                 cohesion: dict | None = None, route: str | None = None, team: dict | None = None,
                 target: str | None = None) -> None:
        self.team = team or {"members": [{"role": r, "people": n} for r, n in
                                         {"pm": 1, "designer": 1, "backend": 2, "frontend": 1, "qa": 1}.items()],
                             "reason": "scripted"}
        self.route = route  # workflow the "model" picks for a free-text topic (default: keyword fit)
        self.target = target  # analysis target column the "model" picks (default: the last offered)
        self.plans = plans or []
        self.reviews = reviews or []
        self.worker = worker
        self.cohesion = cohesion or {"title": "Scripted title", "meta_description": "Scripted meta",
                                     "introduction": "Scripted introduction.", "transitions": {}}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _next(self, kind: str, items: list) -> Any:
        with self._lock:
            n = self.counts.get(kind, 0)
            self.counts[kind] = n + 1
        return items[min(n, len(items) - 1)]

    def __call__(self, req: RecordedRequest) -> Any:
        kind = request_kind(req)
        if kind == "route":
            from utils.app.routing import keyword_choice
            topic = req.last_user().split("# Request\n", 1)[-1].split("\n\n# Workflows")[0]
            return Reply(text=json.dumps({"workflow": self.route or keyword_choice(topic).name, "reason": "scripted"}))
        if kind == "team":
            return Reply(text=json.dumps(self.team))
        if kind == "target":  # the column named by `target`, else the last column the schema offers
            enum = json.dumps(req.response_format or {})
            offered = re.findall(r'"enum": \[(.*?)\]', enum)
            names = json.loads("[" + offered[0] + "]") if offered else []
            pick = self.target if self.target in names or not names else names[-1]
            return Reply(text=json.dumps({"column": pick, "reason": "scripted"}))
        if kind == "plan":
            return Reply(text=json.dumps(self._next("plan", self.plans)))
        if kind == "review":
            if not self.reviews:
                return Reply(text=json.dumps({"score": 8, "summary": "fine", "tasks": []}))
            return Reply(text=json.dumps(self._next("review", self.reviews)))
        if kind == "cohesion":
            return Reply(text=json.dumps(self.cohesion))
        tid = task_id(req) or "?"
        if self.worker:
            return self.worker(tid, req)
        return Reply(text=f"## Section {tid}\n\nText for {tid}.")


def worker_requests(server, tid: str) -> list[RecordedRequest]:
    return [r for r in server.requests if request_kind(r) == "worker" and task_id(r) == tid]
