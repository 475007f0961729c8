"""Report tools: read source files and extract facts that carry a pointer to where they came from.

A report writer (a model) is given these facts instead of raw files, and each fact keeps its
`source` and `pointer` ("notes.md:L12", "survey.csv:column 'score' (rows 2-41)", "m.json:$.a[0]"),
so every number in the final report can be traced back and checked. Files are only read, never run.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import ToolError
from utils.tools import ToolInput, ToolResult, new_figure, png_bytes
from utils.tools.table import parse_csv, read_text

SUPPORTED = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".csv": "csv", ".json": "json"}
MAX_FACTS_PER_SOURCE = 200
MAX_CHART_FACTS = 12
_NUMBER = re.compile(r"(?<![\w.])[-+]?[$€£]?\d[\d,]*(?:\.\d+)?(?:\s?%)?")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[*_]?[A-Z0-9$€£])")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as e:
            raise ToolError(f"source file {p.name} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    return Source(path=p, name=p.name, kind=kind, text=text, parsed=parsed)


def first_value(text: str) -> float | None:
    """The number a sentence is 'about': a percentage first, else the first number that is not a year."""
    found = [m.group(0) for m in _NUMBER.finditer(text)]
    if not found:
        return None

    def val(tok: str) -> float | None:
        try:
            return float(re.sub(r"[$€£,%\s]", "", tok))
        except ValueError:
            return None

    pct = [t for t in found if t.endswith("%")]
    non_year = [t for t in found if not re.fullmatch(r"(19|20)\d\d", t)]
    return val((pct or non_year or found)[0])


def _fact(text: str, source: str, pointer: str, value: float | None) -> dict:
    return {"text": text, "source": source, "pointer": pointer, "value": value}


def text_facts(src: Source) -> list[dict]:
    """Headings, and sentences holding a number or a %, each pointing at the line(s) it spans.

    Sentences are split within a paragraph (consecutive lines), so a sentence wrapped over two lines
    stays whole; list items and table rows are their own paragraphs; fenced code is skipped.
    """
    facts: list[dict] = []
    para: list[tuple[int, str]] = []

    def flush() -> None:
        if not para:
            return
        joined, starts = "", []
        for lineno, line in para:
            if joined:
                joined += " "
            starts.append((len(joined), lineno))
            joined += line.strip()
        pos = 0
        for sentence in _SENTENCE_SPLIT.split(joined):
            at = joined.index(sentence, pos)
            pos = at + len(sentence)
            if _NUMBER.search(sentence) or "%" in sentence:
                first = max(ln for off, ln in starts if off <= at)
                last = max(ln for off, ln in starts if off <= at + len(sentence.rstrip()) - 1)
                where = f"L{first}" if last == first else f"L{first}-L{last}"
                clean = re.sub(r"^([-*+]|\d+[.)])\s+", "", sentence.strip()).strip()
                facts.append(_fact(clean, src.name, f"{src.name}:{where}", first_value(clean)))
        para.clear()

    in_code = False
    for lineno, line in enumerate(src.text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            flush()
            in_code = not in_code
            continue
        if in_code:
            continue
        if not stripped or stripped.startswith("<!--"):
            flush()
        elif src.kind == "markdown" and re.match(r"#{1,6}\s", stripped):
            flush()
            heading = stripped.lstrip("#").strip()
            facts.append(_fact(f"Heading: {heading}", src.name, f"{src.name}:L{lineno}", None))
        elif stripped.startswith("|"):
            flush()
            if not re.fullmatch(r"\|[\s:|-]*", stripped):  # skip table separator rows
                cells = " | ".join(c.strip() for c in stripped.strip("|").split("|"))
                if _NUMBER.search(cells):
                    facts.append(_fact(cells, src.name, f"{src.name}:L{lineno}", first_value(cells)))
        elif re.match(r"([-*+]|\d+[.)])\s", stripped):
            flush()
            para.append((lineno, stripped))
        else:
            para.append((lineno, stripped))
    flush()
    return facts


def csv_facts(src: Source) -> list[dict]:
    """Count, mean, min and max of each numeric column (value = the mean)."""
    table = parse_csv(src.text, src.name)
    rows = f"rows {table.lines[0]}-{table.lines[-1]}"
    facts = [_fact(f"{src.name} has {table.n_rows} data rows and columns {', '.join(table.columns)}",
                   src.name, f"{src.name}:{rows}", float(table.n_rows))]
    for col in table.numeric():
        arr = np.asarray(table.present(col), dtype=float)
        text = (f"{col}: {arr.size} values, mean {arr.mean():.4g}, min {arr.min():.4g}, max {arr.max():.4g}")
        facts.append(_fact(text, src.name, f"{src.name}:column '{col}' ({rows})", round(float(arr.mean()), 6)))
    return facts


def _json_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if _IDENT.match(key) else f"{parent}[{json.dumps(key)}]"


def json_facts(src: Source) -> list[dict]:
    """Every numeric leaf with its JSON path (booleans are not numbers here)."""
    facts: list[dict] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, _json_path(path, str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, _json_path(path, i))
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            facts.append(_fact(f"{path} = {node:g}" if isinstance(node, float) else f"{path} = {node}",
                               src.name, f"{src.name}:{path}", float(node)))

    walk(src.parsed, "$")
    return facts


def facts_from(src: Source) -> list[dict]:
    facts = {"csv": csv_facts, "json": json_facts}.get(src.kind, text_facts)(src)
    return facts[:MAX_FACTS_PER_SOURCE]


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


def extract_facts(inp: ToolInput) -> ToolResult:
    """Facts from the task's input files (all provided inputs when the task names none)."""
    if not inp.input_paths:
        raise ToolError("no source files to read: pass --input FILE (md, txt, csv, json)")
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
    md = [f"Facts from {', '.join(names)} ({len(facts)}):", ""]
    md += [f"- {f['text']} [source: {f['pointer']}]" for f in facts]
    if not facts:
        md.append("- (no headings or numeric statements found)")
    if unmatched:
        md += ["", f"Not found among the provided files: {', '.join(unmatched)}."]
    return ToolResult(markdown="\n".join(md), data={"facts": facts, "sources": names, "unmatched": unmatched})


def chart_facts(inp: ToolInput) -> ToolResult:
    """A labelled bar chart of up to 12 numeric facts from the dependency results."""
    picked: list[dict] = []
    for res in inp.deps.values():
        data = (res or {}).get("data") or {}
        for f in data.get("facts") or []:
            if isinstance(f, dict) and isinstance(f.get("value"), (int, float)) and not isinstance(f["value"], bool):
                picked.append(f)
    picked = picked[:MAX_CHART_FACTS]
    if not picked:
        return ToolResult(markdown="_No numeric facts to chart._", data={"charted": []})
    labels = [(f["text"][:45] + "…") if len(f["text"]) > 46 else f["text"] for f in picked]
    values = [float(f["value"]) for f in picked]
    fig = new_figure(10, 1.2 + 0.5 * len(picked))
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(picked)))
    ax.barh(ys, values, color="#4C72B0")
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    for y, v in zip(ys, values):
        ax.text(v, y, f" {v:g}", va="center", fontsize=8)
    log = min(values) > 0 and max(values) / min(values) > 100  # mixed units: keep small values visible
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("value (log scale)" if log else "value")
    ax.set_title("Numeric facts from the sources (mixed units: compare within a source)")
    fig.tight_layout()
    md = ["![Numeric facts from the sources](facts.png)", ""]
    md += [f"{i}. {f['text']} (charted: {f['value']:g}) [source: {f['pointer']}]" for i, f in enumerate(picked, 1)]
    charted = [{"text": f["text"], "value": float(f["value"]), "pointer": f.get("pointer")} for f in picked]
    return ToolResult(markdown="\n".join(md), data={"charted": charted, "log_scale": log},
                      artifacts={"facts.png": png_bytes(fig)})


TOOLS_HERE = {"extract_facts": extract_facts, "chart_facts": chart_facts}
