"""A run, the one way: a `RunRequest` (utils/app/request.py) in, the graph run, everything saved,
an `Outcome` out. A single run, each run of `--example all`, each goal of `--batch` and the
interactive `/run` all come through `run_workflow`, so they save, resume and report alike.

Why one module: the shell used to have two "one run"s (a session module setting the run up and
reporting it, a runner module running the graph), which drifted. Here is the whole life of a run:
`run_workflow` makes the model client and the run folder, `new_shared` the shared store, `execute`
runs the graph and, whatever happens, leaves the run folder holding everything done so far; what
the run did is then said by utils/app/summary.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from utils.app.history import record_run
from utils.app.loop import run_closing
from utils.app.otel import start_tracing
from utils.app.request import RunRequest, make_llm, with_model
from utils.app.settings import Settings
from utils.app.summary import open_report, show_outcome, summary_info
from utils.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BudgetExceeded, OrchError, StorageError, UsageError
from utils.events import Emit, Event
from utils.model.settings import safe_base_url
from utils.run.results import TaskState
from utils.run.runfile import file_hashes
from utils.run.runstore import RunStore
from utils.run.standins import RunStandIns
from utils.run.state import RunState, count_revisions, ended_status, ids_with

OFFLINE_NOTE = ("Offline provider: no model is called. Set OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                "server (Ollama, vLLM, LM Studio...), or pass --base-url. See README.")


@dataclass
class Outcome:
    """How a run ended: its status (ok, partial, failed, stopped, interrupted, planned, crashed...),
    the exit code, the run folder, the final shared store and, once reported, its summary (`info`)."""

    status: str
    exit_code: int
    run_dir: Path
    shared: dict
    elapsed_s: float
    error: str | None = None
    document_path: Path | None = None
    info: dict = field(default_factory=dict)

    @property
    def totals(self) -> dict:
        """The run's usage totals (calls, tokens, cost), as saved in run.json."""
        return self.shared.get("totals") or {}


# ---------------------------------------------------------------- the run

def make_display(settings: Settings, *, mode: str | None = None):
    """The run's display for these settings (`mode` forces one, e.g. silent runs inside --example all)."""
    from utils.app.render import Display, choose_mode
    return Display(mode or choose_mode(quiet=settings.quiet, json_out=settings.json), show_calls=settings.show_calls)


def run_workflow(settings: Settings, request: RunRequest, display, *, offline_note: bool = True,
                 show_document: bool = True) -> Outcome:
    """Set up, run and report one run; the outcome carries its summary (`info`). Whatever happens,
    the run folder keeps the state."""
    from flows import build_flow, build_plan_flow

    from utils.run.runstore import new_run_dir

    holder: dict[str, Any] = {"emit": display}
    if request.saved:
        settings = settings.for_resume(request.saved)
    # the model named in meta is the one used: asked for here unless the request already knows it
    settings = with_model(settings.replace(model=request.model) if request.model else settings, display)
    llm = make_llm(settings, lambda event: holder["emit"](event),
                   budget=request.options.get("max_tokens_total"), workers=request.options.get("max_workers"))
    carry_totals(llm, (request.saved or {}).get("totals"), *request.setup_totals)
    try:
        run_dir = request.run_dir or new_run_dir(settings.output_dir, request.goal, request.spec.name)
    except OSError as exc:
        raise UsageError(f"cannot create a run folder in {settings.output_dir}: {exc.strerror or exc}") from None
    store = RunStore(run_dir, request.saved)
    record_run(run_dir, workflow=request.spec.name, topic=request.goal, status="running")  # even a kill -9 is listed
    meta = {"version": settings.version, "provider": llm.settings.provider,
            "model": None if llm.offline else llm.settings.model,
            "base_url": None if llm.offline else safe_base_url(llm.settings.base_url),
            "api_key": bool(not llm.offline and llm.settings.api_key), "engine": engine_name(),
            "strategy": request.options["strategy"], "resumed": bool(request.saved), **request.meta}
    tracer = start_tracing(settings.flag, display.notice, workflow=request.spec.name, meta=meta, goal=request.goal)

    def on_event(event: Event) -> None:
        store(event)
        if tracer is not None:
            tracer(event)
        if event.kind == "plan":
            display.show_plan(event.data["plan"])
        display(event)

    holder["emit"] = on_event
    display.offline = llm.offline
    if llm.offline and offline_note:
        display.notice(OFFLINE_NOTE, "warn")
    shared = new_shared(goal=request.goal, spec=request.spec, options=request.options, inputs=request.inputs,
                        llm=llm, emit=on_event, saved=request.saved)
    if request.plan is not None:
        shared["plan"] = request.plan  # preset (an edited plan): the orchestrator node takes it as is
    flow = build_plan_flow() if request.options.get("plan_only") else build_flow(request.options["strategy"])
    status = "crashed"
    try:
        with display:
            outcome = execute(shared, flow, store, meta=meta)
        status = outcome.status
    finally:
        lost = tracer.end(status) if tracer is not None else None
        if lost:
            display.notice(lost, "warn")
    info = outcome.info = summary_info(outcome, llm, request.options)
    document = str(outcome.document_path.resolve()) if outcome.document_path else None
    info["history_id"] = record_run(run_dir, workflow=request.spec.name, topic=request.goal, status=outcome.status,
                                    info=info, document=document)
    show_outcome(settings, display, outcome, show_document=show_document)
    if settings.flag("open"):
        open_report(outcome.run_dir, display)
    return outcome


def carry_totals(llm, *counted: dict | None) -> None:
    """Add usage counted elsewhere to the run's totals: a resumed run goes on from where it stopped
    and the calls made before the run (routing, target, team) count, so totals and the token budget
    (`--max-tokens-total`) cover the whole run, not just this invocation's graph."""
    from dataclasses import fields

    for saved in counted:
        if not isinstance(saved, dict):
            continue
        for f in fields(llm.totals):
            value = saved.get(f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                kind = float if f.name in ("seconds", "cost_usd") else int
                setattr(llm.totals, f.name, kind(getattr(llm.totals, f.name) or 0) + kind(value))


def engine_name() -> str:
    """The node library in use, for run.json's meta (the real kaygraph package or the built-in core)."""
    from utils.engine import ENGINE_NAME, ENGINE_VERSION
    return f"{ENGINE_NAME} {ENGINE_VERSION}".strip()


# ---------------------------------------------------------------- the shared store

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
        results = saved.get("results") or {}
        shared["results"] = {k: results[k] for k in ids_with(results, TaskState.DONE)}
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
    """One emit that hands each event to every sink in turn (the run store, a test's list...)."""
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)
    return emit


# ---------------------------------------------------------------- the graph run and its files

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
                   elapsed_s=shared["meta"]["elapsed_s"], error=error, document_path=doc_path)


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
    if not shared.get("plan") or not ids_with(results, TaskState.DONE):
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
                   elapsed_s=0.0, document_path=doc if doc.is_file() else None)


