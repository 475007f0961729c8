"""One run, start to finish: build the shared store, run the graph, save everything.

Used by the one-shot CLI, `--example all` and the interactive session alike, so all three
save, resume and report the same way.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from utils.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BudgetExceeded, OrchError
from utils.events import Emit, Event
from utils.run.runstore import RunStore

DEFAULT_OPTIONS: dict[str, Any] = {
    "strategy": "dependency", "max_workers": 4, "max_tasks": 12, "max_revisions": 1, "max_rounds": 6,
    "context_budget": 6000, "model": None, "planner_model": None, "reviewer_model": None, "plan_only": False,
    "max_tokens_total": None,
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
    if _custom_spec_path(spec):  # a --workflow-file spec: resume must find the file, not a built-in name
        shared["workflow_file"] = _custom_spec_path(spec)
    if saved:
        shared["plan"] = saved.get("plan")
        # Only finished work carries over: failed, skipped and unstarted tasks run again.
        shared["results"] = {k: v for k, v in (saved.get("results") or {}).items() if v.get("state") == "done"}
        shared["reviews"] = saved.get("reviews") or []
        shared["revisions_done"] = saved.get("revisions_done", 0)
        shared["rounds"] = saved.get("rounds", 0)
    return shared


def _custom_spec_path(spec) -> str | None:
    from utils.run.spec import EXAMPLES_DIR

    path = getattr(spec, "path", "") or ""
    if not path or Path(path).resolve().parent == EXAMPLES_DIR.resolve():
        return None
    return str(Path(path).resolve())


def fanout(*sinks: Callable[[Event], None]) -> Emit:
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)
    return emit


def run_closing(llm, work: Callable[[], Awaitable[Any]]) -> Any:
    """`asyncio.run(work())`, then close the model client's connections inside the same loop.

    Real servers keep connections alive; a client left open outlives its event loop and fails
    noisily when it is garbage-collected.
    """
    async def go() -> Any:
        try:
            return await work()
        finally:
            await llm.aclose()

    return asyncio.run(go())


def execute(shared: dict, flow, store: RunStore, *, meta: dict) -> Outcome:
    """Run `flow` on `shared`; whatever happens, the run folder holds everything done so far."""
    llm = shared["runtime"]["llm"]
    started = time.monotonic()
    status, code, error = "ok", EXIT_OK, None
    shared["meta"] = {**meta, "started": time.time()}
    # Saved before the first model call, so even a `kill -9` during planning leaves a run folder
    # that says what was asked (goal, workflow, options, inputs) and can be resumed.
    shared.setdefault("stopped", None)  # a resumed run starts afresh: no stale "why it stopped"
    store.save({**shared, "status": "running"})
    try:
        run_closing(llm, lambda: flow.run_async(shared))
        status = shared.get("status") or ("planned" if shared.get("plan") else "failed")
        code = EXIT_OK if status in ("ok", "planned") else EXIT_FAILED
    except KeyboardInterrupt:
        status, code, error = "interrupted", EXIT_INTERRUPTED, "interrupted"
    except BudgetExceeded as exc:  # planning, review or replanning hit the budget: resumable, not broken
        status, code, error = "stopped", EXIT_FAILED, str(exc)
    except OrchError as exc:
        status, code, error = "failed", exc.exit_code, str(exc)
    finally:
        shared["totals"] = llm.totals_dict()
        shared["meta"]["elapsed_s"] = round(time.monotonic() - started, 3)
        shared["status"] = status  # the final word: never leaves the "running" of the first save
        if status in ("interrupted", "failed", "stopped") and error:
            shared["stopped"] = error
        store.save(shared)
    doc_path = store.write_document(shared["document"]) if shared.get("document") else None
    if doc_path:
        store.save(shared)
    from utils.run.timeline import write_pictures  # perf hook (issue 14): timeline.png / --plan-only plan.png
    write_pictures(shared, store.dir, status)
    return Outcome(status=status, exit_code=code, run_dir=store.dir, shared=shared,
                   elapsed_s=shared["meta"]["elapsed_s"], error=error, document_path=doc_path,
                   totals=shared["totals"])


def resume_hint(run_dir: Path) -> str:
    return f"python main.py --resume {run_dir}"
