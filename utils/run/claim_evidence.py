"""What a run's drafts are held to: its input files' lines, its tools' facts and figures, the web
passages its researchers quoted. Built once per check from the run's state (`utils/run/claims.py`
judges the sentences), reading only the files the run was given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from utils.errors import OrchError
from utils.run.claims import POINTER, Evidence, Figures, Source, digest, evidence_numbers, verify
from utils.run.plan import Plan
from utils.run.results import TaskState, ids_with, state_of
from utils.tools.table import read_text
from utils.tools.web.cite import used_pages
from utils.tools.web.research import key_prefix

MAX_CITED_LINES = 2000      # a citation of a whole CSV is held to its facts, not to a million rows
MAX_FIGURES = 200_000       # numbers gathered from the tools' data


def tool_figures(data: Any, out: list[float]) -> list[float]:
    """Every number in a tool result's data (nested dicts and lists, numbers in strings too)."""
    stack = [data]
    while stack and len(out) < MAX_FIGURES:
        item = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, (int, float)):
            out.append(float(item))
        elif isinstance(item, str):
            out += [v for v, _ in evidence_numbers(item)]
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return out


class RunSources:
    """Resolves a citation to what it points at, or to the reason it points at nothing."""

    def __init__(self, input_paths: list[str], results: list[dict]) -> None:
        self.files = {Path(p).name: Path(p) for p in input_paths}
        self._lines: dict[str, list[str] | str] = {}
        done = [r for r in results if state_of(r) == TaskState.DONE]
        self.facts = [f for r in done for f in ((r.get("data") or {}).get("facts") or [])
                      if isinstance(f, dict) and isinstance(f.get("pointer"), str)]
        pages, _ = used_pages(done)
        self.pages = {p["key"]: p for p in pages}
        for r in done:  # two questions finding one page: each key names it
            for p in (((r.get("data") or {}).get("web") or {}).get("pages") or []):
                if p.get("used") and p.get("key"):
                    self.pages.setdefault(p["key"], p)
        self.prefixes = {key_prefix(r.get("id")) for r in done if isinstance((r.get("data") or {}).get("web"), dict)}

    def __bool__(self) -> bool:
        return bool(self.files or self.pages)

    def __call__(self, cite: tuple[str, str]) -> Source | str:
        kind, what = cite
        return self._page(what) if kind == "web" else self._file(what)

    def _page(self, key: str) -> Source | str:
        page = self.pages.get(key)
        if page is None:
            known = ", ".join(sorted(self.pages)[:8])
            return (f"{key} is a web passage that was never fetched"
                    + (f" (the passages fetched are {known})" if known else " (no web page was fetched in this run)"))
        text = " ".join([str(page.get("title") or "")] + [str(x) for x in page.get("passages") or []])
        return Source(key, text, evidence_numbers(text), quotable=False)

    def _read(self, name: str) -> list[str] | str:
        if name not in self._lines:
            try:
                self._lines[name] = read_text(self.files[name], "source file").splitlines()
            except OrchError as exc:
                self._lines[name] = f"{name} cannot be read: {exc}"
        return self._lines[name]

    def _file(self, pointer: str) -> Source | str:
        m = POINTER.match(pointer)
        if not m:
            return f"[source: {pointer}] is not a citation this check can read (use [source: FILE:Lnn])"
        name = m.group("file")
        if name not in self.files:
            known = ", ".join(sorted(self.files))
            return f"{name} is not one of the sources" + (f" ({known})" if known else " (no files were given)")
        facts = [f for f in self.facts if _same(f["pointer"], pointer)]
        if m.group("a") is None:
            if not facts:
                return f"[source: {pointer}] names no line of {name} (cite it as {name}:Lnn)"
            text = " ".join(str(f.get("text", "")) for f in facts)
            return Source(pointer.strip(), text, evidence_numbers(text) + [(float(f["value"]), False) for f in facts
                                                                        if _number(f.get("value"))])
        lines = self._read(name)
        if isinstance(lines, str):
            return lines
        a = int(m.group("a"))
        b = int(m.group("b") or a)
        if a < 1 or b > len(lines) or a > b:
            bad = a if a < 1 or a > len(lines) else b
            return f"{name} has no line {bad} (it has {len(lines)} lines)" if a <= b else \
                f"[source: {pointer}] is not a line range"
        facts += [f for f in self.facts if f not in facts and _within(f["pointer"], name, a, b)]
        text = "\n".join(lines[a - 1:min(b, a - 1 + MAX_CITED_LINES)])
        extra = " ".join(t for t in dict.fromkeys(str(f.get("text", "")) for f in facts) if t not in text)
        numbers = evidence_numbers(text) + evidence_numbers(extra)
        numbers += [(float(f["value"]), False) for f in facts if _number(f.get("value"))]
        where = f"{name}:L{a}" + (f"-L{b}" if b != a else "")
        return Source(where, text + ("\n" + extra if extra else ""), numbers)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


def _within(pointer: str, name: str, a: int, b: int) -> bool:
    """A fact whose lines lie inside the cited range (a CSV column's mean cited by its rows)."""
    m = POINTER.match(pointer)
    if not m or m.group("file") != name or m.group("a") is None:
        return False
    fa = int(m.group("a"))
    return a <= fa and int(m.group("b") or fa) <= b


def run_evidence(mode: str, input_paths: list[str], results: list[dict], tool_results: list[dict]) -> Evidence:
    """The evidence for one check. `results` are every task result in plan order (facts and web
    pages come from them); `tool_results` those of the tool tasks, whose data holds the figures."""
    sources = RunSources(input_paths, results)
    figures: list[float] = []
    if mode == "figures":
        for r in tool_results:
            if state_of(r) == TaskState.DONE:
                tool_figures(r.get("data"), figures)
    return Evidence(mode=mode, sourced=mode == "sources" and bool(sources), resolve=sources,
                    figures=Figures(figures))


def check_drafts(mode: str, input_paths: list[str], results: list[dict], tool_results: list[dict],
                 drafts: dict[str, str], sent: dict[str, int]) -> dict[str, dict]:
    """`verify` for each new draft (task id -> output): a task whose sentences already went back once
    (`sent`) is marked, not sent back again."""
    if not drafts:
        return {}
    ev = run_evidence(mode, input_paths, results, tool_results)
    return {tid: verify(text, ev, tid, may_send_back=tid not in sent, revised=sent.get(tid, 0))
            for tid, text in drafts.items()}


def drafts_to_check(plan: Plan, results: Mapping[str, dict], roles: Mapping[str, Any]) -> tuple[list, list, dict]:
    """What a claims check looks at, in plan order: (the results, the tool results that are its
    evidence, the new model drafts: task id -> text). A draft whose text was checked already (same
    digest) is not checked again."""
    ordered = [results[t.id] for t in plan.tasks if t.id in results]
    kind = {r["id"]: getattr(roles.get(r.get("role")), "kind", None) for r in ordered}
    done = set(ids_with(results, TaskState.DONE))
    drafts = {r["id"]: r.get("output") or "" for r in ordered if r["id"] in done and kind[r["id"]] == "llm"
              and (r.get("claims") or {}).get("digest") != digest(r.get("output") or "")}
    return ordered, [r for r in ordered if kind[r["id"]] == "tool"], drafts


def verification_records(results: Mapping[str, dict]) -> list[dict]:
    """The claims records of the finished tasks: what the run's `verification` totals add up."""
    return [results[tid]["claims"] for tid in ids_with(results, TaskState.DONE) if results[tid].get("claims")]
