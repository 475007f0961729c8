"""What a run did, said: the summary (`summary_info`: shown, kept in the history, the base of
`--json`), the end-of-run lines on screen, the `--json` document and the resume command.

Why its own module: every figure here is read from the run folder's own record (run.json, where a
Ctrl-C left the shared store behind it) through `RunState`, so the summary, `--json` and `--resume`
agree on which tasks are done, whatever way the run was started.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from utils.errors import OrchError

if TYPE_CHECKING:
    from utils.app.settings import Settings


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
    """The run's summary: status, usage, which tasks are done, failed, skipped or left, and the
    command that resumes it when it did not finish."""
    from utils.run.results import TaskState
    from utils.run.state import RunState, ids_with

    results = saved_results(outcome)
    state = RunState.of({"plan": outcome.shared.get("plan"), "results": results})
    # offline no model is called: the stand-ins' sizes are not calls or tokens anyone paid for
    t = {} if llm.offline else outcome.totals
    info = {"status": outcome.status, "elapsed_s": outcome.elapsed_s, "calls": t.get("calls", 0),
            "prompt_tokens": t.get("prompt_tokens", 0), "completion_tokens": t.get("completion_tokens", 0),
            "cached": t.get("cached", 0), "cost_usd": t.get("cost_usd"), "output_dir": str(outcome.run_dir),
            "failed": [{"id": k, "error": state.results[k].error} for k in ids_with(state.results, TaskState.FAILED)],
            "skipped": ids_with(state.results, TaskState.SKIPPED),
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
    hint = resume_hint(outcome.run_dir)
    budget = options.get("max_tokens_total")
    if outcome.status == "stopped" and budget:
        t = outcome.totals
        used = int(t.get("prompt_tokens", 0)) + int(t.get("completion_tokens", 0))
        per_call = used / max(1, int(t.get("calls", 0))) or int(budget)
        bigger = max(2 * int(budget), used + per_call * (left + 3))
        hint += f" --max-tokens-total {int(-(-bigger // 1000) * 1000)}"
    return hint


def show_outcome(settings: Settings, display, outcome, *, show_document: bool = True) -> None:
    """The end of a run on screen: what stopped it and what is done, errors, document, summary."""
    info = outcome.info
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


def json_summary(outcome) -> dict:
    """`--json`: one document that says what the run did (read from run.json where it matters)."""
    from utils.run.state import state_of

    info, shared = outcome.info, outcome.shared
    plan = shared.get("plan") or {"tasks": []}
    results = saved_results(outcome)
    return {**info, "workflow": shared.get("workflow"), "goal": shared.get("goal"), "exit_code": outcome.exit_code,
            "error": outcome.error, "document": str(outcome.document_path) if outcome.document_path else None,
            "run_json": str(outcome.run_dir / "run.json"), "title": shared.get("title"),
            "tasks": [{"id": t["id"], "title": t["title"], "role": t["role"],
                       "state": state_of(results.get(t["id"]))} for t in plan["tasks"]],
            "reviews": shared.get("reviews", [])}


def resume_hint(run_dir: Path) -> str:
    """The plain command that continues the run in `run_dir`."""
    return f"python main.py --resume {run_dir}"
