"""Run one workflow, the one way: a single run, each run of `--example all` and the interactive `/run`.

Why one function: the interactive session used to re-implement the CLI's run path (its own meta dict,
its own offline notice), so the two drifted. Both now describe what to run as a `RunRequest` and call
`run_workflow`, which builds the client, the run store and the shared store, runs the graph through
`utils.app.runner.execute` and reports the outcome the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.options import home
from utils.app.history import record_run, run_folder
from utils.app.otel import start_tracing
from utils.app.settings import Settings, check_topic
from utils.errors import LLMError, ModelChoiceError, OrchError, UsageError
from utils.events import Event
from utils.model.settings import safe_base_url

OFFLINE_NOTE = ("Offline provider: no model is called. Set OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                "server (Ollama, vLLM, LM Studio...), or pass --base-url. See README.")
DATA_TOOLS, SOURCE_TOOLS = {"load_data"}, {"extract_facts"}


@dataclass
class RunRequest:
    """What one run is: the workflow, the goal, its checked inputs and options; optionally a run to
    resume (`saved`, `run_dir`) or a plan the user already edited (`plan`)."""

    spec: Any
    goal: str
    inputs: dict
    options: dict
    saved: dict | None = None
    run_dir: Path | None = None
    plan: dict | None = None
    meta: dict = field(default_factory=dict)
    setup_totals: list[dict] = field(default_factory=list)  # calls made before the run (routing, target, team)
    model: str | None = None  # the model a custom server serves, asked once before the run (`with_model`)


@dataclass
class RunReport:
    outcome: Any
    info: dict

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


# ---------------------------------------------------------------- building blocks

def make_llm(settings: Settings, emit, *, budget: int | None = None, workers: int | None = None):
    """The run's model client: flags > environment > config file > saved run > defaults
    (`settings_from_env`). A resumed run that sent a key needs one again: said now, before anything
    in its folder changes."""
    from utils.model.client import make_model
    from utils.model.settings import settings_from_env

    llm_settings = settings_from_env(settings.llm_overrides(budget, workers), settings.llm_config())
    if settings.saved_key and llm_settings.provider == "openai" and not llm_settings.api_key:
        server = llm_settings.base_url or "the OpenAI API"
        raise UsageError(f"--resume: this run called {safe_base_url(server)} with an API key, which is never saved; "
                         "set OPENAI_API_KEY (or pass --provider offline to finish it without a model)")
    return make_model(llm_settings, emit=emit, home=home(), pool=settings.model_pool)


def with_model(settings: Settings, emit) -> Settings:
    """These settings naming the model the run will use. A custom server given no model is asked
    which it serves once, here, before the run: meta, the display and run.json then name the model
    actually used, the routing, set-up and run clients all use that one, and a server that serves
    several or none fails now with one line and exit 2, before a run folder is made. A server that
    cannot be reached fails the run as any unanswered call does (exit 1, the run folder says so)."""
    from utils.app.runner import run_closing
    from utils.model.settings import settings_from_env

    wanted = settings_from_env(settings.llm_overrides(), settings.llm_config())
    if wanted.provider == "offline" or wanted.model:
        return settings
    llm = make_llm(settings, emit)
    try:
        return settings.replace(model=run_closing(llm, llm.resolve_model))
    except ModelChoiceError:
        raise
    except LLMError:  # not reached: the run's first call says so, and its run folder records it
        return settings


def make_display(settings: Settings, *, mode: str | None = None):
    """The run's display for these settings (`mode` forces one, e.g. silent runs inside --example all)."""
    from utils.app.render import Display, choose_mode
    return Display(mode or choose_mode(quiet=settings.quiet, json_out=settings.json), show_calls=settings.show_calls)


def check_readable(path: str, what: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {path} is a folder, not a file")
    if not p.is_file():
        raise UsageError(f"{what} not found: {path}")
    try:
        with p.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    return p


def _uses(spec: Any, tools: set[str]) -> bool:
    return any(getattr(r, "kind", "") == "tool" and getattr(r, "tool", None) in tools
               for r in (getattr(spec, "roles", None) or {}).values())


def workflow_inputs(spec: Any, settings: Settings, *, routed: str | None = None, ask=None) -> dict:
    """Files a workflow's tools read: `--input` sources (report) and the `--data` CSV (analysis).

    Checked before any model call, so a bad file costs nothing; a file the workflow would ignore
    is an error rather than silently unused. A free-text topic `routed` to a workflow that reads
    data needs the user's own file: `ask` for it (interactive) or stop, since analysing the shipped
    sample for "the market for e-bikes" would answer another question (the demo's own topic keeps it).
    """
    if routed is not None and not settings.data and spec.sample_data and " ".join(routed.split()) != \
            " ".join((spec.default_topic or "").split()):
        answer = (ask(f"The {spec.name} workflow needs a data file for this topic. Data file (CSV): ") or "").strip() \
            if ask else ""
        if not answer:
            raise UsageError(f"this topic was routed to the {spec.name} workflow, which needs your data: "
                             "pass --data PATH.csv (or --example NAME to choose another workflow)")
        check_csv(answer)
        settings = settings.replace(data=answer)
    if settings.data and not (spec.sample_data or _uses(spec, DATA_TOOLS)):
        raise UsageError(f"--data is not used by the {spec.name} workflow (it is for analysis)")
    if settings.inputs and not (spec.sample_inputs or _uses(spec, SOURCE_TOOLS)):
        raise UsageError(f"--input is not used by the {spec.name} workflow (it is for report)")
    user_inputs = check_files(settings)
    demo = settings.example == spec.name and settings.topic is None  # the sample sources are for the demo only
    inputs = user_inputs or ([str(spec.example_path(p)) for p in spec.sample_inputs] if demo else [])
    data = settings.data or (str(spec.example_path(spec.sample_data)) if spec.sample_data else None)
    if data and not settings.data:
        check_csv(data)
    return {"inputs": inputs, "data": data}


def default_goal(spec: Any, settings: Settings) -> str:
    """The goal of a run given no topic. The workflow's default topic describes its demo material
    ("the sample product market"), so with the user's own `--input` files the goal names those
    files instead: the title and the plan speak of what the report is really built from."""
    if settings.inputs:
        names = [Path(p).name for p in settings.inputs]
        if len(names) > 3:
            names = names[:3] + [f"{len(names) - 3} more files"]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        return check_topic(f"{spec.title} from {listed}")
    return check_topic(spec.default_topic, "the workflow's default topic")


def check_files(settings: Settings) -> list[str]:
    """Read every file the user named (sources parsed, a CSV's rows checked): a bad one is a
    one-line error now, before the routing or planning call. Returns the source paths."""
    from utils.errors import ToolError
    from utils.tools.sources import check_source

    paths = [str(check_readable(p, "input file")) for p in settings.inputs]
    try:
        for path in paths:
            check_source(Path(path))  # a ragged table or broken JSON is found now, not after planning
    except ToolError as exc:  # a too deeply nested JSON file too: check_source scans before parsing
        raise UsageError(str(exc)) from None
    if settings.data:
        check_csv(settings.data)
    return paths


def check_csv(path: str) -> None:
    from utils.errors import ToolError
    from utils.tools.dataset import open_dataset  # DuckDB loads and profiles the CSV once

    try:
        open_dataset(check_readable(path, "data file"))
    except ToolError as exc:
        raise UsageError(str(exc)) from None


def route_topic(settings: Settings, topic: str, emit, totals: list[dict] | None = None) -> tuple[Any, str]:
    """The workflow for a free-text topic, the same way everywhere (CLI and interactive): the model
    chooses (`utils.app.routing.choose_workflow`); offline, a keyword score. Returns (spec, why);
    the call's usage is appended to `totals` so the run counts it."""
    from utils.app.routing import choose_workflow
    from utils.app.runner import run_closing
    from utils.run.spec import load_spec

    llm = make_llm(settings, emit)
    name, why = run_closing(llm, lambda: choose_workflow(llm, topic))
    if totals is not None:
        totals.append(llm.totals_dict())
    return load_spec(name), why


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
    from utils.engine import ENGINE_NAME, ENGINE_VERSION
    return f"{ENGINE_NAME} {ENGINE_VERSION}".strip()


# ---------------------------------------------------------------- what to run (CLI)

def request_for(settings: Settings, display) -> RunRequest:
    """A new run (example, workflow file or routed topic) or a resumed one, inputs checked first."""
    from utils.app.websetup import with_web
    from utils.run.spec import load_spec

    if settings.resume:
        return resume_request(settings)
    if settings.flag("run_plan"):
        return plan_request(settings, display)
    setup: list[dict] = []  # usage of the calls made before the run starts
    if settings.workflow_file or settings.example:
        spec = load_spec(settings.workflow_file or settings.example)
        goal = settings.topic or default_goal(spec, settings)
        inputs = workflow_inputs(spec, settings)
        settings = with_model(settings, display)  # inputs checked first, then the server
    else:
        goal = check_topic(settings.topic)
        check_files(settings)  # before the routing call too
        settings = with_model(settings, display)
        spec, why = route_topic(settings, goal, display, setup)
        display.notice(f"Workflow: {spec.name} ({why}; use --example to choose another)")
        inputs = workflow_inputs(spec, settings, routed=goal)
    spec, inputs, web_note = with_web(spec, inputs, settings)  # web research on or off (README: Web research)
    if web_note:
        display.notice(web_note, "info")
    options = prepare_new_run(settings, spec, goal, inputs, settings.run_options(), display, setup)
    return RunRequest(spec=spec, goal=goal, inputs=inputs, options=options, setup_totals=setup, model=settings.model)


def prepare_new_run(settings: Settings, spec: Any, goal: str, inputs: dict, options: dict, display,
                    totals: list[dict]) -> dict:
    """A workflow's own set-up of a new run, before the graph starts: the analysis target (sets
    `inputs["target"]`), the project's team and start date, a report with no sources said plainly.
    Returns the run's options."""
    from utils.app.runner import run_closing
    from utils.run.target import choose_target, needs_target, target_notice
    from utils.run.team import project_options, propose_team
    from utils.tools.sources import NO_SOURCES

    options = project_options(settings.flag("team"), settings.flag("start_date"), options, settings.flag("holidays"))
    if spec.assembly.cite_inputs and not inputs.get("inputs") and not (inputs.get("web") or {}).get("enabled"):
        display.notice(NO_SOURCES, "warn")
    target = settings.flag("target")
    wants_target = bool(inputs.get("data")) and needs_target(spec)
    if target and not wants_target:
        raise UsageError(f"--target applies to a workflow that models a --data CSV (analysis), not {spec.name}")
    impute = settings.flag("impute")
    if impute and not wants_target:
        raise UsageError(f"--impute applies to a workflow that models a --data CSV (analysis), not {spec.name}")
    if impute:  # the modeller reads it from tool_params (saved in run.json, so --resume keeps it)
        options = {**options, "tool_params": {**(options.get("tool_params") or {}), "impute": impute}}
    llm = make_llm(settings, display)

    async def set_up() -> tuple[Any, dict, str | None]:  # one event loop for the set-up calls
        choice = await choose_target(llm, inputs["data"], goal, target) if wants_target else None
        return (choice, *await propose_team(llm, spec, goal, options))

    choice, options, notice = run_closing(llm, set_up)
    totals.append(llm.totals_dict())
    if choice is not None:
        inputs["target"] = choice.column
        display.notice(target_notice(choice), "info")
    if notice:
        display.notice(notice, "info")
    return options


def plan_request(settings: Settings, display) -> RunRequest:
    """`--run-plan PATH`: a new run of a saved (maybe edited) plan, checked like a model's plan.
    Next to a run.json (a `--plan-only` folder) it takes that run's inputs and options too;
    flags given now still win, by the one precedence rule."""
    from utils.app.websetup import with_web
    from utils.run.planfile import check_plan, find_plan_file, read_plan_file
    from utils.run.runstore import RUN_JSON, load_run
    from utils.run.spec import load_spec

    path = find_plan_file(settings.flag("run_plan"))
    workflow, plan = read_plan_file(path)
    saved = load_run(path.parent) if (path.parent / RUN_JSON).is_file() else {}
    spec = load_spec(workflow)
    given = saved.get("inputs") or {}
    builtin = not workflow.endswith((".yaml", ".yml"))  # a name (its sample inputs apply) or a spec file
    settings = settings.replace(example=spec.name if builtin else None, workflow_file=None if builtin else workflow,
                                data=settings.data or given.get("data"),
                                inputs=settings.inputs or tuple(given.get("inputs") or ()))
    inputs = workflow_inputs(spec, settings)
    spec, inputs, web_note = with_web(spec, inputs, settings)
    if web_note:
        display.notice(web_note, "info")
    saved_options = saved.get("options") if isinstance(saved.get("options"), dict) else None
    options = {**settings.run_options(saved_options), "plan_only": False}
    plan = check_plan({**plan, "goal": check_topic(plan["goal"], "the plan's goal")}, spec, options["max_tasks"],
                      f"--run-plan: {path}")
    setup: list[dict] = []
    settings = with_model(settings, display)
    options = prepare_new_run(settings, spec, plan["goal"], inputs, options, display, setup)
    return RunRequest(spec=spec, goal=plan["goal"], inputs=inputs, options=options, plan=plan, setup_totals=setup,
                      meta={"plan_source": "user", "plan_file": str(path)}, model=settings.model)


def resume_request(settings: Settings) -> RunRequest:
    """`--resume`: the saved goal, workflow and inputs; options by the one precedence rule."""
    from utils.run.runstore import find_run, load_run
    from utils.run.spec import load_spec
    from utils.run.team import project_options

    run_dir = find_run(run_folder(settings.resume), settings.output_dir)  # a folder, its name or a history ID
    saved = load_run(run_dir)
    if settings.example and settings.example != saved.get("workflow"):
        raise UsageError(f"--resume: {run_dir} is a '{saved.get('workflow')}' run, not '{settings.example}'")
    if not saved.get("workflow") or not isinstance(saved.get("goal"), str) or not isinstance(saved.get("options"), dict):
        raise UsageError(f"--resume: {run_dir}/run.json is incomplete (no workflow, goal or options)")
    goal = check_topic(saved["goal"], "the saved goal")
    spec = load_spec(saved.get("workflow_file") or saved["workflow"])
    return RunRequest(spec=spec, goal=goal, inputs=saved.get("inputs") or {}, saved=saved, run_dir=run_dir,
                      options=project_options(settings.flag("team"), settings.flag("start_date"),
                                              settings.run_options(saved["options"]), settings.flag("holidays")))


# ---------------------------------------------------------------- the run

def run_workflow(settings: Settings, request: RunRequest, display, *, offline_note: bool = True,
                 show_document: bool = True) -> RunReport:
    """Set up, run and report one run. Whatever happens, the run folder keeps the state."""
    from flows import build_flow, build_plan_flow

    from utils.app.runner import execute, new_shared
    from utils.run.runstore import RunStore, new_run_dir

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
    info = summary_info(outcome, llm, request.options)
    document = str(outcome.document_path.resolve()) if outcome.document_path else None
    info["history_id"] = record_run(run_dir, workflow=request.spec.name, topic=request.goal, status=outcome.status,
                                    info=info, document=document)
    report(settings, display, outcome, info, show_document=show_document)
    if settings.flag("open"):
        open_report(outcome.run_dir, display)
    return RunReport(outcome, info)


def open_report(run_dir: Path, display) -> None:
    """`--open`: the run's report.html in the default browser (a notice when there is none)."""
    import webbrowser

    page = run_dir / "report.html"
    if not page.is_file() or not webbrowser.open(page.resolve().as_uri()):
        display.notice(f"could not open {page} in a browser", "warn")


def saved_results(outcome) -> dict:
    """Task results as saved in run.json (the source of truth: after Ctrl-C the shared store may not
    have seen the tasks that finished), with anything newer from the shared store on top."""
    from utils.run.runstore import load_run
    from utils.run.state import record_result

    try:
        results = dict(load_run(outcome.run_dir).get("results") or {})
    except OrchError:
        results = {}
    for r in (outcome.shared.get("results") or {}).values():
        if isinstance(r, dict):
            record_result(results, r)
    return results


def summary_info(outcome, llm, options: dict) -> dict:
    from utils.run.results import TaskState
    from utils.run.state import RunState

    results = saved_results(outcome)
    state = RunState.of({"plan": outcome.shared.get("plan"), "results": results})
    # offline no model is called: the stand-ins' sizes are not calls or tokens anyone paid for
    t = {} if llm.offline else outcome.totals
    info = {"status": outcome.status, "elapsed_s": outcome.elapsed_s, "calls": t.get("calls", 0),
            "prompt_tokens": t.get("prompt_tokens", 0), "completion_tokens": t.get("completion_tokens", 0),
            "cached": t.get("cached", 0), "cost_usd": t.get("cost_usd"), "output_dir": str(outcome.run_dir),
            "failed": [{"id": k, "error": r.error} for k, r in state.results.items() if r.state == TaskState.FAILED],
            "skipped": [k for k, r in state.results.items() if r.state == TaskState.SKIPPED],
            "done": state.ids_in(TaskState.DONE), "left": state.left(),
            "offline": llm.offline, "model": None if llm.offline else llm.settings.model, "resume_hint": None,
            "reason": outcome.shared.get("status_reason"), "claims": outcome.shared.get("verification")}
    if outcome.status in ("interrupted", "stopped"):
        info["resume_hint"] = resume_command(outcome, options, len(info["left"]))
    return info


def resume_command(outcome, options: dict, left: int = 0) -> str:
    """The command that continues this run; after a budget stop it raises the budget, since resuming
    with the same budget would stop again at once. The new budget covers what is spent plus, at the
    run's own average per call, the tasks left and the review and cohesion passes."""
    from utils.app.runner import resume_hint

    hint = resume_hint(outcome.run_dir)
    budget = options.get("max_tokens_total")
    if outcome.status == "stopped" and budget:
        t = outcome.totals
        used = int(t.get("prompt_tokens", 0)) + int(t.get("completion_tokens", 0))
        per_call = used / max(1, int(t.get("calls", 0))) or int(budget)
        bigger = max(2 * int(budget), used + per_call * (left + 3))
        hint += f" --max-tokens-total {int(-(-bigger // 1000) * 1000)}"
    return hint


def report(settings: Settings, display, outcome, info: dict, *, show_document: bool = True) -> None:
    """The end of a run on screen: what stopped it and what is done, errors, document, summary."""
    if outcome.status in ("interrupted", "stopped") and not settings.json:
        done, left = info["done"], info["left"]
        why = outcome.shared.get("stopped")
        why = f" ({why})" if why and why != outcome.status else ""
        display.notice(f"run {outcome.status}{why}: {len(done)} of {len(done) + len(left)} tasks done"
                       + (f"; not done yet: {', '.join(left)}" if left else ""), "warn")
    if outcome.error and outcome.status == "failed":
        display.error_line(f"error: {outcome.error}")
    if settings.json:
        return
    if outcome.document_path and show_document:
        display.show_document(outcome.shared["document"], str(outcome.document_path))
    display.summary(info)


def json_summary(outcome, info: dict) -> dict:
    """`--json`: one document that says what the run did (read from run.json where it matters)."""
    from utils.run.state import state_of

    shared = outcome.shared
    plan = shared.get("plan") or {"tasks": []}
    results = saved_results(outcome)
    return {**info, "workflow": shared.get("workflow"), "goal": shared.get("goal"), "exit_code": outcome.exit_code,
            "error": outcome.error, "document": str(outcome.document_path) if outcome.document_path else None,
            "run_json": str(outcome.run_dir / "run.json"), "title": shared.get("title"),
            "tasks": [{"id": t["id"], "title": t["title"], "role": t["role"],
                       "state": state_of(results.get(t["id"]))} for t in plan["tasks"]],
            "reviews": shared.get("reviews", [])}
