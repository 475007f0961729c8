"""Report tools: read source files and extract facts that carry a pointer to where they came from.

A report writer (a model) is given these facts instead of raw files. A fact is a quantity with a
unit, what it measures and a `file:line` pointer ("notes.md:L12", "survey.csv:L2-L41 (column
'score')", "m.json:L4 ($.web.sessions)"), so every number in the final report can be traced back and
checked. Headings, version numbers, ports, dates and id columns are not facts. Files are only read,
never run. Extraction is linear in the file's size and stops after MAX_FACTS_PER_SOURCE facts.
"""
from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.errors import ToolError
from utils.text import bracket_depth
from utils.tools import ToolInput, ToolResult
from utils.tools.quantities import quantities, unit_from_name
from utils.tools.table import parse_csv, read_text

SUPPORTED = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".csv": "csv", ".json": "json"}
MAX_FACTS_PER_SOURCE = 200
MAX_JSON_DEPTH = 64          # deeper documents are refused with one line, never a RecursionError
MAX_SENTENCE_CHARS = 400     # a fact quotes at most this much of its sentence
_NUMBER = re.compile(r"\d")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[*_]?[A-Z0-9$€£])")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_WORDS = {"id", "ids", "uuid", "guid", "key", "code", "no", "num", "number", "index", "idx", "zip", "postcode",
                "postal", "phone", "port", "version", "ver", "lat", "lon", "lng", "latitude", "longitude", "seed",
                "rank", "row", "timestamp", "epoch"}
_DATE_WORDS = {"year", "years", "date", "month", "day", "week", "quarter", "time", "dob", "birthday"}


def not_a_measure(name: str) -> bool:
    """A key or column that labels rows (ids, codes, ports, versions) or dates them (year, date):
    its values are numbers but averaging or charting them means nothing. "cups_per_day" and
    "by_quarter" are rates and series, so they stay."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    if not words:
        return True
    if len(words) >= 2 and words[-2] in ("per", "by"):
        return False
    return any(w in _LABEL_WORDS for w in words) or words[-1] in _DATE_WORDS


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
    if bracket_depth(text) > MAX_JSON_DEPTH:
        raise ToolError(f"source file {name} is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ToolError(f"source file {name} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def check_source(path: Path | str) -> Source:
    """Read and fully parse one `--input` file, so a bad one (ragged CSV, broken or too deeply nested
    JSON, not UTF-8) is a one-line error before any model call is paid for. Cheap: one parse."""
    src = read_source(path)
    if src.kind == "csv":
        parse_csv(src.text, src.name)
    return src


def _fact(text: str, source: str, pointer: str, value: float, unit: str, measure: str,
          previous: float | None = None) -> dict:
    fact = {"text": text, "source": source, "pointer": pointer, "value": value, "unit": unit, "measure": measure}
    if previous is not None:
        fact["previous"] = previous
    return fact


def _clip(sentence: str) -> str:
    return sentence if len(sentence) <= MAX_SENTENCE_CHARS else sentence[:MAX_SENTENCE_CHARS - 1].rstrip() + "…"


def _sentence_facts(sentence: str, src: Source, where: str, facts: list[dict]) -> None:
    clean = re.sub(r"^([-*+]|\d+[.)])\s+", "", sentence.strip()).strip()
    for q in quantities(clean[:4 * MAX_SENTENCE_CHARS]):
        if len(facts) >= MAX_FACTS_PER_SOURCE:
            return
        facts.append(_fact(_clip(clean), src.name, f"{src.name}:{where}", q.value, q.unit, q.measure, q.previous))


def text_facts(src: Source) -> list[dict]:
    """Quantities in sentences and table rows, each pointing at the line(s) it spans.

    Sentences are split within a paragraph (consecutive lines), so a sentence wrapped over two lines
    stays whole; list items and table rows are their own paragraphs; headings and fenced code are
    skipped. Linear: a paragraph's line offsets are searched by bisection, never rescanned.
    """
    facts: list[dict] = []
    para: list[tuple[int, str]] = []
    header: list[str] = []

    def flush() -> None:
        if not para:
            return
        offsets, linenos, parts, size = [], [], [], 0
        for lineno, line in para:
            offsets.append(size)
            linenos.append(lineno)
            parts.append(line)
            size += len(line) + 1
        joined = " ".join(parts)
        para.clear()
        pos = 0
        for sentence in _SENTENCE_SPLIT.split(joined):
            at = joined.index(sentence, pos)
            pos = at + len(sentence)
            if len(facts) >= MAX_FACTS_PER_SOURCE:
                return
            if not _NUMBER.search(sentence):
                continue
            first = linenos[bisect.bisect_right(offsets, at) - 1]
            last = linenos[bisect.bisect_right(offsets, at + max(len(sentence.rstrip()) - 1, 0)) - 1]
            _sentence_facts(sentence, src, f"L{first}" if last == first else f"L{first}-L{last}", facts)

    in_code = False
    for lineno, line in enumerate(src.text.splitlines(), 1):
        if len(facts) >= MAX_FACTS_PER_SOURCE:
            break
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            flush()
            in_code = not in_code
            continue
        if in_code:
            continue
        if not stripped.startswith("|"):
            header = []
        if not stripped or stripped.startswith("<!--"):
            flush()
        elif src.kind == "markdown" and re.match(r"#{1,6}\s", stripped):
            flush()  # a heading names a topic; it is not a fact
        elif stripped.startswith("|"):
            flush()
            _table_row(stripped, header, src, lineno, facts)
        elif re.match(r"([-*+]|\d+[.)])\s", stripped):
            flush()
            para.append((lineno, stripped))
        else:
            para.append((lineno, stripped))
    flush()
    return facts[:MAX_FACTS_PER_SOURCE]


def _table_row(row: str, header: list[str], src: Source, lineno: int, facts: list[dict]) -> None:
    """A Markdown table row (the first row of a table is its header): each numeric cell is a quantity
    whose unit comes from the cell ("38%") or from its column's name ("price_usd", else the name)."""
    if re.fullmatch(r"\|[\s:|-]*", row):
        return  # separator row
    cells = [c.strip() for c in row.strip("|").split("|")]
    if not header:
        header.extend(cells)
        return
    for j, cell in enumerate(cells[1:], 1):
        col = header[j] if j < len(header) else ""
        if len(facts) >= MAX_FACTS_PER_SOURCE or not col or not_a_measure(col):
            continue
        unit_col, measure_col = unit_from_name(col)
        found = quantities(cell)
        if found:
            value, unit = found[0].value, found[0].unit
        elif re.fullmatch(r"\d[\d,]*(?:\.\d+)?", cell):
            value, unit = float(cell.replace(",", "")), unit_col or col
        else:
            continue
        facts.append(_fact(f"{cells[0]} | {col}: {cell}", src.name, f"{src.name}:L{lineno}", value, unit,
                           f"{cells[0]} {measure_col}".strip()))


def _is_id_like(name: str, values: list[float]) -> bool:
    """An id, a year or a date code is a label, not a measurement: its mean means nothing."""
    if not_a_measure(name):
        return True
    ints = all(float(v).is_integer() for v in values)
    return ints and len(values) > 2 and len(set(values)) == len(values) and all(
        b > a for a, b in zip(values, values[1:]))


def csv_facts(src: Source) -> list[dict]:
    """Mean (with count, min, max) of each numeric column that measures something."""
    table = parse_csv(src.text, src.name)
    rows = f"L{table.lines[0]}-L{table.lines[-1]}"
    facts = []
    for col in table.numeric():
        present = table.present(col)
        if _is_id_like(col, present):
            continue
        values = [float(v) for v in present]
        mean = math.fsum(values) / len(values)
        unit, measure = unit_from_name(col)
        unit = unit or col  # a column's own name is its unit: only the same column is compared
        text = (f"{col}: mean {plain_number(round_sig(mean))} over {len(values)} rows (min {plain_number(min(values))}, "
                f"max {plain_number(max(values))})")
        facts.append(_fact(text, src.name, f"{src.name}:{rows} (column '{col}')", round(mean, 6),
                           unit, f"mean {measure}"))
    return facts


def _json_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if _IDENT.match(key) else f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


_JSON_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def json_facts(src: Source) -> list[dict]:
    """Numeric leaves whose key says what they measure, with the line they are on.

    The unit comes from the key's suffix (`_pct`, `_usd`, `_hours`), a sibling `unit` key, or else the
    key itself (so only values of the same key are compared). Keys that name ids, versions, ports,
    years or dates are skipped. Iterative walk in document order; each leaf's line is found by
    searching forward from the previous one, so the whole pass is linear.
    """
    facts: list[dict] = []
    starts = [0] + [m.end() for m in re.finditer("\n", src.text)]
    cursor = 0
    stack: list[tuple[Any, str, str, str]] = [(src.parsed, "$", "", "")]
    while stack and len(facts) < MAX_FACTS_PER_SOURCE:
        node, path, key, sibling_unit = stack.pop()
        if isinstance(node, dict):
            unit = node.get("unit") if isinstance(node.get("unit"), str) else ""
            for k, v in reversed(list(node.items())):
                stack.append((v, _json_path(path, str(k)), str(k), unit))
            continue
        if isinstance(node, list):
            for i, v in reversed(list(enumerate(node))):
                stack.append((v, _json_path(path, i), key, sibling_unit))
            continue
        if not isinstance(node, (int, float)) or isinstance(node, bool) or not key or not_a_measure(key):
            continue
        pattern = (re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:\s*" if not path.endswith("]") else r"(?<![\w.])") + _JSON_NUMBER
        m = re.compile(pattern).search(src.text, cursor)
        line = ""
        if m:
            cursor = m.end()
            line = f"L{bisect.bisect_right(starts, m.start())}"
        unit, measure = unit_from_name(key)
        words = [w for w in re.findall(r"[A-Za-z]\w*", path[1:]) if w != key]
        measure = " ".join(words[-2:] + [measure]).replace("_", " ").strip()
        value = float(node)
        shown = f"{node:g}" if isinstance(node, float) else str(node)
        pointer = f"{src.name}:{line} ({path})" if line else f"{src.name}:{path}"
        facts.append(_fact(f"{path} = {shown}", src.name, pointer, value, sibling_unit or unit or key, measure))
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


NO_SOURCES = ("No source files were given (--input), so there are no facts to extract: this report draws "
              "on the model's general knowledge and cites no files.")


def plain_number(x: float) -> str:
    """A number as a reader writes it: 184,300 / 4.2 / 0.035, never 1.843e+05."""
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.4f}".rstrip("0").rstrip(".") if abs(x) >= 1e-4 else f"{x:.3g}"


def round_sig(x: float) -> float:
    """Three significant figures: enough to compare, honest about precision."""
    return float(f"{x:.3g}") if x else 0.0


def quantity_text(f: dict) -> str:
    unit = f.get("unit") or ""
    value = plain_number(f["value"])
    shown = f"{unit}{value}" if unit in ("$", "€", "£") else (
        f"{unit.split()[0]}{value} {' '.join(unit.split()[1:])}" if unit[:1] in "$€£" and unit else
        f"{value}{unit}" if unit == "%" else f"{value} {unit}")
    before = f" (from {plain_number(f['previous'])})" if f.get("previous") is not None else ""
    return f"{f.get('measure') or 'value'}: {shown.strip()}{before}"


def facts_markdown(facts: list[dict]) -> list[str]:
    """One bullet per sentence (or row), quoting it, with the quantities read from it."""
    lines: list[str] = []
    group: list[dict] = []
    for f in facts + [{}]:
        if group and (f.get("text"), f.get("pointer")) != (group[0]["text"], group[0]["pointer"]):
            lines.append(f"- {group[0]['text']} [source: {group[0]['pointer']}] → "
                         + "; ".join(quantity_text(g) for g in group))
            group = []
        if f:
            group.append(f)
    return lines


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
