"""Quantities in prose: a number with a unit and what it measures, or nothing.

A report's facts must be claims a reader can check ("churn fell to 3.5 %"), not every digit in a file:
version numbers, port numbers, years, dates, times and ids are numbers but not quantities, and a
number with no unit cannot be compared with anything. Everything here is one left-to-right regex
pass over a sentence, so the cost is linear in its length.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = {"jan", "january", "feb", "february", "mar", "march", "apr", "april", "may", "jun", "june", "jul",
          "july", "aug", "august", "sep", "sept", "september", "oct", "october", "nov", "november", "dec",
          "december"}
STOP = {"a", "an", "the", "and", "or", "of", "in", "on", "to", "from", "by", "for", "with", "at", "as", "is",
        "was", "are", "were", "be", "been", "this", "that", "these", "those", "it", "its", "than", "over",
        "between", "vs", "versus", "per", "into", "while", "which", "who", "up", "down", "about", "around",
        "nearly", "almost", "roughly", "approximately", "some", "more", "less", "fewer", "still", "since",
        "after", "before", "during", "out", "off", "if", "but", "so", "then", "also", "year", "years"}
# Words after a number that make it a version, a position or a count of nothing measurable.
NOT_UNITS = MONTHS | STOP | {"am", "pm", "utc", "gmt", "st", "nd", "rd", "th"}
_VERSION_WORDS = {"version", "versions", "v", "release", "python", "node", "java", "ubuntu", "debian", "windows",
                  "macos", "ios", "android", "php", "ruby", "go", "rust", "postgres", "postgresql", "mysql",
                  "api", "http", "tls", "ssl", "ipv", "gen", "iso", "rfc"}
_ID_WORDS = {"id", "ids", "no", "number", "ticket", "issue", "pr", "invoice", "ref", "reference", "item", "step",
             "line", "page", "section", "chapter", "figure", "table", "room", "row", "column", "port", "ports",
             "phase", "level", "tier", "grade", "rank", "day", "week", "q", "quarter", "h"}
_VERBS = {"is", "was", "are", "were", "be", "been", "reached", "reach", "reaches", "fell", "fall", "falls",
          "rose", "rise", "rises", "grew", "grow", "grows", "increased", "decreased", "dropped", "declined",
          "climbed", "jumped", "stood", "stands", "totalled", "totaled", "totals", "hit", "has", "had", "have",
          "account", "accounts", "accounted", "estimated", "expected", "expect", "expects", "spend", "spent",
          "spends", "cost", "costs", "averaged", "take", "takes", "took", "needs", "needed", "of", "at", "to", "for", "by", "from",
          "about", "around", "nearly", "almost", "roughly", "approximately", "some", "up", "down", "slow",
          "slowed", "and", "or", "a", "an", "the", "than", "over", "only", "just", "another", "further"}

_CURRENCY = {"$": "$", "€": "€", "£": "£", "usd": "$", "us$": "$", "eur": "€", "gbp": "£"}
_SCALE = {"k": "thousand", "thousand": "thousand", "m": "million", "mn": "million", "million": "million",
          "bn": "billion", "b": "billion", "billion": "billion", "trillion": "trillion", "tn": "trillion"}
_QTY = re.compile(
    r"(?P<cur>(?:US\$|USD|EUR|GBP)\s?|[$€£])?"
    r"(?<![\w.:/#-])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d.]*\.\d)(?![\w/:-]*\d)"
    r"(?P<pct>\s?(?:%|percent\b|per\s?cent\b|percentage points?\b|pp\b))?"
    r"(?P<scale>\s?(?:[kKmM]\b|bn\b|tn\b|thousand\b|million\b|billion\b|trillion\b))?",
    re.IGNORECASE)
_WORD = re.compile(r"\s*([A-Za-z][A-Za-z-]*)")
_CLAUSE_BREAK = re.compile(r"[,;:()\[\]—–]|\bwhile\b|\bwhereas\b|\bbut\b")


@dataclass
class Quantity:
    value: float
    unit: str
    measure: str
    start: int
    end: int
    previous: float | None = None   # "fell from $310 to $285": previous 310, value 285


def _prev_word(text: str, at: int) -> str:
    m = re.search(r"([A-Za-z]+)\W{0,2}$", text[max(0, at - 30):at])
    return m.group(1).lower() if m else ""


def _is_date_or_time(text: str, m: re.Match, num: str) -> bool:
    before, after = text[max(0, m.start("num") - 1):m.start("num")], text[m.end("num"):m.end("num") + 1]
    if before in "-/." and before or after in ("-", "/", ":") and after:
        return True  # 2025-05-01, 05/01/2025, 10:30
    prev, nxt = _prev_word(text, m.start("num")), _WORD.match(text, m.end("num"))
    if prev in MONTHS or (nxt and nxt.group(1).lower() in MONTHS):
        return True  # "May 12", "12 May 2025"
    bare = not (m.group("cur") or m.group("pct") or m.group("scale"))
    return bare and re.fullmatch(r"(1[89]|20|21)\d\d", num) is not None  # a year, unless it carries a unit


def _skip(text: str, m: re.Match) -> bool:
    """Numbers that are never quantities, whatever follows them: ids, versions, dates, years."""
    prev, lead = _prev_word(text, m.start()), text[max(0, m.start() - 1):m.start()]
    return lead == "#" or prev in _VERSION_WORDS or prev in _ID_WORDS or _is_date_or_time(text, m, m.group("num"))


def _unit_after(text: str, end: int) -> tuple[str, int]:
    """The counted noun right after a number ("4,975 orders"), or ''."""
    m = _WORD.match(text, end)
    if not m:
        return "", end
    word = m.group(1).lower()
    past_tense = word.endswith("ed") and len(word) > 4  # "Queue 7 waited ...": a verb, not a unit
    if word in NOT_UNITS or word in _VERBS or past_tense or len(word) < 2:
        if word == "out":  # "4.3 out of 5"
            scale = re.match(r"\s*out of (\d+(?:\.\d+)?)", text[end:])
            if scale:
                return f"out of {scale.group(1)}", end + scale.end()
        return "", end
    return word, m.end()


def _measure(text: str, start: int, floor: int) -> str:
    """What a quantity measures: the words of its clause before it, minus verbs and fillers."""
    clause = text[floor:start]
    cut = list(_CLAUSE_BREAK.finditer(clause))
    if cut:
        clause = clause[cut[-1].end():]
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", clause)
    while words and words[-1].lower() in _VERBS:
        words.pop()
    while words and words[0].lower() in _VERBS | STOP:
        words.pop(0)
    return " ".join(words[-7:])


def quantities(sentence: str) -> list[Quantity]:
    """Every quantity in a sentence, in order; "from X to Y" becomes one quantity Y with previous X."""
    found: list[Quantity] = []
    floor = 0
    for m in _QTY.finditer(sentence):
        num = m.group("num")
        if _skip(sentence, m):
            continue
        value = float(num.replace(",", ""))
        cur = _CURRENCY.get((m.group("cur") or "").strip().lower(), "")
        scale = _SCALE.get((m.group("scale") or "").strip().lower(), "")
        if m.group("pct"):
            unit, end = ("pp" if "point" in m.group("pct").lower() or m.group("pct").strip().lower() == "pp"
                         else "%"), m.end()
        else:
            noun, end = ("", m.end()) if cur else _unit_after(sentence, m.end())
            unit = " ".join(x for x in (cur, scale, noun) if x)
            if not cur and scale and not noun:
                unit = scale
        if not unit:
            continue
        measure = _measure(sentence, m.start(), floor)
        between = sentence[found[-1].end:m.start()] if found else ""
        if found and re.fullmatch(r"\s*(?:to|-|–)\s*", between) and found[-1].unit in (unit, unit.split()[0]):
            first = found.pop()
            if re.search(r"\bfrom\s*$", sentence[max(0, first.start - 12):first.start], re.IGNORECASE):
                measure, value_before = first.measure, first.value
                found.append(Quantity(value, unit, measure, first.start, end, previous=value_before))
                floor = end
                continue
            found.append(first)
        if not measure and found:  # "..., up 6.5% on the previous year": the change of the last one
            measure = f"{found[-1].measure} change".strip()
        if not measure:
            measure = unit if unit not in ("%", "pp") and not cur else ""
        found.append(Quantity(value, unit, measure, m.start(), end))
        floor = end
    return found


def unit_from_name(name: str) -> tuple[str, str]:
    """(unit, measure) from a column or key name: 'conversion_rate_pct' -> ('%', 'conversion rate')."""
    words = [w for w in re.split(r"[\s_\-.()\[\]]+", name.strip()) if w]
    lower = [w.lower() for w in words]
    suffixes = {"pct": "%", "percent": "%", "%": "%", "usd": "$", "eur": "€", "gbp": "£", "hours": "hours",
                "hrs": "hours", "h": "hours", "ms": "ms", "seconds": "s", "secs": "s", "sec": "s", "s": "s",
                "days": "days", "minutes": "min", "mins": "min", "min": "min", "kg": "kg", "km": "km",
                "mb": "MB", "gb": "GB", "count": "count"}
    if lower and lower[-1] in suffixes:
        return suffixes[lower[-1]], " ".join(words[:-1]) or name
    return "", " ".join(words) or name


_SCALE_FACTOR = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}


def scale_factor(word: str) -> float:
    """What a scale word multiplies by: "billion" and "bn" 1e9, "k" 1e3; anything else 1."""
    return _SCALE_FACTOR.get(_SCALE.get(word.strip().lower(), ""), 1.0)


@dataclass
class Stated:
    """A number as a sentence states it: "4.2 billion" is value 4.2e9 shown to a step of 1e8."""
    text: str
    value: float        # scaled: "4.2 billion" -> 4_200_000_000
    raw: float          # as written: 4.2
    step: float         # the precision shown, scaled: "4.2 billion" -> 1e8, "6.5 %" -> 0.1
    scaled: bool        # a scale word (thousand, million, bn...) multiplied it
    percent: bool
    start: int
    end: int


def stated_numbers(sentence: str) -> list[Stated]:
    """Every number a sentence states as an amount, with or without a unit: what a citation check
    compares with its source. Ids, versions, dates and years are left out by the same rules that
    keep them out of `quantities`, so the check and the extractor agree on what a number is.
    A single-letter scale ("5m", "3k") only counts after a currency sign: alone it may be a unit."""
    found = []
    for m in _QTY.finditer(sentence):
        if _skip(sentence, m) or re.match(r"(?:st|nd|rd|th)\b", sentence[m.end("num"):], re.IGNORECASE):
            continue  # "1st", "3rd": a position, not an amount
        num = m.group("num")
        raw = float(num.replace(",", ""))
        decimals = len(num.split(".", 1)[1]) if "." in num else 0
        word = (m.group("scale") or "").strip()
        factor = 1.0 if len(word) == 1 and not m.group("cur") else scale_factor(word)
        end = m.end() if factor != 1.0 or m.group("pct") else m.end("num")
        found.append(Stated(sentence[m.start():end].strip(), raw * factor, raw, 10.0 ** -decimals * factor,
                            factor != 1.0, bool(m.group("pct")), m.start(), end))
    return found
