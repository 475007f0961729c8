"""One run, start to finish: build the shared store, run the graph, save everything.

Used by the one-shot CLI, `--example all` and the interactive session alike, so all three
save, resume and report the same way.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, OrchError
from .events import Emit, Event
from .runstore import RunStore

DEFAULT_OPTIONS: dict[str, Any] = {
    "strategy": "dependency", "max_workers": 4, "max_tasks": 12, "max_revisions": 1, "max_rounds": 6,
    "context_budget": 6000, "model": None, "planner_model": None, "reviewer_model": None, "plan_only": False,
}


@dataclass
class Outcome:
    status: str                      # ok, partial, failed, stopped, interrupted, planned
    exit_code: int
    run_dir: Path
    shared: dict
    elapsed_s: float
    error: str | None = None
    document_path: Path | None = None
    totals: dict = field(default_factory=dict)


def new_shared(*, goal: str, spec, options: dict, inputs: dict, llm, emit: Emit,
               saved: dict | None = None) -> dict:
    """The shared store for a fresh run, or for a resumed one (`saved` is its run.json)."""
    shared: dict[str, Any] = {"goal": goal, "workflow": spec.name, "spec": spec, "options": options,
                              "inputs": inputs, "results": {}, "reviews": [],
                              "runtime": {"llm": llm, "emit": emit}}
    if saved:
        shared["plan"] = saved.get("plan")
        # Only finished work carries over: failed, skipped and unstarted tasks run again.
        shared["results"] = {k: v for k, v in (saved.get("results") or {}).items() if v.get("state") == "done"}
        shared["reviews"] = saved.get("reviews") or []
        shared["revisions_done"] = saved.get("revisions_done", 0)
        shared["rounds"] = saved.get("rounds", 0)
    return shared


def fanout(*sinks: Callable[[Event], None]) -> Emit:
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)
    return emit


def execute(shared: dict, flow, store: RunStore, *, meta: dict) -> Outcome:
    """Run `flow` on `shared`; whatever happens, the run folder holds everything done so far."""
    llm = shared["runtime"]["llm"]
    started = time.monotonic()
    status, code, error = "ok", EXIT_OK, None
    shared["meta"] = {**meta, "started": time.time()}
    try:
        asyncio.run(flow.run_async(shared))
        status = shared.get("status") or ("planned" if shared.get("plan") else "failed")
        code = EXIT_OK if status in ("ok", "planned") else EXIT_FAILED
    except KeyboardInterrupt:
        status, code, error = "interrupted", EXIT_INTERRUPTED, "interrupted"
    except OrchError as exc:
        status, code, error = "failed", exc.exit_code, str(exc)
    finally:
        shared["totals"] = llm.totals_dict()
        shared["meta"]["elapsed_s"] = round(time.monotonic() - started, 3)
        if status in ("interrupted", "failed"):
            shared["status"] = status
            shared["stopped"] = error
        store.save(shared)
    doc_path = store.write_document(shared["document"]) if shared.get("document") else None
    if doc_path:
        store.save(shared)
    return Outcome(status=status, exit_code=code, run_dir=store.dir, shared=shared,
                   elapsed_s=shared["meta"]["elapsed_s"], error=error, document_path=doc_path,
                   totals=shared["totals"])


def resume_hint(run_dir: Path) -> str:
    return f"python main.py --resume {run_dir}"
