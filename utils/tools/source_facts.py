"""Facts from one source file: prose, Markdown and reStructuredText tables, CSV columns, JSON leaves.

Kept apart from `sources.py` (reading files, the `extract_facts` tool, Markdown of facts) so each
stays short. Every fact is a dict of the shape `facts.json` holds: `{file, line, value, unit, what,
scope, earlier, total}` plus `text` (the sentence or row it came from) and `pointer` ("notes.md:L12",
"survey.csv:L2-L41 (column 'score')"), so every figure can be traced to the line that says it.
Prose in code blocks (fenced, reStructuredText `::` blocks, indented command examples after a line
ending in ':', `>>>`/`$` prompts, `ls -l` listings) and headings are skipped. Linear in the file's
size; stops after MAX_FACTS_PER_SOURCE facts.
"""
from __future__ import annotations

import bisect
import json
import math
import re
from typing import Any

from utils.tools.quantities import quantities, unit_from_name
from utils.tools.table import parse_csv

MAX_FACTS_PER_SOURCE = 200
MAX_SENTENCE_CHARS = 400     # a fact quotes at most this much of its sentence
MAX_BLOCK_LINES = 400        # an indented block is judged on at most this many lines: the scan stays linear
MAX_GROUPS = 12              # a category column with more levels than this does not split series
_NUMBER = re.compile(r"\d")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[*_]?[A-Z0-9$€£])")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNDERLINE = re.compile(r"^\s*([-=~^\"'`#*+])\1{2,}\s*$")
_CODE_LINE = re.compile(r"^\s*(?:\$ |>>> |\.\.\. |# |[-dlcbps][-rwxsStT]{9}\b)|[=;|{}<>]|\s-{1,2}[A-Za-z0-9]|\w\(\)")
_KEY_VALUE = re.compile(r"^\s*:?(?P<label>[A-Za-z][A-Za-z ()/-]*?)(?::\s+|\s{2,})(?P<num>\d[\d,]*(?:\.\d+)?)"
                        r"(?P<rest>\s*$|\s+\S.*$)")
_LABEL_WORDS = {"id", "ids", "uuid", "guid", "key", "code", "no", "num", "number", "index", "idx", "zip", "postcode",
                "postal", "phone", "port", "version", "ver", "lat", "lon", "lng", "latitude", "longitude", "seed",
                "rank", "row", "timestamp", "epoch"}
_SYNTAX_HEADERS = {"syntax", "option", "options", "flag", "flags", "command", "commands", "pattern", "patterns",
                   "example", "examples", "format", "escape", "sequence", "directive", "usage", "argument"}
_DATE_WORDS = {"year", "years", "date", "month", "day", "week", "quarter", "time", "dob", "birthday", "period"}


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


def fact(file: str, line: int, value: float, unit: str, what: str, text: str, pointer: str, *,
         scope: str = "", earlier: float | None = None, total: float | None = None, **extra: Any) -> dict:
    """One fact in the shape facts.json holds (extra keys: a CSV column's `column`, `group`, `n`...)."""
    return {"file": file, "line": line, "value": value, "unit": unit, "what": what, "scope": scope,
            "earlier": earlier, "total": total, "text": text, "pointer": pointer, **extra}


def _clip(sentence: str) -> str:
    return sentence if len(sentence) <= MAX_SENTENCE_CHARS else sentence[:MAX_SENTENCE_CHARS - 1].rstrip() + "…"


def _label_unit(label: str) -> tuple[str, str]:
    """(unit, what) of a `Label: 42` line: "Number of Instances" -> instances, "Samples total" ->
    samples, "Dimensionality" -> dimensions; a label with no counted noun gives no unit."""
    words = re.findall(r"[A-Za-z]+", label)
    low = [w.lower() for w in words]
    m = re.match(r"number of (\w+)", label.strip(), re.IGNORECASE)
    if m:
        return m.group(1).lower(), label.strip()
    if low and low[0] == "dimensionality":
        return "dimensions", label.strip()
    unit, _ = unit_from_name(words[0]) if words else ("", "")
    return (unit, label.strip()) if unit else ("", "")


def code_lines(lines: list[str]) -> set[int]:
    """0-based indexes of lines inside code: fenced blocks, reStructuredText `::` blocks, and blocks
    indented under a line ending in ':' when any of their lines looks like a command or code.
    An indented quotation of prose ("As described on the original website:") stays prose.
    Each block is looked at over MAX_BLOCK_LINES lines at most, so the pass is linear."""
    code: set[int] = set()
    fenced, i, n = False, 0, len(lines)
    while i < n:
        s = lines[i].strip()
        if s.startswith(("```", "~~~")):
            code.add(i)
            fenced = not fenced
            i += 1
            continue
        if fenced or s.startswith((">>> ", "$ ")):
            code.add(i)
            i += 1
            continue
        if s.endswith(":") and i + 1 < n:
            base = len(lines[i]) - len(lines[i].lstrip())
            j = i + 1
            while j < n and j - i <= MAX_BLOCK_LINES and (not lines[j].strip()
                                                           or len(lines[j]) - len(lines[j].lstrip()) > base):
                j += 1
            block = [k for k in range(i + 1, j) if lines[k].strip()]
            if block and (s.endswith("::") or any(_CODE_LINE.search(lines[k]) for k in block)):
                code.update(block)
                i = j
                continue
        i += 1
    return code


def text_facts(name: str, text: str, kind: str = "text") -> list[dict]:
    """Quantities in sentences, `Label: N` lines and table rows, each pointing at its number's line.

    Sentences are split within a paragraph (consecutive lines), so a sentence wrapped over two lines
    stays whole; list items and table rows are their own paragraphs; headings (Markdown `#`, or a
    line underlined with ----/====) and code are skipped. A paragraph's line offsets are searched
    by bisection, never rescanned.
    """
    facts: list[dict] = []
    para: list[tuple[int, str]] = []
    header: list[str] = []
    lines = text.splitlines()
    code = code_lines(lines)

    def flush() -> None:
        if not para:
            return
        offsets, linenos, size = [], [], 0
        for lineno, line in para:
            offsets.append(size)
            linenos.append(lineno)
            size += len(line) + 1
        joined = " ".join(line for _, line in para)
        para.clear()
        pos = 0
        for sentence in _SENTENCE_SPLIT.split(joined):
            at = joined.index(sentence, pos)
            pos = at + len(sentence)
            if len(facts) >= MAX_FACTS_PER_SOURCE or not _NUMBER.search(sentence):
                continue
            lead = len(sentence) - len(sentence.lstrip())
            lead += len(re.match(r"([-*+]|\d+[.)])?\s*", sentence[lead:]).group(0))
            clean = sentence[lead:].strip()
            for q in quantities(clean[:4 * MAX_SENTENCE_CHARS]):
                if len(facts) >= MAX_FACTS_PER_SOURCE:
                    return
                line = linenos[bisect.bisect_right(offsets, at + lead + q.start) - 1]
                facts.append(fact(name, line, q.value, q.unit, q.what, _clip(clean), f"{name}:L{line}",
                                  scope=q.scope, earlier=q.earlier, total=q.total))

    for idx, line in enumerate(lines):
        lineno = idx + 1
        if len(facts) >= MAX_FACTS_PER_SOURCE:
            break
        stripped = line.strip()
        if not stripped.startswith("|"):
            header = []
        underlined = idx + 1 < len(lines) and _UNDERLINE.match(lines[idx + 1]) and not _UNDERLINE.match(line)
        kv = _KEY_VALUE.match(line) if idx not in code else None
        if idx in code or not stripped or stripped.startswith(("<!--", "..")) or _UNDERLINE.match(line):
            flush()
        elif underlined or (kind == "markdown" and re.match(r"#{1,6}\s", stripped)):
            flush()  # a heading names a topic; it is not a fact
        elif stripped.startswith("|"):
            flush()
            _table_row(stripped, header, name, lineno, facts)
        elif kv and _label_unit(kv.group("label"))[0] and (not kv.group("rest").strip()
                                                           or kv.group("label").lower().startswith("number of")):
            flush()
            unit, what = _label_unit(kv.group("label"))
            value = float(kv.group("num").replace(",", ""))
            facts.append(fact(name, lineno, value, unit, what, _clip(stripped), f"{name}:L{lineno}"))
        elif re.match(r"([-*+]|\d+[.)])\s", stripped):
            flush()
            para.append((lineno, stripped))
        else:
            para.append((lineno, stripped))
    flush()
    return facts[:MAX_FACTS_PER_SOURCE]


def _table_row(row: str, header: list[str], name: str, lineno: int, facts: list[dict]) -> None:
    """A Markdown table row (the first row of a table is its header): each numeric cell is a quantity
    whose unit comes from the cell ("38%") or from its column's name ("price_usd", "orders"); a
    bare number under a column with no unit is not a fact."""
    if re.fullmatch(r"\|[\s:|-]*", row):
        return  # separator row
    cells = [c.strip() for c in row.strip("|").split("|")]
    if not header:
        header.extend(cells)
        return
    if any(h.strip("`* ").lower() in _SYNTAX_HEADERS for h in header):
        return  # a table of syntax ("| option | meaning |"): its numbers are examples
    for j, cell in enumerate(cells[1:], 1):
        col = header[j] if j < len(header) else ""
        if len(facts) >= MAX_FACTS_PER_SOURCE or not col or not_a_measure(col):
            continue
        unit_col, measure_col = unit_from_name(col)
        found = quantities(cell)
        if found:
            value, unit = found[0].value, found[0].unit
        elif re.fullmatch(r"\d[\d,]*(?:\.\d+)?", cell) and unit_col:
            value, unit = float(cell.replace(",", "")), unit_col
        else:
            continue
        facts.append(fact(name, lineno, value, unit, f"{cells[0]} {measure_col}".strip(),
                          f"{cells[0]} | {col}: {cell}", f"{name}:L{lineno}"))


def _is_id_like(name: str, values: list[float]) -> bool:
    """An id, a year or a date code is a label, not a measurement: its mean means nothing."""
    if not_a_measure(name):
        return True
    ints = all(float(v).is_integer() for v in values)
    return ints and len(values) > 2 and len(set(values)) == len(values) and all(
        b > a for a, b in zip(values, values[1:]))


def series_column(columns: dict[str, list], kinds: list[str], keys: list[str]) -> str | None:
    """The category column that splits a long table into separate series, or None: a column of 2 to
    MAX_GROUPS kinds such that some key column (a date, a year, a label) repeats across the kinds
    while each (key, kind) pair occurs once, as in `year,source,net_generation` or
    `symbol,date,price`. Averaging such a column across kinds pools unlike things."""
    for cat in kinds:
        levels = {v for v in columns[cat] if v is not None}
        if not 2 <= len(levels) <= MAX_GROUPS:
            continue
        for key in keys:
            if key == cat:
                continue
            pairs = list(zip(columns[key], columns[cat]))
            distinct_keys = len(set(columns[key]))
            if distinct_keys * 2 <= len(pairs) and len(set(pairs)) == len(pairs):
                return cat
    return None


def _mean_fact(name: str, col: str, values: list[float], rows: list[int], group: tuple[str, str] | None,
               span: str) -> dict:
    mean = math.fsum(values) / len(values)
    unit, measure = unit_from_name(col)
    where = f" ({group[0]} = {group[1]})" if group else ""
    text = (f"{col}{where}: mean {plain_number(round_sig(mean))} over {len(values)} rows "
            f"(min {plain_number(min(values))}, max {plain_number(max(values))})")
    tag = f", {group[0]} = '{group[1]}'" if group else ""
    pointer = f"{name}:L{rows[0]}-L{rows[-1]} (column '{col}'{tag})"
    return fact(name, rows[0], round(mean, 6), unit, f"mean {measure}{where}", text, pointer,
                scope=", ".join(x for x in (f"{group[0]} = {group[1]}" if group else "", span) if x),
                column=col, group=group[1] if group else None, n=len(values), min=min(values), max=max(values))


def csv_facts(name: str, text: str) -> list[dict]:
    """Mean (with count, min, max) of every numeric column that measures something, one per kind
    when a category column splits the rows into separate series (see `series_column`)."""
    table = parse_csv(text, name)
    measures = [c for c in table.numeric() if not _is_id_like(c, table.present(c))]
    keys = [c for c in table.columns if c not in measures]
    split = series_column(table.values, table.categorical(), keys)
    dated = next((c for c in keys if not_a_measure(c) and c != split), None)
    span = ""
    if dated:
        seen = [str(v) for v in table.values[dated] if v is not None]
        span = f"{dated} {min(seen)} to {max(seen)}" if seen else ""
    facts = []
    for col in measures:
        if split is None:
            idx = [i for i, v in enumerate(table.values[col]) if v is not None]
            facts.append(_mean_fact(name, col, [float(table.values[col][i]) for i in idx],
                                    [table.lines[i] for i in idx], None, span))
            continue
        for level in dict.fromkeys(v for v in table.values[split] if v is not None):
            idx = [i for i, v in enumerate(table.values[col]) if v is not None and table.values[split][i] == level]
            if idx:
                facts.append(_mean_fact(name, col, [float(table.values[col][i]) for i in idx],
                                        [table.lines[i] for i in idx], (split, level), span))
    return facts[:MAX_FACTS_PER_SOURCE]


def _json_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if _IDENT.match(key) else f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


_JSON_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def _series_label(key: str, index: int) -> str:
    """A list element's label: "by_quarter"[2] is Q3, "by_year"/"by_month"[2] is #3."""
    return f"Q{index + 1}" if key.lower().endswith("quarter") and index < 4 else f"#{index + 1}"


def json_facts(name: str, text: str, parsed: Any) -> list[dict]:
    """Numeric leaves whose key says what they measure, with the line they are on.

    The unit comes from the key's suffix (`_pct`, `_usd`, `_hours`), a sibling `unit` key, or a
    plural count key ("orders"); otherwise there is none, and `what` names the key. Elements of a
    list are told apart ("by_quarter" Q1..Q4). Keys that name ids, versions, ports, years or dates
    are skipped. Iterative walk in document order; each leaf's line is found by searching forward
    from the previous one, so the whole pass is linear.
    """
    facts: list[dict] = []
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    cursor = 0
    stack: list[tuple[Any, str, str, str, int | None]] = [(parsed, "$", "", "", None)]
    while stack and len(facts) < MAX_FACTS_PER_SOURCE:
        node, path, key, sibling_unit, index = stack.pop()
        if isinstance(node, dict):
            unit = node.get("unit") if isinstance(node.get("unit"), str) else ""
            for k, v in reversed(list(node.items())):
                stack.append((v, _json_path(path, str(k)), str(k), unit, None))
            continue
        if isinstance(node, list):
            for i, v in reversed(list(enumerate(node))):
                stack.append((v, _json_path(path, i), key, sibling_unit, i))
            continue
        if not isinstance(node, (int, float)) or isinstance(node, bool) or not key or not_a_measure(key):
            continue
        pattern = (re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:\s*" if index is None
                   else r"(?<![\w.])") + _JSON_NUMBER
        m = re.compile(pattern).search(text, cursor)
        line = 0
        if m:
            cursor = m.end()
            line = bisect.bisect_right(starts, m.start())
        unit, measure = unit_from_name(key)
        words = [w for w in re.findall(r"[A-Za-z]\w*", path[1:]) if w != key]
        measure = " ".join(words[-2:] + [measure]).replace("_", " ").strip()
        if index is not None:
            measure = f"{measure} {_series_label(key, index)}"
        shown = f"{node:g}" if isinstance(node, float) else str(node)
        pointer = f"{name}:L{line} ({path})" if line else f"{name}:{path}"
        facts.append(fact(name, line, float(node), sibling_unit or unit, measure, f"{path} = {shown}", pointer))
    return facts


def plain_number(x: float) -> str:
    """A number as a reader writes it: 184,300 / 4.2 / 0.035, never 1.843e+05."""
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.4f}".rstrip("0").rstrip(".") if abs(x) >= 1e-4 else f"{x:.3g}"


def round_sig(x: float) -> float:
    """Three significant figures: enough to compare, honest about precision."""
    return float(f"{x:.3g}") if x else 0.0
