"""Putting the final document together: plan order, cohesion text, honest gaps.

Pure functions, so the document's shape is tested without a model. A failed or skipped task is
never papered over: its place in the document says what is missing and why.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from utils.run.context import cohesion_messages
from utils.run.outputs import Cohesion, cohesion_model
from utils.run.plan import Plan
from utils.run.results import TaskState
from utils.tools.sources import NO_SOURCES, report_sources
from utils.tools.web.cite import cite_web

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
        state = r.get("state", TaskState.PENDING)
        if state == TaskState.DONE:
            text = r.get("output", "")
        elif state == TaskState.FAILED:
            text = f"> **Missing section:** task `{t.id}` failed: {r.get('error') or 'unknown error'}"
        elif state == TaskState.SKIPPED:
            text = f"> **Missing section:** task `{t.id}` was skipped because a task it depends on did not finish."
        else:
            text = f"> **Missing section:** task `{t.id}` was not run ({state})."
        sections.append((t.id, t.title, text))
    return sections


_ATX = re.compile(r"^( {0,3})(#{1,6})(?=\s|$)")
_PARSER = None


def _markdown():
    """The CommonMark parser (markdown-it-py, installed with rich), built once, on first use."""
    global _PARSER
    if _PARSER is None:
        from markdown_it import MarkdownIt

        _PARSER = MarkdownIt("commonmark")
    return _PARSER


def headings(text: str) -> list[tuple[int, int, int, str]]:
    """The top-level headings of Markdown `text` as (first line, end line, level, content), read by a
    CommonMark parser: setext headings (a line underlined with === or ---) count, and nothing inside
    a code fence (```, ~~~ or longer) does."""
    found = []
    tokens = _markdown().parse(text)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.level == 0 and tok.map:
            found.append((tok.map[0], tok.map[1], int(tok.tag[1]), tokens[i + 1].content))
    return found


def _lf(text: str) -> str:
    """Line ends as the parser counts them (only \\n, \\r\\n and \\r end a line in Markdown)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def demote_headings(text: str, top: int) -> str:
    """`text` with its Markdown headings shifted so the highest one is level `top` (at most 6).
    A setext heading becomes an ATX one (`## Title`) at its new level; code fences are left alone."""
    text = _lf(text)
    found = headings(text)
    if not found or min(level for _, _, level, _ in found) >= top:
        return text
    shift = top - min(level for _, _, level, _ in found)
    lines = text.split("\n")
    for first, end, level, content in reversed(found):  # from the end: line numbers stay valid
        new = min(6, level + shift)
        m = _ATX.match(lines[first])
        if m and end == first + 1:
            lines[first] = m.group(1) + "#" * new + lines[first][m.end():]
        else:  # setext: the text lines and their underline become one ATX line
            lines[first:end] = ["#" * new + " " + " ".join(content.split())]
    return "\n".join(lines)


def section_body(title: str, text: str) -> str:
    """A worker's text under the plan's section title: a leading heading that repeats the title is
    dropped, any other heading of the worker's is demoted beneath it (`###` and below)."""
    text = _lf(text).strip()
    found = headings(text)
    if found and found[0][0] == 0 and _norm(found[0][3]) == _norm(title):
        text = "\n".join(text.split("\n")[found[0][1]:]).strip()
    return demote_headings(text, 3)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def assemble(plan: Plan, sections: list[tuple[str, str, str]], cohesion: Cohesion | None,
             *, offline: bool = False, notes: list[str] | None = None, sources: list[str] | None = None) -> str:
    """The final Markdown document: one H1 (the title), then one `##` per planned section, titled as
    the plan says whatever heading the worker chose."""
    title = " ".join((cohesion.title if cohesion else plan.goal).split()).lstrip("#").strip() or plan.goal
    out = [f"# {title}", ""]
    if offline:
        out += [OFFLINE_BANNER, ""]
    if cohesion and cohesion.meta_description:
        out += [f"*{' '.join(cohesion.meta_description.split())}*", ""]
    if cohesion and cohesion.introduction:
        out += [demote_headings(cohesion.introduction.strip(), 3), ""]
    for tid, sec_title, text in sections:
        out += [f"## {' '.join(sec_title.split())}", ""]
        transition = cohesion.transitions.get(tid) if cohesion else None
        if transition:
            out += [demote_headings(transition.strip(), 3), ""]
        out += [section_body(sec_title, text), ""]
    if sources:
        out += ["## Sources", ""] + [f"- {entry}" for entry in sources] + [""]
    for note in notes or []:
        out += [f"> {note}", ""]
    return "\n".join(out).rstrip() + "\n"


def final_document(spec: Any, plan: Plan, results: Mapping[str, dict], sections: list[tuple[str, str, str]],
                   cohesion: Cohesion | None, *, offline: bool, notes: list[str], inputs: list[str],
                   web: dict | None) -> str:
    """The run's document: the sections in plan order with the cohesion text, a workflow that cites
    its inputs with its sources listed (or, with none and no web research, a plain line saying
    nothing backs it), and the web pages its researchers used as numbered references."""
    cite = spec.assembly.cite_inputs
    sources = report_sources([Path(x).name for x in inputs], results, [t.id for t in plan.tasks], sections) \
        if cite else []
    if cite and not sources and not (web or {}).get("enabled"):  # say plainly that nothing backs it
        sections = [("sources", "Sources", f"> **{NO_SOURCES}**"), *sections]
    doc = assemble(plan, sections, cohesion, offline=offline, notes=notes, sources=sources)
    return cite_web(doc, [results.get(t.id, {}) for t in plan.tasks], web, len(sources))


def cohesion_call(spec: Any, plan: Plan, sections: list[tuple[str, str, str]],
                  options: dict) -> tuple[list[dict], dict]:
    """The cohesion pass's model call (title, introduction, transitions): (messages, the other
    arguments of `llm.complete`); its schema names the sections it may write transitions for."""
    messages = cohesion_messages(spec=spec, plan=plan, sections=sections, budget_tokens=options["context_budget"] * 2)
    return messages, {"model": options.get("reviewer_model"), "schema": cohesion_model([s[0] for s in sections]),
                      "purpose": "cohesion pass"}
