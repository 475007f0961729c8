"""Report tools: read source files and extract facts that carry a pointer to where they came from.

A report writer (a model) is given these facts instead of raw files. A fact is a quantity with a
unit, what it measures and a `file:line` pointer ("notes.md:L12", "survey.csv:L2-L41 (column
'score')", "m.json:L4 ($.web.sessions)"), so every number in the final report can be traced back and
checked. Headings, version numbers, ports, dates and id columns are not facts. Files are only read,
never run. Extraction is linear in the file's size and stops after MAX_FACTS_PER_SOURCE facts.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from utils.errors import ToolError
from utils.files import parse_user_file
from utils.tools import ToolInput, ToolResult
from utils.tools.source_facts import MAX_FACTS_PER_SOURCE, csv_facts, json_facts, plain_number, text_facts
from utils.tools.table import parse_csv, read_text

SUPPORTED = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".csv": "csv", ".json": "json"}
MAX_JSON_DEPTH = 64          # deeper documents are refused with one line, never a RecursionError


@dataclass
class Source:
    path: Path
    name: str
    kind: str          # markdown | text | csv | json
    text: str
    parsed: Any = None  # the JSON document for kind == "json"


def read_source(path: Path | str) -> Source:
    """Read one source file as UTF-8 text; JSON is parsed here so a broken file fails early."""
    p = Path(path)
    kind = SUPPORTED.get(p.suffix.lower())
    if kind is None:
        raise ToolError(f"unsupported source type {p.suffix or '(none)'} for {p.name}; "
                        f"supported: {', '.join(sorted(set(SUPPORTED)))}")
    text = read_text(p, "source file")
    parsed = None
    if kind == "json":
        parsed = _parse_json(text, p.name)
    return Source(path=p, name=p.name, kind=kind, text=text, parsed=parsed)


def _parse_json(text: str, name: str) -> Any:
    """json.loads with a depth limit checked first: the parser recurses, so a hostile file of
    100,000 '[' would end in RecursionError instead of a one-line error."""
    return parse_user_file(text, json.loads, f"source file {name}", max_depth=MAX_JSON_DEPTH,
                           syntax=json.JSONDecodeError, error=ToolError,
                           describe=lambda e: f"JSON (line {e.lineno}, column {e.colno}: {e.msg})")


def check_source(path: Path | str) -> Source:
    """Read and fully parse one `--input` file, so a bad one (ragged CSV, broken or too deeply nested
    JSON, not UTF-8) is a one-line error before any model call is paid for. Cheap: one parse."""
    src = read_source(path)
    if src.kind == "csv":
        parse_csv(src.text, src.name)
    return src


def facts_from(src: Source) -> list[dict]:
    """Every fact in one source, whatever its kind (see source_facts)."""
    if src.kind == "csv":
        return csv_facts(src.name, src.text)
    if src.kind == "json":
        return json_facts(src.name, src.text, src.parsed)[:MAX_FACTS_PER_SOURCE]
    return text_facts(src.name, src.text, src.kind)


def _match(name: str, paths: list[Path]) -> Path | None:
    """A task input names one of the provided files by file name, path, or path suffix; nothing else
    is read, so a planner cannot point a tool at an arbitrary file on disk."""
    want = name.strip().replace("\\", "/")
    for p in paths:
        s = p.as_posix()
        if want in (p.name, s) or s.endswith("/" + want.lstrip("./")):
            return p
    for p in paths:
        try:
            if Path(want).resolve() == p.resolve():
                return p
        except OSError:
            continue
    return None


NO_SOURCES = ("No source files were given (--input), so there are no facts to extract: this report draws "
              "on the model's general knowledge and cites no files.")


def quantity_text(f: dict) -> str:
    """'Online sales: 58% (earlier 51%; of 60,000; in 2025)': the figure as the source states it."""
    unit = f.get("unit") or ""

    def shown(x: float) -> str:
        v = plain_number(x)
        if unit[:1] in "$€£" and unit:
            return f"{unit[0]}{v} {unit[1:].strip()}".strip()
        return f"{v}{unit}" if unit == "%" else f"{v} {unit}".strip()
    extra = [f"earlier {shown(f['earlier'])}" if f.get("earlier") is not None else "",
             f"of {shown(f['total'])}" if f.get("total") is not None else "", f.get("scope") or ""]
    detail = "; ".join(x for x in extra if x)
    return f"{f.get('what') or 'value'}: {shown(f['value'])}" + (f" ({detail})" if detail else "")


def _span(pointers: list[str]) -> str:
    """One pointer for a sentence's facts: "notes.md:L4", or "notes.md:L4-L5" across its lines."""
    if len(set(pointers)) == 1:
        return pointers[0]
    lines = [int(m.group(1)) for p in pointers if (m := re.search(r":L(\d+)$", p))]
    if len(lines) != len(pointers):
        return pointers[0]
    return f"{pointers[0].rsplit(':L', 1)[0]}:L{min(lines)}-L{max(lines)}"


def facts_markdown(facts: list[dict]) -> list[str]:
    """One bullet per sentence (or row), quoting it, with the quantities read from it."""
    lines: list[str] = []
    group: list[dict] = []
    for f in facts + [{}]:
        if group and (f.get("text"), f.get("file")) != (group[0]["text"], group[0]["file"]):
            lines.append(f"- {group[0]['text']} [source: {_span([g['pointer'] for g in group])}] → "
                         + "; ".join(quantity_text(g) for g in group))
            group = []
        if f:
            group.append(f)
    return lines


def facts_json(facts: list[dict]) -> bytes:
    """facts.json for the run folder: `[{file, line, value, unit, what, scope, earlier, total}]`
    (a CSV fact adds its column and group), in the order they were found."""
    keys = ("file", "line", "value", "unit", "what", "scope", "earlier", "total", "column", "group")
    rows = [{k: f.get(k) for k in keys if k in f} for f in facts]
    return json.dumps(rows, indent=1, ensure_ascii=False).encode("utf-8")


def collect_facts(results: Iterable[dict]) -> list[dict] | None:
    """Every fact the run's extraction tasks found, each once, in the order given (plan order);
    None when no task extracted facts at all (a workflow without sources writes no facts.json)."""
    facts: list[dict] = []
    seen: set[tuple] = set()
    extracted = False
    for res in results:
        data = (res or {}).get("data") if isinstance(res, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("facts"), list):
            continue
        extracted = True
        for f in data["facts"]:
            key = (f.get("file"), f.get("line"), f.get("value"), f.get("unit"), f.get("what"), f.get("group"))
            if isinstance(f, dict) and key not in seen:
                seen.add(key)
                facts.append(f)
    return facts if extracted else None


def source_entries(inputs: list[str], facts: list[dict], written: str) -> list[str]:
    """The Sources section's lines: every input file and every file a fact or a citation came from,
    with how many facts it gave and how often the writers cited it (`[source: notes.md:L3]`,
    `[notes.md:L3]`). A file the user gave that yielded nothing is listed too, with 0 facts."""
    names = list(dict.fromkeys([*inputs, *(str(f.get("file")) for f in facts if f.get("file"))]))
    cited = {n: len(re.findall(rf"(?<![\w.-]){re.escape(n)}:L\d+", written)) for n in names}
    out = []
    for name in names:
        n = sum(1 for f in facts if f.get("file") == name)
        cites = f", cited {cited[name]} time{'s' if cited[name] != 1 else ''}" if cited[name] else ""
        out.append(f"`{name}`: {n} fact{'s' if n != 1 else ''}{cites}")
    return out


def report_sources(inputs: list[str], results: dict[str, dict], order: list[str],
                   sections: list[tuple[str, str, str]]) -> list[str]:
    """The Sources section of a report: `source_entries` over the facts of the tasks in `order`
    (plan order), with citations counted in the sections a model wrote (a tool's fact list quotes
    every pointer once, which is not a citation)."""
    facts = collect_facts(results.get(tid, {}) for tid in order) or []
    written = "\n".join(text for tid, _, text in sections
                         if not str((results.get(tid) or {}).get("model", "")).startswith("tool:"))
    return source_entries(inputs, facts, written)


def extract_facts(inp: ToolInput) -> ToolResult:
    """Facts from the task's input files (all provided inputs when the task names none)."""
    if not inp.input_paths:  # a planner may add a gatherer anyway: say why there is nothing, do not fail
        return ToolResult(markdown=NO_SOURCES, data={"facts": [], "sources": [], "unmatched": []})
    wanted = [str(x) for x in (inp.task.get("inputs") or [])]
    chosen: list[Path] = []
    unmatched: list[str] = []
    for name in wanted:
        p = _match(name, inp.input_paths)
        if p is None:
            unmatched.append(name)
        elif p not in chosen:
            chosen.append(p)
    if wanted and not chosen:
        raise ToolError(f"none of the task inputs ({', '.join(wanted)}) is among the provided files: "
                        f"{', '.join(p.name for p in inp.input_paths)}")
    if not wanted:
        chosen = list(dict.fromkeys(inp.input_paths))
    facts: list[dict] = []
    names: list[str] = []
    for p in chosen:
        src = read_source(p)
        names.append(src.name)
        facts.extend(facts_from(src))
    md = [f"Facts from {', '.join(names)} ({len(facts)} quantities):", ""] + facts_markdown(facts)
    if not facts:
        md.append("- (no quantities with a unit found)")
    if unmatched:
        md += ["", f"Not found among the provided files: {', '.join(unmatched)}."]
    return ToolResult(markdown="\n".join(md), data={"facts": facts, "sources": names, "unmatched": unmatched})


TOOLS_HERE = {"extract_facts": extract_facts}
