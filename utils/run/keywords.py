"""Keyword routing and topic phrases: the offline side of choosing and naming a workflow's work.

Keywords match whole words (a keyword also matches its plain inflections: plan, plans, planned,
planning; migrate, migration), never inside another word ("plan" is not in "airplane"). A keyword
that is the workflow's own name counts double ("Write a report on X" is a report even though
"write" is a blog keyword). No match and ties are reported as such, so nobody reads "keyword match"
where nothing matched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_SUFFIX = r"(?:s|es|ed|d|ing|er|ers|ion|ions|ation|ations|y|ies|ise|ize|ised|ized|ising|izing|ment|ments)?"
_LEAD = re.compile(r"^(?:please\s+)?(?:(?:write|create|make|draft|produce|prepare|give|build|do|run|plan|research|"
                   r"analy[sz]e|explain|summari[sz]e|tell|show)\s+(?:me\s+)?)?(?:(?:a|an|the|some)\s+)?"
                   r"(?:(?:short|brief|practical|detailed|full|quick|simple|complete)\s+)*"
                   r"(?:(?:blog\s+post|post|article|guide|tutorial|report|plan|project\s+plan|analysis|overview|"
                   r"summary|introduction|brief)\s+)?(?:(?:about|on|of|to|for|into)\s+)?", re.IGNORECASE)


@dataclass
class KeywordRoute:
    name: str                      # the chosen workflow
    reason: str                    # shown to the user: what matched, a tie, or nothing
    scores: dict[str, int] = field(default_factory=dict)
    matched: dict[str, list[str]] = field(default_factory=dict)


def keyword_pattern(keyword: str) -> re.Pattern:
    """A keyword as a whole word or phrase with its plain inflections ('plan' -> planning, plans)."""
    words = keyword.lower().split()
    last = re.escape(words[-1])
    stem = re.escape(words[-1][:-1]) if words[-1].endswith("e") and len(words[-1]) > 3 else None
    tail = f"(?:{last}(?:{re.escape(words[-1][-1])})?{_SUFFIX}" + (f"|{stem}{_SUFFIX}" if stem else "") + ")"
    head = r"\s+".join(re.escape(w) for w in words[:-1])
    return re.compile(r"\b" + (head + r"\s+" if head else "") + tail + r"\b", re.IGNORECASE)


def keyword_route(topic: str, keywords: dict[str, list[str]], default: str = "blog") -> KeywordRoute:
    """Score each workflow by the whole-word keywords in `topic` (its own name counts 2)."""
    scores: dict[str, int] = {}
    matched: dict[str, list[str]] = {}
    for name, words in keywords.items():
        hits = [k for k in words if keyword_pattern(k).search(topic)]
        if hits:
            matched[name] = hits
            scores[name] = sum(2 if k.lower() == name else 1 for k in hits)
    if not scores:
        return KeywordRoute(default, f"no keyword matched; {default} is the default", scores, matched)
    best = max(scores.values())
    top = sorted(n for n, s in scores.items() if s == best)
    name = default if default in top else top[0]
    said = "; ".join(f"{n}: {', '.join(matched[n])}" for n in top)
    if len(top) > 1:
        return KeywordRoute(name, f"keyword tie between {', '.join(top)} ({said}); chose {name}", scores, matched)
    return KeywordRoute(name, f"keyword match: {', '.join(matched[name])}", scores, matched)


def topic_phrase(goal: str, limit: int = 60) -> str:
    """The subject of a request, for titles: 'Tell me about cats' -> 'cats'."""
    flat = " ".join(str(goal).split()).rstrip(".!?")
    phrase = _LEAD.sub("", flat, count=1).strip() or flat
    if len(phrase) > limit:
        phrase = phrase[:limit].rsplit(" ", 1)[0] + "…"
    return phrase


def fill_topic(text: str, goal: str) -> str:
    """`{topic}` / `{Topic}` in an offline plan's titles and instructions, filled from the goal."""
    if "{topic}" not in text.lower():
        return text
    phrase = topic_phrase(goal)
    return text.replace("{Topic}", phrase[:1].upper() + phrase[1:]).replace("{topic}", phrase)
