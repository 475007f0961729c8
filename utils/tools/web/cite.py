"""Web citations in the finished document: number the keys, list the pages, say what it drew on.

Research tasks run in parallel, so each numbers its pages under its own task id (`[q1#2]`); once the
document is assembled, every page that was used gets one number in plan order, each key in a bracket
becomes that number (`[3]`), and the Sources section lists exactly those pages: title, URL, date
accessed. Pure text in, text out, so it is tested without a model.
"""
from __future__ import annotations

import re

from utils.tools.web.research import key_prefix, quote_safe

_BRACKET = re.compile(r"\[([^\[\]\n]{1,200})\]")
_KEY = re.compile(r"[A-Za-z0-9_.-]+#\d+")


def _searches(results: list[dict]) -> list[dict]:
    webs = [(r.get("data") or {}).get("web") for r in results if r.get("state") == "done"]
    return [w for w in webs if isinstance(w, dict) and w.get("enabled")]


def used_pages(results: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Pages whose passages reached the writers (one entry per URL, in plan order), and the source
    number of every key: two questions that found the same page share its number."""
    pages: list[dict] = []
    numbers: dict[str, int] = {}
    by_url: dict[str, int] = {}
    for web in _searches(results):
        for p in web.get("pages", []):
            if not (p.get("used") and p.get("key")):
                continue
            if p["url"] not in by_url:
                pages.append(p)
                by_url[p["url"]] = len(pages)
            numbers[p["key"]] = by_url[p["url"]]
    return pages, numbers


def _renumber(text: str, numbers: dict[str, int], prefixes: set[str], unknown: list[str]) -> str:
    """Keys become source numbers; a key of a research task that no used page has is marked `?` and
    collected in `unknown` (other `x#1` text, say `[C#1]`, is left alone)."""
    def key(k: re.Match[str]) -> str:
        if k.group(0) in numbers:
            return str(numbers[k.group(0)])
        if k.group(0).rsplit("#", 1)[0] not in prefixes:
            return k.group(0)
        unknown.append(k.group(0))
        return f"{k.group(0)}?"
    return _BRACKET.sub(lambda m: f"[{_KEY.sub(key, m.group(1))}]", text)


def _drew_on(web: dict | None, pages: list[dict], results: list[dict], n_files: int) -> str:
    files = f"{n_files} input file{'s' if n_files != 1 else ''}" if n_files else ""
    only = f"Drew on {files} only" if files else "Drew on no input files"
    if not web or not web.get("enabled"):
        why = (web or {}).get("why") or "web research is off"
        return f"{only}; no web research ({why})."
    searches = _searches(results)
    if not searches:
        return f"{only}; web research was on ({web.get('provider')}) but no research task ran."
    files = files or "no input files"
    failed = len({p.get("url") for w in searches for p in w.get("pages", []) if p.get("status") != "ok"})
    return (f"Drew on {files} and {len(pages)} web page{'s' if len(pages) != 1 else ''} from "
            f"{len(searches)} search{'es' if len(searches) != 1 else ''} ({searches[0]['provider'] if searches else 'none'})"
            + (f"; {failed} page{'s' if failed != 1 else ''} could not be used (see run.json)." if failed else "."))


def cite_web(doc: str, results: list[dict], web: dict | None, n_files: int = 0) -> str:
    """The document with web keys numbered, web pages added to Sources and a 'drew on' note.

    `results` are the task results in plan order; `web` the run's web settings (None: the workflow
    has no web research at all, and the document is returned unchanged)."""
    if web is None:
        return doc
    pages, numbers = used_pages(results)
    unknown: list[str] = []
    prefixes = {key_prefix(r.get("id")) for r in results if isinstance((r.get("data") or {}).get("web"), dict)}
    text = _renumber(doc, numbers, prefixes, unknown)
    entries = [f"{i}. {quote_safe(p['title'])}. <{p['url']}> (accessed {p['accessed']})"
               for i, p in enumerate(pages, 1)]
    note = f"> {_drew_on(web, pages, results, n_files)}"
    if unknown:
        note += (f"\n>\n> {len(unknown)} citation{'s' if len(unknown) != 1 else ''} point at no page that was used "
                 f"(marked `?`): {', '.join(dict.fromkeys(unknown))}.")
    lines = text.rstrip("\n").split("\n")
    if "## Sources" in lines:
        at = lines.index("## Sources") + 1
        while at < len(lines) and (not lines[at].strip() or lines[at].startswith("- ")):
            at += 1
        block = (["", "Web pages:", ""] + entries if entries else []) + ["", note, ""]
        lines[at:at] = block
    else:
        lines += ["", "## Sources", ""] + entries + ["", note]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"
