"""The fake OpenAI-compatible server for the benchmarks, and the benchmark's own scripted "model".

The server is the tests' (`fakes/fake_llm.py`, a neutral package both use), so bench/ imports nothing
from tests/. `BenchScript` answers each kind of request by the schema it asks for, the same way the
app tells them apart.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fakes.fake_llm import FakeLLMServer, RecordedRequest, Reply  # noqa: E402,F401

TASK_RE = re.compile(r"# Your task \[([^\]]+)\]")


def request_kind(req: Any) -> str:
    """plan, review, cohesion, route or worker: by the response schema's name, else by the prompt."""
    fmt = req.response_format or {}
    name = str((fmt.get("json_schema") or {}).get("name", ""))
    text = "\n".join(str(m.get("content", "")) for m in req.messages)
    for kind, schema, marker in (("route", "WorkflowChoice", "You route a user's request"),
                                 ("plan", "Plan", "Answer with JSON matching the schema: {goal"),
                                 ("review", "ReviewResult", "# Review round"),
                                 ("cohesion", "Cohesion", "# Assembled sections")):
        if name.startswith(schema) or marker in text:
            return kind
    return "worker"


def task_id(req: Any) -> str | None:
    match = TASK_RE.search(req.last_user())
    return match.group(1) if match else None


def plan_json(tasks: list[tuple], goal: str = "goal", notes: str = "notes") -> dict:
    """tasks: (id, role, depends_on) tuples -> a plan dict."""
    return {"goal": goal, "notes": notes, "done": False,
            "tasks": [{"id": t[0], "title": f"Title {t[0]}", "role": t[1], "instructions": f"Do {t[0]}",
                       "depends_on": list(t[2]), "priority": 3} for t in tasks]}


class BenchScript:
    """Responder: the preset plan for plan requests, an approving review, a fixed cohesion answer,
    and `worker(task_id)` for worker requests (a Reply with that task's latency)."""

    def __init__(self, worker: Callable[[str], Any], plan: dict | None = None) -> None:
        self.worker, self.plan = worker, plan

    def __call__(self, req: Any) -> Any:
        kind = request_kind(req)
        if kind == "plan":
            return Reply(text=json.dumps(self.plan or {"goal": "g", "tasks": []}))
        if kind == "review":
            return Reply(text=json.dumps({"score": 8, "summary": "fine", "tasks": []}))
        if kind == "cohesion":
            return Reply(text=json.dumps({"title": "Bench title", "meta_description": "Bench",
                                          "introduction": "Bench introduction.", "transitions": {}}))
        if kind == "route":
            return Reply(text=json.dumps({"workflow": "blog", "reason": "bench"}))
        return self.worker(task_id(req) or "?")
