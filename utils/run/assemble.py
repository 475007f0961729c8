"""Putting the final document together: plan order, cohesion text, honest gaps.

Pure functions, so the document's shape is tested without a model. A failed or skipped task is
never papered over: its place in the document says what is missing and why.
"""
from __future__ import annotations

from utils.run.outputs import Cohesion
from utils.run.plan import Plan

OFFLINE_BANNER = ("> **Offline provider: no model was called.** Computed figures and charts are real; "
                  "text sections are labelled placeholders. Configure a model (see README) for a real run.")


def document_sections(plan: Plan, results: dict[str, dict], include_roles: list[str] | None,
                      summary_role: str | None = None) -> list[tuple[str, str, str]]:
    """(task id, title, text) for the document, in plan order, the summary role first."""
    chosen = [t for t in plan.tasks if include_roles is None or t.role in include_roles
              or t.role == summary_role]
    chosen.sort(key=lambda t: 0 if t.role == summary_role else 1)  # stable: plan order otherwise
    sections = []
    for t in chosen:
        r = results.get(t.id, {})
        state = r.get("state", "pending")
        if state == "done":
            text = r.get("output", "")
        elif state == "failed":
            text = f"> **Missing section:** task `{t.id}` failed: {r.get('error') or 'unknown error'}"
        elif state == "skipped":
            text = f"> **Missing section:** task `{t.id}` was skipped because a task it depends on did not finish."
        else:
            text = f"> **Missing section:** task `{t.id}` was not run ({state})."
        sections.append((t.id, t.title, text))
    return sections


def _has_heading(text: str) -> bool:
    return text.lstrip().startswith("#")


def assemble(plan: Plan, sections: list[tuple[str, str, str]], cohesion: Cohesion | None,
             *, offline: bool = False, notes: list[str] | None = None, sources: list[str] | None = None) -> str:
    """The final Markdown document."""
    title = cohesion.title if cohesion else plan.goal
    out = [f"# {title}", ""]
    if offline:
        out += [OFFLINE_BANNER, ""]
    if cohesion and cohesion.meta_description:
        out += [f"*{cohesion.meta_description}*", ""]
    if cohesion and cohesion.introduction:
        out += [cohesion.introduction.strip(), ""]
    for tid, sec_title, text in sections:
        if not _has_heading(text):
            out += [f"## {sec_title}", ""]
        transition = cohesion.transitions.get(tid) if cohesion else None
        if transition and _has_heading(text):
            heading, _, rest = text.strip().partition("\n")
            out += [heading, "", transition.strip(), "", rest.strip(), ""]
        else:
            if transition:
                out += [transition.strip(), ""]
            out += [text.strip(), ""]
    if sources:
        out += ["## Sources", ""] + [f"- `{name}`" for name in sources] + [""]
    for note in notes or []:
        out += [f"> {note}", ""]
    return "\n".join(out).rstrip() + "\n"


def run_status(plan: Plan, results: dict[str, dict], stopped: str | None = None) -> str:
    """ok: every task done; stopped: budget or Ctrl-C left tasks unrun; partial; failed: nothing done."""
    states = [results.get(t.id, {}).get("state", "pending") for t in plan.tasks]
    if states and all(s == "done" for s in states):
        return "ok"
    if stopped or "pending" in states:
        return "stopped"
    return "partial" if "done" in states else "failed"
