"""What `main.py` does once flags are parsed: validate input, set up, run, report.

Every user-facing failure is an `OrchError` turned into one line on stderr here; with `--verbose`
the traceback follows.
"""
from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from utils.app.config import home, load_config, resolve_options
from utils.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, OrchError, UsageError
from utils.events import Event

MAX_TOPIC_CHARS = 2000


def run_cli(args: Any, *, version: str) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    args._version = version  # run.json's meta.version (run_one and the interactive session read it)
    try:
        if args.json and args.interactive:
            raise UsageError("--json cannot be combined with --interactive")
        cfg = load_config(args.config)
        if args.interactive:
            from utils.app.interactive import run_interactive
            return run_interactive(args, cfg)
        if args.example == "all":
            return run_all(args, cfg)
        return run_one(args, cfg)
    except OrchError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def check_topic(topic: str | None) -> str:
    if topic is None:
        raise UsageError("give a topic, --example NAME, --resume RUN or --interactive (see --help)")
    topic = topic.strip()
    if not topic:
        raise UsageError("the topic is empty")
    if len(topic) > MAX_TOPIC_CHARS:
        raise UsageError(f"the topic is {len(topic)} characters; the limit is {MAX_TOPIC_CHARS}")
    return topic


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


def workflow_inputs(spec, args: Any) -> dict:
    """Files a workflow's tools read: `--input` sources (report) and the `--data` CSV (analysis).

    Checked before any model call, so a bad file costs nothing.
    """
    from utils.tools.sources import read_source
    from utils.tools.table import load_csv
    from utils.errors import ToolError

    user_inputs = [str(check_readable(p, "input file")) for p in (args.input or [])]
    inputs = user_inputs or [str(spec.example_path(p)) for p in spec.sample_inputs]
    data = args.data or (str(spec.example_path(spec.sample_data)) if spec.sample_data else None)
    try:
        for path in user_inputs:
            read_source(Path(path))
        if data and (args.data or spec.name == "analysis"):
            load_csv(check_readable(data, "data file"))
    except ToolError as exc:
        raise UsageError(str(exc)) from None
    return {"inputs": inputs, "data": data}


def choose_workflow(args: Any, topic: str | None, llm, emit) -> tuple[Any, str]:
    """The spec to run and the goal. A free-text topic picks the best-fitting workflow."""
    from utils.app.routing import choose_workflow as route
    from utils.app.runner import run_closing
    from utils.run.spec import load_spec

    if args.workflow_file:
        spec = load_spec(args.workflow_file)
        return spec, check_topic(topic) if topic is not None else spec.default_topic
    if args.example:
        spec = load_spec(args.example)
        return spec, check_topic(topic) if topic is not None else spec.default_topic
    goal = check_topic(topic)
    name, why = run_closing(llm, lambda: route(llm, goal))
    emit(Event("notice", {"level": "info", "message": f"Workflow: {name} ({why}; use --example to choose another)"}))
    return load_spec(name), goal


def make_llm(args: Any, cfg, emit, *, budget: int | None = None):
    """The run's LLM client. `budget` is the run's effective `max_tokens_total` (a resumed run's
    saved budget unless the flag overrides it); without it the flag/config value applies."""
    from utils.model.client import LLMClient
    from utils.model.settings import settings_from_env

    overrides = {k: v for k, v in {
        "provider": args.provider, "model": args.model, "base_url": args.base_url,
        "max_tokens_total": budget or args.max_tokens_total, "stream": args.stream or None,
        "cache": False if args.no_cache else None}.items() if v is not None}
    config = cfg.model_dump(exclude={"models", "prices"}, exclude_none=True)
    config["prices"] = {k: v.model_dump() for k, v in cfg.prices.items()} or None
    settings = settings_from_env(overrides, config)
    return LLMClient(settings, emit=emit, home=home())


def carry_totals(llm, saved: dict | None) -> None:
    """A resumed run goes on counting from where it stopped: totals (and so the token budget,
    `--max-tokens-total`) cover the whole run, not just this invocation."""
    from dataclasses import fields

    if not isinstance(saved, dict):
        return
    for f in fields(llm.totals):
        value = saved.get(f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(llm.totals, f.name, float(value) if f.name in ("seconds", "cost_usd") else int(value))


def output_dir(args: Any, cfg) -> Path:
    return Path(args.output_dir or cfg.output_dir or "runs")


def resumed_run(args: Any, cfg) -> tuple[Path, dict, dict]:
    """(run folder, saved run.json, options) for `--resume`: the saved options stand, and a flag
    given now overrides them (e.g. a bigger --max-tokens-total)."""
    from utils.app.runner import DEFAULT_OPTIONS
    from utils.run.runstore import find_run, load_run

    run_dir = find_run(args.resume, output_dir(args, cfg))
    saved = load_run(run_dir)
    if args.example and args.example != saved.get("workflow"):
        raise UsageError(f"--resume: {run_dir} is a '{saved.get('workflow')}' run, not '{args.example}'")
    if not saved.get("workflow") or not saved.get("goal") or not isinstance(saved.get("options"), dict):
        raise UsageError(f"--resume: {run_dir}/run.json is incomplete (no workflow, goal or options)")
    flags = {k: v for k, v in resolve_options(args, cfg).items() if getattr(args, k, None) is not None}
    return run_dir, saved, {**DEFAULT_OPTIONS, **saved["options"], **flags}


def run_one(args: Any, cfg, *, quiet_summary: bool = False) -> int:
    """A single run: new, resumed or plan-only. Returns the exit code."""
    return start_run(args, cfg, quiet_summary=quiet_summary).exit_code


def start_run(args: Any, cfg, *, quiet_summary: bool = False):
    """Set up, run and report one run; returns its `Outcome`."""
    from flows import build_flow, build_plan_flow

    from utils.app.render import Display, choose_mode
    from utils.app.websetup import with_web
    from utils.app.runner import execute, new_shared
    from utils.run.runstore import RunStore, new_run_dir
    from utils.run.spec import load_spec

    display = Display(choose_mode(quiet=args.quiet, json_out=args.json))
    saved = None
    if args.resume:
        run_dir, saved, options = resumed_run(args, cfg)
    else:
        options = resolve_options(args, cfg)

    holder: dict[str, Any] = {"emit": display}
    emit = lambda event: holder["emit"](event)  # noqa: E731 - rewired once the run store exists
    llm = make_llm(args, cfg, emit, budget=options.get("max_tokens_total"))
    if saved:
        carry_totals(llm, saved.get("totals"))
        spec = load_spec(saved.get("workflow_file") or saved["workflow"])
        goal, inputs = saved["goal"], saved.get("inputs", {})
    else:
        spec, goal = choose_workflow(args, args.topic, llm, display)
        inputs = workflow_inputs(spec, args)
        run_dir = new_run_dir(output_dir(args, cfg), goal, spec.name)
    spec, inputs, web_note = with_web(spec, inputs, args, cfg)  # issue 12: web research on or off
    store = RunStore(run_dir, saved)

    def on_event(event: Event) -> None:
        store(event)
        if event.kind == "plan":
            display.show_plan(event.data["plan"])
        display(event)

    holder["emit"] = on_event
    if llm.offline:
        display.notice("Offline provider: no model is called. Set OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                       "server (Ollama, vLLM, LM Studio...), or pass --base-url. See README.", "warn")
    if web_note:
        display.notice(web_note, "info")
    shared = new_shared(goal=goal, spec=spec, options=options, inputs=inputs, llm=llm, emit=on_event, saved=saved)
    flow = build_plan_flow() if options.get("plan_only") else build_flow(options["strategy"])
    meta = {"version": getattr(args, "_version", None), "provider": llm.settings.provider,
            "model": llm.settings.model, "base_url": llm.settings.base_url, "engine": engine_name(),
            "strategy": options["strategy"], "resumed": bool(saved)}
    with display:
        outcome = execute(shared, flow, store, meta=meta)
    report(args, display, outcome, llm, quiet_summary=quiet_summary)
    return outcome


def report(args: Any, display, outcome, llm, *, quiet_summary: bool = False) -> None:
    """The end of a run on screen: how to resume, errors, the document, the summary (or the JSON)."""
    from utils.app.runner import resume_hint

    info = summary_info(outcome, llm)
    if outcome.status in ("interrupted", "stopped"):
        info["resume_hint"] = resume_hint(outcome.run_dir)
        if not args.json:
            done, left = info["done"], info["left"]
            why = outcome.shared.get("stopped") or outcome.status
            display.notice(f"run {outcome.status} ({why}): {len(done)} of {len(done) + len(left)} tasks done"
                           + (f"; not done yet: {', '.join(left)}" if left else "")
                           + f". Continue with: {info['resume_hint']}", "warn")
    if outcome.error and outcome.status == "failed":
        print(f"error: {outcome.error}", file=sys.stderr)
    if args.json:
        print(json.dumps(json_summary(outcome, info), indent=1))
        return
    if outcome.document_path and not quiet_summary:
        display.show_document(outcome.shared["document"], str(outcome.document_path))
    display.summary(info)


def engine_name() -> str:
    from utils.engine import ENGINE_NAME, ENGINE_VERSION
    return f"{ENGINE_NAME} {ENGINE_VERSION}".strip()


def summary_info(outcome, llm) -> dict:
    results = outcome.shared.get("results", {})
    plan_tasks = (outcome.shared.get("plan") or {}).get("tasks") or []
    t = outcome.totals
    return {"status": outcome.status, "elapsed_s": outcome.elapsed_s, "calls": t.get("calls", 0),
            "prompt_tokens": t.get("prompt_tokens", 0), "completion_tokens": t.get("completion_tokens", 0),
            "cached": t.get("cached", 0), "cost_usd": t.get("cost_usd"), "output_dir": str(outcome.run_dir),
            "failed": [{"id": k, "error": r.get("error")} for k, r in results.items() if r.get("state") == "failed"],
            "skipped": [k for k, r in results.items() if r.get("state") == "skipped"],
            "done": [t["id"] for t in plan_tasks if results.get(t["id"], {}).get("state") == "done"],
            "left": [t["id"] for t in plan_tasks if results.get(t["id"], {}).get("state") != "done"],
            "offline": llm.offline, "resume_hint": None}


def json_summary(outcome, info: dict) -> dict:
    shared = outcome.shared
    plan = shared.get("plan") or {"tasks": []}
    return {**info, "workflow": shared.get("workflow"), "goal": shared.get("goal"), "exit_code": outcome.exit_code,
            "error": outcome.error, "document": str(outcome.document_path) if outcome.document_path else None,
            "run_json": str(outcome.run_dir / "run.json"), "title": shared.get("title"),
            "tasks": [{"id": t["id"], "title": t["title"], "role": t["role"],
                       "state": shared.get("results", {}).get(t["id"], {}).get("state", "pending")}
                      for t in plan["tasks"]],
            "reviews": shared.get("reviews", [])}


def run_all(args: Any, cfg) -> int:
    """`--example all`: the four workflows one after another, then a summary table."""
    import copy

    rows, worst = [], EXIT_OK
    for name in ("blog", "report", "analysis", "project"):
        sub = copy.copy(args)
        sub.example, sub.topic, sub.json = name, None, False
        try:
            outcome = start_run(sub, cfg, quiet_summary=True)
        except OrchError as exc:  # one workflow's bad input does not stop the others
            print(f"error: {name}: {exc}", file=sys.stderr)
            rows.append({"workflow": name, "status": "failed", "exit_code": exc.exit_code, "seconds": None,
                         "calls": 0, "tokens": 0, "output": None})
            worst = max(worst, EXIT_FAILED)
            continue
        t = outcome.totals
        rows.append({"workflow": name, "status": outcome.status, "exit_code": outcome.exit_code,
                     "seconds": outcome.elapsed_s, "calls": t.get("calls", 0),
                     "tokens": t.get("prompt_tokens", 0) + t.get("completion_tokens", 0),
                     "output": str(outcome.document_path) if outcome.document_path else None})
        worst = max(worst, outcome.exit_code if outcome.exit_code != EXIT_USAGE else EXIT_FAILED)
    if args.json:
        print(json.dumps({"runs": rows, "exit_code": worst}, indent=1))
    else:
        from utils.app.render import all_table
        all_table(rows, quiet=args.quiet)
    return worst
