"""One run, start to finish: build the shared store, run the graph, save everything.

Used by the one-shot CLI, `--example all` and the interactive session alike, so all three
save, resume and report the same way.
"""
from __future__ import annotations

import asyncio
import atexit
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from utils.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BudgetExceeded, OrchError, StorageError, UsageError
from utils.events import Emit, Event
from utils.run.results import TaskState
from utils.run.state import RunState, count_revisions, ended_status
from utils.run.runfile import file_hashes
from utils.run.runstore import RunStore
from utils.run.standins import RunStandIns
from utils.model.settings import safe_base_url
from utils.options import DEFAULTS

DEFAULT_OPTIONS: dict[str, Any] = {
    **DEFAULTS, "model": None, "planner_model": None, "reviewer_model": None, "plan_only": False,
    "max_tokens_total": None, "min_score": None,
}


@dataclass
class Outcome:
    status: str                      # ok, partial, failed, stopped, interrupted, planned, crashed
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
        shared["plan"] = _checked_plan(saved.get("plan"), spec)
        # Only finished work carries over: failed, skipped and unstarted tasks run again.
        shared["results"] = {k: v for k, v in (saved.get("results") or {}).items()
                             if v.get("state") == TaskState.DONE}
        shared["reviews"] = saved.get("reviews") or []
        shared["revisions_done"] = count_revisions(shared["reviews"])
        shared["rounds"] = saved.get("rounds", 0)
        shared["hashes"] = saved.get("hashes") or {}
        if RunState.of(saved).is_complete(saved.get("document")):  # nothing left to do: execute() reports it and calls no model
            shared.update(complete=True, status=saved["status"], document=saved.get("document"),
                          title=saved.get("title"), meta_description=saved.get("meta_description"))
    if llm.offline:  # the offline model answers from this run's spec and state (utils/run/standins.py)
        llm.standins = RunStandIns(shared)
    return shared


def _checked_plan(plan: dict | None, spec) -> dict | None:
    """A saved plan is validated like a model's: a hand-edited run.json is a clear error."""
    from utils.run.planfile import check_plan

    if plan is None:
        return None
    check_plan(plan, spec, None, "--resume: the saved plan", allow_empty=True)
    return plan


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


_loops = threading.local()


def run_in_loop(coro: Awaitable[Any]) -> Any:
    """Run `coro` on the process's one event loop (one per thread), created on first use.

    Why one loop: the routing call, a run's set-up calls (target, team) and the run itself all go
    through here, so a process never tears an event loop down and builds another between them
    (`asyncio.Runner` handles Ctrl-C as `asyncio.run` does). Python 3.10 has no Runner: a loop a call.
    """
    if not hasattr(asyncio, "Runner"):
        return asyncio.run(coro)
    runner = getattr(_loops, "runner", None)
    if runner is None:
        runner = _loops.runner = asyncio.Runner()
        atexit.register(runner.close)
    return runner.run(coro)


def run_closing(llm, work: Callable[[], Awaitable[Any]]) -> Any:
    """`work()` on the process's event loop, then close the model client's connections in it.

    Real servers keep connections alive; a client left open outlives its work and fails noisily
    when it is garbage-collected.
    """
    async def go() -> Any:
        try:
            return await work()
        except BaseException:  # a failed run stops at once: no sibling task goes on paying for calls
            await _cancel_others()
            raise
        finally:
            await llm.aclose()

    return run_in_loop(go())


async def _cancel_others(wait_s: float = 5.0) -> None:
    """Cancel every other task on this loop (tasks a failed gather left running) and wait for them."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=wait_s)


def execute(shared: dict, flow, store: RunStore, *, meta: dict) -> Outcome:
    """Run `flow` on `shared`; whatever happens, the run folder holds everything done so far."""
    llm = shared["runtime"]["llm"]
    started = time.monotonic()
    if shared.get("complete"):
        return _already_complete(shared, store)
    status, code, error, crash = "ok", EXIT_OK, None, None
    storage: StorageError | None = None
    shared["meta"] = {**meta, "base_url": safe_base_url(meta.get("base_url")), "started": time.time()}
    if not shared.get("hashes"):  # what a resume may read again: recorded before anything runs
        shared["hashes"] = file_hashes(shared.get("inputs") or {}, shared.get("workflow_file"))
    # Saved before the first model call, so even a `kill -9` during planning leaves a run folder
    # that says what was asked (goal, workflow, options, inputs) and can be resumed.
    shared.setdefault("stopped", None)  # a resumed run starts afresh: no stale "why it stopped"
    store.save({**shared, "status": "running"})
    try:
        run_closing(llm, lambda: flow.run_async(shared))
        status = ended_status(shared)
        code = EXIT_OK if status in ("ok", "planned") else EXIT_FAILED
    except KeyboardInterrupt:
        status, code, error = "interrupted", EXIT_INTERRUPTED, "interrupted"
    except BudgetExceeded as exc:  # planning, review or replanning hit the budget: resumable, not broken
        status, code, error = "stopped", EXIT_FAILED, str(exc)
    except StorageError as exc:  # the run folder cannot be written: stop now, say where and why
        status, code, error, storage = "crashed", EXIT_FAILED, str(exc), exc
    except OrchError as exc:
        status, code, error = "failed", exc.exit_code, str(exc)
    except Exception as exc:  # a bug: the run says so, keeps what is done, and the bug still surfaces
        status, code, error, crash = "crashed", EXIT_FAILED, f"{type(exc).__name__}: {exc}", exc
    finally:
        shared["totals"] = llm.totals_dict()
        shared["meta"]["elapsed_s"] = round(time.monotonic() - started, 3)
        if not shared["meta"].get("model") and not llm.offline:  # a custom server's, learnt at the first call
            shared["meta"]["model"] = llm.settings.model
        shared["status"] = status  # the final word: never leaves the "running" of the first save
        if status in ("interrupted", "failed", "stopped", "crashed") and error:
            shared["stopped"] = error
        if storage is None:
            try:
                if status in ("crashed", "interrupted") and not shared.get("document"):
                    store.flush()  # after Ctrl-C the store has seen tasks the shared store has not
                    if not shared.get("plan") and store.state.get("plan"):  # a plan final while tasks ran
                        shared["plan"] = store.state["plan"]  # beside it (utils/run/plan_stream.py)
                    results = {**(store.state.get("results") or {}), **(shared.get("results") or {})}
                    note = (f"The run crashed ({error})" if status == "crashed" else
                            "The run was interrupted") + "; this document holds the tasks that were done."
                    shared["document"] = partial_document(shared, note, results)
                store.save(shared)
            except StorageError as exc:
                storage = exc
    try:
        if storage is not None:
            raise storage
        doc_path = store.write_document(shared["document"]) if shared.get("document") else None
    except StorageError as exc:
        _storage_failed(store, exc)
    except Exception as exc:  # a bug writing the document: the run says `crashed`, not its earlier status
        status, code, error, crash, doc_path = "crashed", EXIT_FAILED, f"{type(exc).__name__}: {exc}", exc, None
        shared.update(status=status, stopped=error)
        store.save(shared)
    write_facts(shared, store)
    if status == "planned" and shared.get("plan"):
        _write_plan_file(shared, store)
    from utils.run.timeline import write_pictures  # timeline.png / --plan-only plan.png (issue 14)
    write_pictures(shared, store.dir, status)
    store.close()
    from utils.run.report_html import write_report  # report.html: the run in one page (issue 26)
    if write_report(store.state, store.dir) is None:
        shared["runtime"]["emit"](Event("notice", {"level": "warn", "message": "report.html could not be written"}))
    if crash is not None:
        shared["runtime"]["emit"](Event("notice", {
            "level": "error", "message": f"run crashed ({error}); what was done is saved in {store.dir}"
                                         + (" with its document" if doc_path else "")}))
        raise crash
    return Outcome(status=status, exit_code=code, run_dir=store.dir, shared=shared,
                   elapsed_s=shared["meta"]["elapsed_s"], error=error, document_path=doc_path,
                   totals=shared["totals"])


def _storage_failed(store: RunStore, exc: StorageError) -> None:
    """A write failure ends the run at once with its one-line error: run.json says `crashed` if a
    small file still fits, and the writer thread is stopped without waiting on a disk that is full."""
    store.save_crashed(str(exc))
    try:
        store.close()
    except StorageError:
        pass
    raise exc


def write_facts(shared: dict, store: RunStore) -> None:
    """facts.json in the run folder: every fact the run's extraction tasks found, in plan order
    (README: Outputs). Nothing is written for a run that extracted none (no source tools)."""
    from utils.run.runstore import atomic_write
    from utils.tools.sources import collect_facts, facts_json

    results = shared.get("results") or {}
    order = [t.get("id") for t in (shared.get("plan") or {}).get("tasks", [])] or list(results)
    facts = collect_facts(results.get(tid, {}) for tid in order)
    if facts is not None:
        atomic_write(store.dir / "facts.json", facts_json(facts))


def _write_plan_file(shared: dict, store: RunStore) -> None:
    """A `--plan-only` run's plan as `plan.yaml`, to edit and run with `--run-plan`; said in a notice."""
    from utils.run.planfile import PLAN_FILE, plan_yaml
    from utils.run.runstore import atomic_write

    atomic_write(store.dir / PLAN_FILE, plan_yaml(shared["plan"], shared["workflow"], shared.get("workflow_file"),
                                                  store.dir / PLAN_FILE))
    shared["runtime"]["emit"](Event("notice", {
        "level": "info", "message": f"Plan saved: {store.dir / PLAN_FILE} (edit it if you like); run it with: "
                                    f"python main.py --run-plan {store.dir}"}))


def partial_document(shared: dict, note: str, results: dict | None = None) -> str | None:
    """The document from the tasks that are done (`results`, default the shared store's), with a
    note saying why the rest is missing; None when nothing is done (an empty document would only
    hide that). A crash and a Ctrl-C or SIGTERM keep the finished work readable, as a budget stop does."""
    from utils.run.assemble import assemble, document_sections
    from utils.run.plan import Plan

    results = {k: v for k, v in (shared.get("results") if results is None else results).items()
               if isinstance(v, dict)}
    if not shared.get("plan") or not any(r.get("state") == TaskState.DONE for r in results.values()):
        return None
    try:
        plan = Plan.model_validate(shared["plan"])
        spec = shared["spec"]
        sections = document_sections(plan, results, spec.assembly.include_roles, spec.assembly.summary_role)
        return assemble(plan, sections, None, offline=bool(getattr(shared["runtime"]["llm"], "offline", False)),
                        notes=[note])
    except Exception:  # noqa: BLE001 - the crash being recorded matters more than this document
        return None


def _already_complete(shared: dict, store: RunStore) -> Outcome:
    """`--resume` of a finished run: say so, change nothing, call no model."""
    doc = store.dir / "output.md"
    shared["runtime"]["emit"](Event("notice", {
        "level": "info", "message": f"Run {store.dir.name} is already complete; nothing to resume"
                                    f"{f' (document: {doc})' if doc.is_file() else ''}."}))
    shared["totals"] = shared["runtime"]["llm"].totals_dict()
    return Outcome(status=shared.get("status") or "ok", exit_code=EXIT_OK, run_dir=store.dir, shared=shared,
                   elapsed_s=0.0, document_path=doc if doc.is_file() else None, totals=shared["totals"])


def resume_hint(run_dir: Path) -> str:
    return f"python main.py --resume {run_dir}"
