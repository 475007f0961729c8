"""The citation check: every sentence a model writes with a number or a citation, held to its source.

The app promises that figures come from sources and tools, never from a model's imagination, and a
worker's `[source: notes.md:L3]` is only worth something if line 3 says what the sentence says. So
after each draft, each sentence with a number or a citation is checked: a cited file line
(`[source: FILE:Lnn]`, `[source: FILE:Lnn-Lmm]`) or web passage (`[qN#M]`) must exist and contain
the sentence's numbers (4.2 billion = 4,200,000,000; 6.5 % = 6.5 percent; rounding to the precision
the sentence shows is allowed) and its quoted words. Where the workflow computes its figures with
tools (`claims: figures`), an uncited number must equal one of the tools' figures at the precision
shown; where it draws on sources (`claims: sources`), a number with no citation is "uncited".

Pure: text and evidence in, verdicts, marked text and feedback out (`utils/run/claim_evidence.py`
gathers the evidence from a run), so every rule is tested without a model.
"""
from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from typing import Callable

from utils.tools.quantities import Stated, scale_factor, stated_numbers
from utils.tools.web.research import quote_safe

MARKER = "**[unverified]**"
SUPPORTED, UNSUPPORTED, UNCITED = "supported", "unsupported", "uncited"
COUNTS = ("sentences", "checked", "supported", "unsupported", "uncited", "revised")
SYNTAX = "cite a file line as [source: FILE:Lnn] (or FILE:Lnn-Lmm) and a web passage by its key, e.g. [q1#2]"

_BRACKET = re.compile(r"\[(?!\^)([^\[\]\n]{1,300})\](?!\()")
POINTER = re.compile(r"^\s*(?P<file>[^\s:;,\[\]()]+\.[A-Za-z0-9]{1,8}):(?:L(?P<a>\d+)(?:\s*[-–]\s*L?(?P<b>\d+))?)?"
                      r"(?P<rest>.*)$")
_WEB_KEY = re.compile(r"^[A-Za-z0-9_.-]+#\d+$")
_HIDE = re.compile(r"`[^`\n]*`|\[\^[^\]\n]*\]|\]\([^)\n]*\)|https?://\S+|<[^>\n]*>")
_QUOTE = re.compile(r"\"([^\"\n]{2,200})\"|“([^”\n]{2,200})”")
# A minus sign: "-" or U+2212 right before a number (or its currency sign), not after a word, a digit or
# a dot, so "2020-21", "COVID-19" and "L3-L5" keep their hyphens.
_SIGN = re.compile(r"(?<![\w.])[-\u2212](?=[$€£]?\.?\d)")
_EVIDENCE_NUM = re.compile(r"(?:(?<![\w.])([-\u2212])[$€£]?)?"
                           r"(?<![\d.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
                           r"(\s?(?:thousand|million|billion|trillion|bn|tn)\b|[kKmMbB]\b)?")
# Words that state a fall: "fell by 3 %" stays 3, and may stand for a computed change of -3.
_DOWN = re.compile(r"\b(?:fell|fall|falls|falling|dropped|drops?|declined?|declines|decreased?|decreases|down|"
                   r"lower|lost|shrank|shrunk|negative|negatively|minus)\b(?:\W+\w+){0,3}\W*$", re.IGNORECASE)
_SKIP_LINE = re.compile(r"^\s*(?:#|\[\^[^\]]*\]:|!\[|<!--|\|?\s*:?-{3,}|[-*_]{3,}\s*$)")
_PREFIX = re.compile(r"^\s*(?:>\s*)*(?:[-*+]\s+|\d+[.)]\s+)?")
_BOUNDARY = re.compile(r"(?<=[.!?])[\"”')\]*_]*\s+(?=[\[(\"“'*_]*[A-Z0-9])")


@dataclass
class Sentence:
    start: int
    end: int
    text: str


@dataclass
class Source:
    """What one citation points at: its words and the numbers in them (fact values included)."""
    name: str
    text: str
    numbers: list[tuple[float, bool]] = field(default_factory=list)  # (value, carried a scale word)
    quotable: bool = True             # its text may be quoted in feedback and footnotes (files, not web pages)


@dataclass
class Verdict:
    sentence: Sentence
    status: str                       # supported, unsupported or uncited
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading a draft

def split_sentences(md: str) -> list[Sentence]:
    """The sentences of a Markdown draft with their places in it. Headings, code blocks, footnotes and
    rules are not sentences; a table row is one; a citation standing after a full stop belongs to the
    sentence before it."""
    out: list[Sentence] = []
    fenced, pos = False, 0
    for line in md.splitlines(keepends=True):
        start, pos = pos, pos + len(line)
        body = line.rstrip("\r\n")
        if body.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or not body.strip() or _SKIP_LINE.match(body):
            continue
        if body.lstrip().startswith("|"):
            out.append(Sentence(start, start + len(body), body))
            continue
        lead = _PREFIX.match(body).end()
        cuts = [lead] + [m.end() for m in _BOUNDARY.finditer(body, lead)] + [len(body)]
        for a, b in zip(cuts, cuts[1:]):
            piece = body[a:b].rstrip()
            if not piece.strip():
                continue
            if out and out[-1].end >= start and not re.sub(r"[\s.,;:!?]", "", _BRACKET.sub("", piece)):
                prev = out[-1]  # "... 6.5 %. [source: notes.md:L3]"
                out[-1] = Sentence(prev.start, start + a + len(piece), md[prev.start:start + a + len(piece)])
                continue
            out.append(Sentence(start + a, start + a + len(piece), piece))
    return out


def citations(text: str) -> list[tuple[str, str]]:
    """The citations in a sentence, as (kind, what): ("file", "notes.md:L3") or ("web", "q1#2").
    `[source: a.md:L3; b.csv:L2-L9]` is two; a bare `[notes.md:L12]` counts too."""
    found = []
    for m in _BRACKET.finditer(text):
        body = m.group(1).strip()
        tagged = body.lower().startswith("source:")
        if tagged:
            body = body[len("source:"):]
        parts = [p.strip() for p in re.split(r"[;,]\s*(?=[^\s;,]+(?:\.[A-Za-z0-9]{1,8}:|#\d))", body) if p.strip()]
        if parts and all(_WEB_KEY.match(p) for p in parts):
            found += [("web", p) for p in parts]
        elif tagged or (parts and all(POINTER.match(p) for p in parts)):
            found += [("file", p) for p in parts]
    return found


def _hidden(text: str) -> str:
    """The sentence with citations, footnote marks, links and code blanked (same length), so that
    `L12` or `q1#2` are never read as the sentence's numbers."""
    text = _BRACKET.sub(lambda m: " " * len(m.group(0)), text)
    return _HIDE.sub(lambda m: " " * len(m.group(0)), text)


def sentence_numbers(text: str) -> list[Stated]:
    """The numbers a sentence claims, signed: "-0.42" and "(−0.42)" are negative, so they are not
    supported by a source's 0.42 (nor 0.42 by -0.42). Ids, enumerations ("Step 7", "Claim 7"),
    versions and dates are left out by the extractor's rules (`stated_numbers`)."""
    hidden = _hidden(text)
    signs = {m.start() for m in _SIGN.finditer(hidden)}
    found = stated_numbers(_SIGN.sub(" ", hidden))  # same length: positions still point into `text`
    return [replace(n, text=text[n.start - 1:n.end].strip(), value=-n.value, raw=-n.raw)
            if n.start - 1 in signs else n for n in found]


def _readings(n: Stated, sentence: str) -> list[Stated]:
    """An unsigned number after words of a fall ("fell by 3 %", "a negative correlation of 0.42")
    may stand for a negative figure too; any other number is only itself."""
    if n.value > 0 and _DOWN.search(sentence[max(0, n.start - 60):n.start]):
        return [n, replace(n, value=-n.value, raw=-n.raw)]
    return [n]


def quotes(text: str) -> list[str]:
    return [a or b for a, b in _QUOTE.findall(_BRACKET.sub(" ", text))]


# ---------------------------------------------------------------- matching numbers

def evidence_numbers(text: str) -> list[tuple[float, bool]]:
    """Every number in source text as (value, scaled): "4.2 billion" -> 4.2e9; "46371K" both ways;
    "-0.42" and "−0.42" negative."""
    out = []
    for m in _EVIDENCE_NUM.finditer(text):
        raw = float(m.group(2).replace(",", "")) * (-1.0 if m.group(1) else 1.0)
        word = (m.group(3) or "").strip()
        factor = scale_factor(word)
        if factor != 1.0 and len(word) > 1:
            out.append((raw * factor, True))
        else:  # bare, or "46371K": a letter may be a scale or a unit, so both
            out.append((raw, False))
            if factor != 1.0:
                out.append((raw * factor, True))
    return out


def _close(e: float, v: float, step: float) -> bool:
    return abs(e - v) <= step / 2 * (1 + 1e-9) + 1e-12


def supports(number: Stated, evidence: list[tuple[float, bool]]) -> bool:
    """True when a source number equals the stated one at the precision shown: 6.47 supports "6.5 %",
    4,213,000,000 supports "4.2 billion", 4.2 million does not. A bare 4.2 supports "4.2 billion" (a
    column in billions), and a share 0.065 supports "6.5 %"."""
    for e, scaled in evidence:
        if _close(e, number.value, number.step):
            return True
        if number.scaled and not scaled and _close(e, number.raw, number.step / (number.value / number.raw or 1)):
            return True
        if number.percent and abs(e) <= 1.5 and _close(e * 100, number.value, number.step):
            return True
    return False


class Figures:
    """The numbers a run's tools computed, sorted, so each stated number is one binary search."""

    def __init__(self, values: list[float]) -> None:
        self.values = sorted(set(values))

    def _any_in(self, lo: float, hi: float) -> bool:
        i = bisect_left(self.values, lo)
        return i < len(self.values) and self.values[i] <= hi

    def has(self, n: Stated) -> bool:
        slack = n.step / 2 * (1 + 1e-9) + 1e-12
        if self._any_in(n.value - slack, n.value + slack):
            return True
        if n.scaled:
            raw_slack = slack / (n.value / n.raw or 1)
            if self._any_in(n.raw - raw_slack, n.raw + raw_slack):
                return True
        return n.percent and self._any_in((n.value - slack) / 100, (n.value + slack) / 100)


def _norm_words(text: str) -> str:
    return " ".join(re.sub(r"[\"“”‘’'`*_]", " ", text).lower().split())


def _snippet(text: str, limit: int = 160) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[:limit - 1].rstrip() + "…"


# ---------------------------------------------------------------- judging a sentence

@dataclass
class Evidence:
    """What a run's drafts may be held to. `resolve` gives a citation's Source or the reason it has
    none; `figures` are the tools' numbers (claims: figures); `sourced` says uncited numbers count."""
    mode: str = "none"                                    # sources, figures or none
    sourced: bool = False
    resolve: Callable[[tuple[str, str]], "Source | str"] | None = None
    figures: Figures = field(default_factory=lambda: Figures([]))


def check_sentence(s: Sentence, ev: Evidence) -> Verdict | None:
    """The verdict on one sentence, or None when it states no number and cites nothing (or states
    numbers where there is nothing to hold them to)."""
    cites = citations(s.text)
    nums = sentence_numbers(s.text)
    if not cites and not nums:
        return None
    if not cites:
        if ev.mode == "figures":
            missing = [n.text for n in nums if not any(ev.figures.has(r) for r in _readings(n, s.text))]
            return Verdict(s, UNSUPPORTED, [f"{_list(missing)} {'matches' if len(missing) == 1 else 'match'} "
                                            "no figure the tools computed"]) if missing else Verdict(s, SUPPORTED)
        if ev.sourced:
            return Verdict(s, UNCITED, [f"{_list([n.text for n in nums])} {'has' if len(nums) == 1 else 'have'} "
                                        "no citation"])
        return None
    problems, sources = [], []
    for cite in cites:
        got = ev.resolve(cite) if ev.resolve else f"{cite[1]} cannot be checked in this run"
        if isinstance(got, str):
            problems.append(got)
        else:
            sources.append(got)
    if sources:
        names = ", ".join(src.name for src in sources)
        # Only a file's words are quoted back: a web page's text stays inside its fenced quotation.
        says = " | ".join(_snippet(quote_safe(src.text), 240 // len(sources)) for src in sources if src.quotable)
        evidence = [n for src in sources for n in src.numbers]
        missing = [n.text for n in nums if not any(supports(r, evidence) for r in _readings(n, s.text))]
        if missing:
            problems.append(f"{_list(missing)} {'is' if len(missing) == 1 else 'are'} not in {names}"
                            + (f", which says: \"{says}\"" if says else ""))
        words = _norm_words(" ".join(src.text for src in sources))
        absent = [q for q in quotes(s.text) if _norm_words(q) not in words]
        if absent:
            problems.append(f"the quoted words {_list(absent, quote=True)} are not in {names}")
    return Verdict(s, UNSUPPORTED, problems) if problems else Verdict(s, SUPPORTED)


def _list(items: list[str], quote: bool = False) -> str:
    shown = [f"\"{x}\"" if quote else x for x in dict.fromkeys(items)]
    return ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else shown[0]


# ---------------------------------------------------------------- a whole draft

@dataclass
class DraftCheck:
    sentences: int
    verdicts: list[Verdict]

    @property
    def failing(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status != SUPPORTED]

    def counts(self, revised: int = 0) -> dict[str, int]:
        by = [v.status for v in self.verdicts]
        return {"sentences": self.sentences, "checked": len(by), "supported": by.count(SUPPORTED),
                "unsupported": by.count(UNSUPPORTED), "uncited": by.count(UNCITED), "revised": revised}


def check_draft(md: str, ev: Evidence) -> DraftCheck:
    sentences = split_sentences(md)
    verdicts = [v for s in sentences if (v := check_sentence(s, ev)) is not None]
    return DraftCheck(len(sentences), verdicts)


def feedback(failing: list[Verdict]) -> str:
    """What a worker is told when its draft goes back: each failing sentence and its exact problem."""
    lines = ["The citation check found these sentences unsupported by what they cite. Fix each one: "
             "state the number exactly as the cited line or passage gives it, cite the line or passage "
             f"that does say it, or remove the claim. Keep everything else. Syntax: {SYNTAX}."]
    for i, v in enumerate(failing, 1):
        lines.append(f"{i}. \"{_snippet(v.sentence.text, 300)}\" - {'; '.join(v.problems)}.")
    return "\n".join(lines)


def mark(md: str, failing: list[Verdict], label: str) -> str:
    """The draft with each failing sentence marked unverified, the reason in a footnote at its end.
    `label` (the task id) keeps footnote names unique across the document."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "-", label)
    out, notes = md, []
    for i, v in sorted(enumerate(failing, 1), key=lambda x: -x[1].sentence.end):
        out = out[:v.sentence.end] + f" {MARKER}[^unverified-{tag}-{i}]" + out[v.sentence.end:]
    for i, v in enumerate(failing, 1):
        why = "no citation" if v.status == UNCITED else "the citation check failed"
        notes.append(f"[^unverified-{tag}-{i}]: Unverified ({why}): {'; '.join(v.problems)}.")
    return out.rstrip() + "\n\n" + "\n".join(notes) + "\n" if notes else md


def digest(text: str) -> str:
    """Which output a check record belongs to: a later draft is checked again."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def totals(records: list[dict]) -> dict[str, int]:
    """`run.json`'s `verification`: the task records summed."""
    return {k: sum(int(r.get(k) or 0) for r in records) for k in COUNTS}


def verify(output: str, ev: Evidence, task_id: str, *, may_send_back: bool, revised: int = 0) -> dict:
    """One draft's check: {"feedback", "record"} when its failing sentences go back to the worker,
    else {"output" (failing sentences marked), "record"} with the counts and each problem."""
    check = check_draft(output, ev)
    failing = check.failing
    if failing and may_send_back:
        return {"feedback": feedback(failing), "record": {**check.counts(), "sent_back": len(failing)}}
    marked = mark(output, failing, task_id)
    problems = [{"sentence": _snippet(v.sentence.text, 300), "status": v.status, "problems": v.problems}
                for v in failing]
    return {"output": marked, "record": {**check.counts(revised), "problems": problems, "digest": digest(marked)}}
