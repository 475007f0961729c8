"""What to run: a `RunRequest`, built the one way for a new run (example, workflow file or routed
topic), a `--run-plan` plan and a `--resume`, with every file the user named checked first.

Why here, apart from the run itself (`utils/app/run.py`): everything in this module happens before
a run folder exists, so a bad file, flag or plan is one line and exit 2, costing no model call where
it can be found without one. The model calls made before the run (routing, the analysis target, the
project's team) are counted in `RunRequest.setup_totals`, so the run's totals and budget cover them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.options import home
from utils.app.history import run_folder
from utils.app.loop import run_closing
from utils.app.settings import Settings, check_topic
from utils.errors import LLMError, ModelChoiceError, UsageError
from utils.model.settings import safe_base_url

DATA_TOOLS, SOURCE_TOOLS = {"load_data"}, {"extract_facts"}


@dataclass(kw_only=True)
class RunRequest:
    """What one run is: the workflow, the goal and maybe a plan the user already edited; its checked
    inputs and options; for `--resume`, the saved run and its folder; what to record besides."""

    spec: Any
    goal: str
    plan: dict | None = None  # preset: the orchestrator takes it as is (--run-plan, interactive /run)
    inputs: dict
    options: dict
    model: str | None = None  # the model a custom server serves, asked once before the run (`with_model`)
    saved: dict | None = None  # --resume: the saved run.json ...
    run_dir: Path | None = None  # ... and its folder (a new run gets a new one)
    meta: dict = field(default_factory=dict)  # added to run.json's meta (plan source, batch line...)
    setup_totals: list[dict] = field(default_factory=list)  # calls made before the run (routing, target, team)


# ---------------------------------------------------------------- the model client and the inputs

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


def uses_tools(spec: Any, tools: set[str]) -> bool:
    """Whether a workflow has a tool role running one of `tools` (it reads `--data` or `--input`)."""
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
    if settings.data and not (spec.sample_data or uses_tools(spec, DATA_TOOLS)):
        raise UsageError(f"--data is not used by the {spec.name} workflow (it is for analysis)")
    if settings.inputs and not (spec.sample_inputs or uses_tools(spec, SOURCE_TOOLS)):
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
    from utils.run.spec import load_spec

    llm = make_llm(settings, emit)
    name, why = run_closing(llm, lambda: choose_workflow(llm, topic))
    if totals is not None:
        totals.append(llm.totals_dict())
    return load_spec(name), why


# ---------------------------------------------------------------- what to run

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


