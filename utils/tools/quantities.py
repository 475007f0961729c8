"""Quantities in prose: a number with a real unit and what it measures, or nothing.

A report's facts must be claims a reader can check ("churn fell to 3.5 %", "100GB of RSS"), not
every digit in a file. Versions (grep 3.4, 2.5.3), years and dates, Unicode code points (U+108000),
bug and issue numbers, exit statuses and modes, `N^2`, machine and dataset names ("Sun 4",
"the 20 newsgroups dataset"), timestamps and long ID-like digit strings are numbers but not
quantities, and a number only counts when a unit follows it: %, a currency, a size, a duration, a
speed-up ("10 times faster") or a counted noun ("80,000 lines", "40 distinct subjects"). A word
next to a number is a unit only when it is one: never a preposition, a verb, a month or a name.

Comparisons keep their structure: "rose to 87% from 81%" is 87 % with earlier 81 %, "fell from
$310 to $285" is 285 with earlier 310, "$48,000 of a $60,000 allocation" is 48,000 with total
60,000, and "600 to 3,000 people" is two figures in people. Everything is one left-to-right regex
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
        "after", "before", "during", "out", "off", "if", "but", "so", "then", "also", "not", "no", "all",
        "only", "just", "now", "thus", "always", "perhaps", "unless", "towards", "across",
        "whereas", "besides", "yes", "plus", "minus", "various", "previous", "us", "has", "does", "this"}
_VERSION_WORDS = {"version", "versions", "v", "release", "releases", "python", "node", "java", "ubuntu", "debian",
                  "windows", "macos", "ios", "android", "php", "ruby", "go", "rust", "postgres", "postgresql",
                  "mysql", "api", "http", "tls", "ssl", "ipv", "gen", "iso", "rfc", "posix", "utc", "gmt"}
_ID_WORDS = {"id", "ids", "no", "number", "ticket", "issue", "pr", "invoice", "ref", "reference", "item", "step",
             "line", "page", "pages", "section", "chapter", "figure", "table", "room", "row", "column", "port",
             "ports", "phase", "level", "tier", "grade", "rank", "day", "week", "q", "quarter", "h", "status",
             "code", "exit", "mode", "signal", "bug", "pid", "uid", "gid", "errno", "option", "flag",
             # enumerations: "Claim 7", "Task 3", "Stage 2" name an item, they state no amount
             "claim", "claims", "task", "tasks", "stage", "appendix", "exhibit", "slide", "lesson", "milestone",
             "sprint", "episode", "hypothesis", "scenario", "footnote", "paragraph", "article", "volume", "vol"}
_VERBS = {"is", "was", "are", "were", "be", "been", "reached", "reach", "reaches", "fell", "fall", "falls",
          "rose", "rise", "rises", "grew", "grow", "grows", "increased", "decreased", "dropped", "declined",
          "climbed", "jumped", "stood", "stands", "totalled", "totaled", "totals", "hit", "has", "had", "have",
          "account", "accounts", "accounted", "estimated", "expected", "expect", "expects", "spend", "spent",
          "spends", "cost", "costs", "averaged", "take", "takes", "took", "needs", "needed", "of", "at", "to",
          "for", "by", "from", "about", "around", "nearly", "almost", "roughly", "approximately", "some", "up",
          "down", "slow", "slowed", "and", "or", "a", "an", "the", "than", "over", "only", "just", "another",
          "further", "now", "typically", "could", "would", "will", "can", "may", "might", "use", "used", "uses",
          "runs", "run", "makes", "make", "gives", "give", "means", "comes", "goes", "seems", "becomes",
          "remains", "contains", "includes", "requires", "allows", "works", "shows", "returns", "reports",
          "outputs", "prints", "fails", "exits", "copies", "counts", "supports", "handles", "prompts",
          "removes", "clears", "preserves", "sets", "gets", "lets", "less", "more", "least", "most"}
_CHANGE_VERBS = {"rose", "fell", "grew", "increased", "decreased", "dropped", "declined", "climbed", "jumped",
                 "up", "down", "slowed"}
# Units a number can carry, written after it (attached or after one space). Case matters for sizes.
_SIZE = {"B", "KB", "kB", "KiB", "MB", "MiB", "GB", "GiB", "TB", "TiB", "PB", "PiB", "bytes", "byte", "bits",
         "Kbps", "Mbps", "Gbps", "kbps", "mbps", "gbps"}
_TIME = {"ns": "ns", "µs": "µs", "us": "µs", "ms": "ms", "s": "s", "sec": "s", "secs": "s", "second": "seconds",
         "seconds": "seconds", "min": "min", "mins": "min", "minute": "minutes", "minutes": "minutes",
         "h": "h", "hr": "h", "hrs": "hours", "hour": "hours", "hours": "hours", "day": "days", "days": "days",
         "week": "weeks", "weeks": "weeks", "month": "months", "months": "months", "year": "years",
         "years": "years"}
_PHYSICAL = {"km", "kg", "mg", "lb", "lbs", "mph", "km/h", "°C", "°F", "W", "kW", "MW", "GW", "kWh", "MWh",
             "GWh", "TWh", "Hz", "kHz", "MHz", "GHz", "px", "pixels", "dpi", "mm", "cm", "m", "m²", "ha", "t", "tonnes",
             "tons", "litres", "liters", "calories", "kcal"}
_KNOWN = {u: u for u in _SIZE | _PHYSICAL} | _TIME
_HYPHEN_UNITS = {"dimensional": "dimensions", "fold": "times"}
_IRREGULAR = {"people", "staff", "personnel", "children", "men", "women", "cattle", "sheep", "fish", "deer",
              "feet", "teeth", "mice", "geese", "data"}
_OBJECTS = {"the", "a", "an", "its", "their", "them", "his", "her"}
_NAME_NOUNS = {"dataset", "data", "set", "corpus", "benchmark", "challenge", "database", "text", "collection",
               "competition", "problem"}
_COMPARATIVE = re.compile(r"\s+(faster|slower|better|worse|larger|smaller|more|fewer|less|higher|lower|"
                          r"bigger|cheaper|longer|shorter)\b", re.IGNORECASE)
_CURRENCY = {"$": "$", "€": "€", "£": "£", "usd": "$", "us$": "$", "eur": "€", "gbp": "£"}
_SCALE = {"k": "thousand", "thousand": "thousand", "m": "million", "mn": "million", "million": "million",
          "bn": "billion", "b": "billion", "billion": "billion", "trillion": "trillion", "tn": "trillion"}
_QTY = re.compile(
    r"(?P<cur>(?:US\$|USD|EUR|GBP)\s?|[$€£])?"
    r"(?<![\w.,:/#+^=%*-])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?![\d.,]*[.,]\d)(?![\w/:-]*\d)(?!\^|\*\*)"
    r"(?P<pct>\s?(?:%|percent\b|per\s?cent\b|percentage points?\b|pp\b))?"
    r"(?P<scale>\s?(?:bn\b|tn\b|thousand\b|million\b|billion\b|trillion\b|[kKM]\b(?![$€£])))?",
    re.IGNORECASE)
_WORD = re.compile(r"[ \t]?([A-Za-zµ°][A-Za-z/²-]*)")
_SPACED_WORD = re.compile(r" ([A-Za-z][A-Za-z-]*)")
_METRIC = re.compile(r"\b(F-?1?[- ]?score|F1|score|accuracy|AUC|R²|R2|correlation|coefficient|ratio)"
                     r"(?:\s+(?:of|is|was|=|:))?\s*$", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[,;:()\[\]—–]|\bwhile\b|\bwhereas\b|\bbut\b")
_QUOTED = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”|(?<!\w)'[^'\n]*'(?!\w)|`[^`'\n]*[`']")
_SCOPE = re.compile(
    r"\b(?:(?:in|during|for|by|through|until|since|as of|over|at the end of)\s+(?:the\s+)?"
    r"(?:(?:Q[1-4]|H[12]|FY|(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r"))\s*)?(?:19|20)\d\d\b"
    r"|(?:in|over|during)\s+(?:the\s+)?(?:(?:last|past|previous|next|first|second)\s+)?(?:\w+\s+)?"
    r"(?:years?|quarters?|months?|weeks?|days?)\b"
    r"|(?:a|per)\s+(?:year|month|week|day|quarter)\b)", re.IGNORECASE)


@dataclass
class Quantity:
    value: float
    unit: str
    what: str
    start: int
    end: int
    earlier: float | None = None   # "fell from $310 to $285": earlier 310, value 285
    total: float | None = None     # "$48,000 of a $60,000 allocation": total 60,000
    scope: str = ""                # "in 2025", "a month", "over the last two quarters"


def _prev_word(text: str, at: int) -> str:
    m = re.search(r"([A-Za-z]+)[^\w\n]{0,2}$", text[max(0, at - 30):at])
    return m.group(1) if m else ""


def _is_plural_noun(word: str) -> bool:
    w = word.lower()
    if w in _IRREGULAR:
        return True
    return (len(w) >= 4 and w.endswith("s") and not w.endswith(("ss", "us", "is", "ous")) and w not in STOP
            and w not in _VERBS and w not in MONTHS and word[:1].islower())


def _known_unit(text: str, end: int) -> tuple[str, int]:
    """A unit from the fixed table right after the number ("100GB", "3 minutes", "30000-dimensional")."""
    hy = re.match(r"-(dimensional|fold)\b", text[end:])
    if hy:
        return _HYPHEN_UNITS[hy.group(1)], end + hy.end()
    m = _WORD.match(text, end)
    if not m:
        return "", end
    word = m.group(1)
    if word in _KNOWN and not (len(word) <= 2 and m.group(0).startswith(" ") and word in ("B", "s", "h", "t", "W", "m")):
        value = re.search(r"[\d.,]+$", text[:end].rstrip())
        attributive = (word in _TIME and not word.endswith("s") and len(word) > 3 and value
                       and value.group(0) not in ("1", "1.0") and _SPACED_WORD.match(text, m.end()))
        if attributive:
            return "", end  # "the 24 hour time format": a kind of format, not a duration
        return _KNOWN[word], m.end()
    if word.lower() == "times" or (word in ("x", "×") and not m.group(0).startswith(" ")
                                   and not re.search(r"(?<![\d.])0+$", text[:end])):
        return "times", m.end()  # "10 times", "10x faster"; never a hex prefix "0x"
    return "", end


def _counted_noun(text: str, end: int) -> tuple[str, int]:
    """The counted noun after a number, past at most two adjectives ("40 distinct subjects",
    "159 non-zero components"), or '' when the words are not a plural noun ("Sun 4 running")."""
    pos, words = end, 0
    while words < 3:
        m = _SPACED_WORD.match(text, pos)  # "20news" is a name: a counted noun stands apart
        if not m:
            return "", end
        word = m.group(1)
        if word.lower() in ("bit", "byte"):
            return "", end  # "32 bit systems", "8 bit characters": a kind, not a count
        if _is_plural_noun(word):
            after = _SPACED_WORD.match(text, m.end())
            if after and after.group(1).lower() in _OBJECTS:
                return "", end  # "setting it to 0 causes the file ...": a verb, not a counted noun
            if after and after.group(1) in _NAME_NOUNS:
                return "", end  # "the 20 newsgroups dataset": a name, not a count
            if after and _is_plural_noun(after.group(1)):
                return f"{word.lower()} {after.group(1)}", after.end()  # "18000 newsgroups posts"
            return word.lower(), m.end()
        low = word.lower()
        if low in STOP or low in _VERBS or low in MONTHS or not word[:1].islower() or low.endswith("ly"):
            return "", end
        pos, words = m.end(), words + 1
    return "", end


def _is_date_or_time(text: str, m: re.Match, num: str) -> bool:
    before, after = text[max(0, m.start("num") - 1):m.start("num")], text[m.end("num"):m.end("num") + 1]
    nxt_digit = text[m.end("num") + 1:m.end("num") + 2].isdigit()
    if (before and before in "-/.") or (after and after in ("-", "/", ":") and nxt_digit):
        return True  # 2025-05-01, 05/01/2025, 10:30
    nxt = _WORD.match(text, m.end("num"))
    if _prev_word(text, m.start("num")).lower() in MONTHS or (nxt and nxt.group(1).lower() in MONTHS):
        return True  # "May 12", "12 May 2025"
    return re.fullmatch(r"(1[89]|20|21)\d\d", num) is not None  # a year


def _skip(text: str, m: re.Match, quoted: list[tuple[int, int]] | tuple = ()) -> bool:
    """Numbers that are never quantities, whatever follows them: ids, versions, code points, dates,
    years, timestamps, terms of expressions, and (given `quoted` spans) quoted commands and output.
    The citation check (`stated_numbers`) uses the same rules, so both agree on what a number is."""
    num, at = m.group("num"), m.start("num")
    prev = _prev_word(text, m.start())
    if any(a <= at < b for a, b in quoted):
        return True  # a command example or quoted output: 'dd count=100KiB', "3 bytes copied"
    if re.search(r"(?:\*\*|\^)\w+\s*[-+*/]\s*$", text[max(0, at - 20):at]):
        return True  # "2**66 - 1 bytes": a term of an expression
    if m.group("cur") and num == "0":
        return True  # "$0": a shell parameter; no sum of money is written so
    if re.fullmatch(r"\d{9,}(?:\.\d+)?", num):
        return True  # a timestamp, a phone or account number, an ID
    if text[max(0, m.start() - 1):m.start()] == "#" or prev.lower() in _VERSION_WORDS | _ID_WORDS:
        return True
    if "." in num and prev and prev.lower() not in STOP | _VERBS and not (m.group("pct") or m.group("cur")
                                                                           or m.group("scale")):
        return True  # "grep 3.4", "SunOS 4.1": a name and its version
    return (not (m.group("cur") or m.group("pct"))) and _is_date_or_time(text, m, num)


def _measure(text: str, start: int, floor: int) -> str:
    """What a quantity measures: the words of its clause before it, minus verbs and fillers."""
    clause = text[floor:start]
    cut = list(_CLAUSE_BREAK.finditer(clause))
    if cut:
        clause = clause[cut[-1].end():]
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", clause)
    change = ""
    while words and words[-1].lower() in _VERBS:
        last = words.pop().lower()
        if last in _CHANGE_VERBS and not change and not clause.rstrip().lower().endswith(" to"):
            change = last  # "prices rose 18%": a change, said so ("prices rose")
    while words and words[0].lower() in _VERBS | STOP:
        words.pop(0)
    return " ".join(words[-7:] + ([change] if change and words else []))


def _unit(text: str, m: re.Match) -> tuple[str, int]:
    cur = _CURRENCY.get((m.group("cur") or "").strip().lower(), "")
    scale = _SCALE.get((m.group("scale") or "").strip().lower(), "")
    if m.group("pct"):
        pct = m.group("pct").strip().lower()
        return ("pp" if "point" in pct or pct == "pp" else "%"), m.end()
    if cur:
        return " ".join(x for x in (cur, scale) if x), m.end()
    if len((m.group("scale") or "").strip()) == 1:
        scale = ""  # "30m", "46371K": without a currency a letter is a unit or nothing, never a scale
    end = m.end() if scale else m.end("num")
    unit, end = _known_unit(text, end)
    if not unit:
        unit, end = _counted_noun(text, end)
    metric = _METRIC.search(text[max(0, m.start() - 40):m.start()]) if not unit else None
    if metric:  # "an F-score of 0.88": a score is its own unit
        return metric.group(1), end
    if not unit:
        return "", end  # "46371K", "4 million": a magnitude with nothing measured is not a fact
    return " ".join(x for x in (scale, unit) if x), end


def quantities(sentence: str) -> list[Quantity]:
    """Every quantity in a sentence, in order, with its comparison structure kept."""
    found: list[Quantity] = []
    floor = 0
    quoted = [(q.start(), q.end()) for q in _QUOTED.finditer(sentence)]
    scope_m = _SCOPE.search(sentence)
    scope = re.sub(r"\s+", " ", scope_m.group(0)) if scope_m else ""
    pending: re.Match | None = None   # "600 to 3,000 people": 600 waits for the unit of 3,000
    for m in _QTY.finditer(sentence):
        if _skip(sentence, m, quoted):
            pending = None
            continue
        value = float(m.group("num").replace(",", ""))
        unit, end = _unit(sentence, m)
        if not unit:
            nxt = re.match(r"\s*(?:to|-|–|and)\s*(?=[$€£]?\d)", sentence[m.end():])
            pending = m if nxt else None
            continue
        measure = _measure(sentence, m.start(), floor)
        comp = _COMPARATIVE.match(sentence, end) if unit == "times" else None
        if comp:
            measure, end = f"{measure} ({comp.group(1).lower()})".strip(), comp.end()
        q = Quantity(value, unit, measure, m.start(), end, scope=scope)
        if pending is not None and re.fullmatch(r"\s*(?:to|-|–|and)\s*", sentence[pending.end():m.start()]):
            first = float(pending.group("num").replace(",", ""))
            if re.search(r"\bfrom\s*$", sentence[max(0, pending.start() - 8):pending.start()], re.IGNORECASE):
                q.earlier, q.start = first, pending.start()   # "from 42 to 17 min"
            else:
                found.append(Quantity(first, unit, measure, pending.start(), pending.end(), scope=scope))
        pending = None
        if found and _structure(sentence, found[-1], q):
            floor = end
            continue
        if not q.what and found:  # "..., up 6.5% on the previous year": the change of the last one
            q.what = f"{found[-1].what} change".strip()
        if not q.what:
            q.what = unit if unit not in ("%", "pp") and unit[:1] not in "$€£" else ""
        found.append(q)
        floor = end
    return found


def _structure(text: str, last: Quantity, q: Quantity) -> bool:
    """Merge q into the quantity before it when the words between make a comparison; True if merged."""
    between = text[last.end:q.start]
    same = last.unit == q.unit or last.unit.split()[0] == q.unit.split()[0]
    if not same:
        return False
    if re.fullmatch(r"\s*(?:to|-|–)\s*", between) and re.search(r"\bfrom\s*$", text[max(0, last.start - 8):last.start],
                                                                   re.IGNORECASE):
        last.earlier, last.value, last.end = last.value, q.value, q.end     # from X to Y
        return True
    if re.fullmatch(r"\s*(?:of\s+[A-Za-z][\w\s-]{0,40}?)?\s*,?\s*(?:up|down)?\s*from\s+", between, re.IGNORECASE):
        last.earlier, last.end = q.value, q.end                             # to Y from X
        return True
    if re.fullmatch(r"\s*(?:out\s+)?of\s+(?:a|an|the|its|their|our|his|her)?\s*(?:total\s+|budget(?:ed)?\s+)?",
                    between, re.IGNORECASE):
        last.total, last.end = q.value, q.end                               # X of a Y allocation
        return True
    return False


def unit_from_name(name: str) -> tuple[str, str]:
    """(unit, measure) from a column or key name: 'conversion_rate_pct' -> ('%', 'conversion rate').
    A name with no unit suffix gives no unit: "age" and "average_order_value" are what is measured,
    never the unit it is measured in; a plural count ("orders", "sessions") is its own unit."""
    words = [w for w in re.split(r"[\s_\-.()\[\]]+", name.strip()) if w]
    lower = [w.lower() for w in words]
    suffixes = {"pct": "%", "percent": "%", "%": "%", "usd": "$", "eur": "€", "gbp": "£", "hours": "hours",
                "hrs": "hours", "h": "hours", "ms": "ms", "seconds": "s", "secs": "s", "sec": "s", "s": "s",
                "days": "days", "minutes": "min", "mins": "min", "min": "min", "kg": "kg", "km": "km",
                "mb": "MB", "gb": "GB", "count": "count"}
    if lower and lower[-1] in suffixes:
        return suffixes[lower[-1]], " ".join(words[:-1]) or name
    w = lower[0] if len(words) == 1 else ""
    if w in _IRREGULAR or (len(w) >= 4 and w.endswith("s") and not w.endswith(("ss", "us", "is", "ous"))):
        return words[0].lower(), words[0].lower()
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
