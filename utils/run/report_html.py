"""`report.html`: the whole run in one self-contained page a reader opens in a browser.

Why one file: a run's result is spread over `output.md`, chart PNGs, `run.json`, `calls.jsonl` and
`timeline.png`; a copied `output.md` loses its charts. This page embeds every picture as a `data:`
URI, needs no JavaScript, asks no other host for anything (a strict Content-Security-Policy says so
to the browser as well) and prints on A4 or Letter. All text in it (the goal, model output, page
titles, passages) is escaped or rendered by `utils/run/report_markdown.py` with raw HTML off.

Built from the run folder's own state after the run (the run store's `run.json` state and
`calls.jsonl`), so it shows exactly what was saved, and a failure to build it never fails a run.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from utils.run.report_markdown import data_uri, markdown_html
from utils.run.results import TaskState

REPORT = "report.html"
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
       "frame-src 'none'; object-src 'none'; script-src 'none'")
MAX_CALL_ROWS = 2000
_TASK_PURPOSE = re.compile(r"^task (\S+) \(")
_FILE_CITE = re.compile(r"\[source: ([^\]\n]{1,200})\]")

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;max-width:60rem;
margin:0 auto;padding:1.5rem;background:#fff}
header{border-bottom:2px solid #d5dae3;margin-bottom:1rem}
header h1{margin:.2rem 0 .6rem;font-size:1.6rem}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0 0 1rem}
dl.meta dt{font-weight:600;color:#4a5468}dl.meta dd{margin:0}
.status-ok{color:#176b3a;font-weight:600}.status-bad{color:#a3281f;font-weight:600}
article{margin:1rem 0 2rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
th,td{border:1px solid #d5dae3;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:.2rem 0}
pre{background:#f5f6f8;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
blockquote{border-left:4px solid #c8cedb;margin:.5rem 0;padding:.1rem .8rem;color:#3a4354}
img.chart{max-width:100%;height:auto;display:block;margin:.6rem 0}
.noimg{color:#8a6d00;font-style:italic}
details{border:1px solid #d5dae3;border-radius:4px;margin:.6rem 0;padding:.3rem .8rem}
summary{cursor:pointer;font-weight:600;font-size:1.1rem;padding:.2rem 0}
.muted{color:#6b7487}
@page{margin:14mm}
@media print{
 body{max-width:none;padding:0;font-size:11pt;font-variant-ligatures:none}
 details{border:none;padding:0}details::details-content{content-visibility:visible;display:block}
 summary{list-style:none}summary::-webkit-details-marker{display:none}
 h1,h2,h3,h4{break-after:avoid}table,img,pre,blockquote{break-inside:avoid}
 a{color:inherit;text-decoration:none}
}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 0) -> str:
    if value is None or isinstance(value, bool):
        return "—"
    try:
        return f"{float(value):,.{digits}f}"
    except (TypeError, ValueError):
        return "—"


def read_calls(run_dir: Path) -> list[dict]:
    """`calls.jsonl` as records (a torn or foreign line is skipped)."""
    out: list[dict] = []
    try:
        text = (run_dir / "calls.jsonl").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def call_task(purpose: Any) -> str:
    """The task id a call's purpose names (`task s1 (writer)` -> `s1`), else ''."""
    m = _TASK_PURPOSE.match(str(purpose or ""))
    return m.group(1) if m else ""


def review_score(state: dict) -> str:
    scored = [r for r in state.get("reviews") or [] if isinstance(r, dict) and r.get("score") is not None]
    if scored:
        return f"{_num(scored[-1]['score'], 1)} / 10 (round {esc(scored[-1].get('round'))})"
    return "no score (offline or not reviewed)" if state.get("reviews") else "not reviewed"


def _header(state: dict) -> str:
    meta, totals = state.get("meta") or {}, state.get("totals") or {}
    status = str(state.get("status") or "unknown")
    reason = state.get("status_reason") or (state.get("stopped") if status != "ok" else None)
    model = meta.get("model") or ("offline provider: no model called" if meta.get("provider") == "offline" else "—")
    rows = [("Goal", esc(state.get("goal"))), ("Workflow", esc(state.get("workflow"))),
            ("Model", esc(model) + (f" <span class='muted'>({esc(meta.get('provider'))})</span>"
                                    if meta.get("provider") and meta.get("model") else "")),
            ("Status", f"<span class='{'status-ok' if status == 'ok' else 'status-bad'}'>{esc(status)}</span>"
                       + (f" — {esc(reason)}" if reason else "")),
            ("Review score", review_score(state))]
    check = state.get("verification")
    if isinstance(check, dict) and check:
        rows.append(("Claims check", ", ".join(f"{esc(k)}: {_num(v)}" for k, v in check.items()
                                               if isinstance(v, (int, float)) and not isinstance(v, bool))))
    cost = totals.get("cost_usd")
    rows.append(("Totals", f"{_num(totals.get('calls'))} model calls, {_num(totals.get('prompt_tokens'))} prompt + "
                           f"{_num(totals.get('completion_tokens'))} completion tokens"
                           + (f", ${float(cost):.4f}" if isinstance(cost, (int, float)) else "")
                           + (f", {_num(meta.get('elapsed_s'), 1)} s" if meta.get("elapsed_s") is not None else "")))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    # the document brings its own title (its first heading); a run without one gets it here
    title = "" if state.get("document") else f"<h1>{esc(state.get('goal') or 'Run report')}</h1>"
    return f"<header><p class='muted'>Run report · {esc(state.get('workflow'))}</p>{title}<dl class='meta'>{items}</dl></header>"


def _image_file(run_dir: Path, name: str, alt: str) -> str:
    path = run_dir / name
    if not path.is_file():
        return f"<p class='muted'>No {esc(name)} in this run.</p>"
    return f'<img class="chart" src="{data_uri(path.read_bytes(), "image/png")}" alt="{esc(alt)}">'


def _plan_section(state: dict) -> str:
    plan = state.get("plan") or {}
    tasks = plan.get("tasks") or []
    if not tasks:
        return ""
    picture = ""
    try:
        from utils.run.plan_view import plan_png
        picture = f'<img class="chart" src="{data_uri(plan_png(plan), "image/png")}" alt="The planned DAG">'
    except Exception as exc:  # noqa: BLE001 - the table below still says everything
        picture = f"<p class='muted'>The plan picture could not be drawn ({esc(type(exc).__name__)}).</p>"
    results = state.get("results") or {}
    rows = "".join(
        f"<tr><td>{esc(t.get('id'))}</td><td>{esc(t.get('title'))}</td><td>{esc(t.get('role'))}</td>"
        f"<td>{esc(', '.join(t.get('depends_on') or []) or '-')}</td>"
        f"<td>{esc((results.get(t.get('id')) or {}).get('state', TaskState.PENDING))}</td>"
        f"<td class='n'>{_num((results.get(t.get('id')) or {}).get('elapsed_s'), 2)}</td></tr>" for t in tasks)
    table = ("<table><thead><tr><th>id</th><th>title</th><th>role</th><th>depends on</th><th>state</th>"
             f"<th>seconds</th></tr></thead><tbody>{rows}</tbody></table>")
    return _fold(f"Plan ({len(tasks)} tasks)", picture + table)


def _sources_section(state: dict) -> str:
    """The passages each citation points to: web pages with their quoted passages, numbered as in
    the document, and every `[source: FILE:Lnn]` the document cites with the line it quotes."""
    from utils.tools.web.cite import used_pages

    plan_ids = [t.get("id") for t in (state.get("plan") or {}).get("tasks") or []]
    results = state.get("results") or {}
    ordered = [results[i] for i in plan_ids if isinstance(results.get(i), dict)]
    parts: list[str] = []
    pages, _ = used_pages(ordered)
    for n, page in enumerate(pages, 1):
        quotes = "".join(f"<blockquote>{esc(p)}</blockquote>" for p in page.get("passages") or [])
        parts.append(f"<h3>[{n}] {esc(page.get('title'))}</h3><p><code>{esc(page.get('url'))}</code> "
                     f"<span class='muted'>accessed {esc(page.get('accessed'))}</span></p>{quotes}")
    facts: dict[str, str] = {}
    for r in ordered:
        for f in ((r.get("data") or {}).get("facts") or []) if isinstance(r.get("data"), dict) else []:
            if isinstance(f, dict) and f.get("pointer"):
                facts.setdefault(str(f["pointer"]), str(f.get("text") or ""))
    cited = list(dict.fromkeys(m.strip() for m in _FILE_CITE.findall(str(state.get("document") or ""))))
    if cited:
        items = "".join(f"<li><code>{esc(c)}</code>" + (f"<blockquote>{esc(facts[c])}</blockquote>" if c in facts
                                                        else " <span class='muted'>(no recorded passage)</span>")
                        + "</li>" for c in cited)
        parts.append(f"<h3>Cited lines of the input files</h3><ul>{items}</ul>")
    problems = [(r.get("id"), p) for r in ordered for p in ((r.get("claims") or {}).get("problems") or [])
                if isinstance(r.get("claims"), dict) and isinstance(p, dict)]
    if problems:
        items = "".join(f"<li><b>{esc(tid)}</b>: {esc(p.get('status'))} — {esc(p.get('sentence'))}"
                        f" <span class='muted'>{esc('; '.join(map(str, p.get('problems') or [])))}</span></li>"
                        for tid, p in problems)
        parts.append(f"<h3>Sentences the claims check could not support</h3><ul>{items}</ul>")
    if not parts:
        return ""
    return _fold(f"Sources ({len(pages)} web pages, {len(cited)} cited lines)", "".join(parts))


def _calls_section(calls: list[dict]) -> str:
    if not calls:
        return ""
    head = ("<tr><th>#</th><th>purpose</th><th>task</th><th>model</th><th>prompt tokens</th><th>cached tokens</th>"
            "<th>completion tokens</th><th>cost USD</th><th>latency s</th><th>cache hit</th><th>error</th></tr>")
    rows = []
    for i, c in enumerate(calls[:MAX_CALL_ROWS], 1):
        cost = c.get("cost_usd")
        rows.append(f"<tr><td class='n'>{i}</td><td>{esc(c.get('purpose'))}</td><td>{esc(call_task(c.get('purpose')))}"
                    f"</td><td>{esc(c.get('model'))}</td><td class='n'>{_num(c.get('prompt_tokens'))}</td>"
                    f"<td class='n'>{_num(c.get('cached_tokens'))}</td><td class='n'>{_num(c.get('completion_tokens'))}</td>"
                    f"<td class='n'>{'—' if cost is None else f'{float(cost):.6f}'}</td>"
                    f"<td class='n'>{_num(c.get('latency_s'), 3)}</td><td>{'yes' if c.get('cached') else ''}</td>"
                    f"<td>{esc(c.get('error') or '')}</td></tr>")
    tot = {k: sum(int(c.get(k) or 0) for c in calls) for k in ("prompt_tokens", "cached_tokens", "completion_tokens")}
    costs = [float(c["cost_usd"]) for c in calls if isinstance(c.get("cost_usd"), (int, float))]
    foot = (f"<tr><th colspan='4'>all {len(calls)} calls</th><td class='n'>{_num(tot['prompt_tokens'])}</td>"
            f"<td class='n'>{_num(tot['cached_tokens'])}</td><td class='n'>{_num(tot['completion_tokens'])}</td>"
            f"<td class='n'>{f'{sum(costs):.6f}' if costs else '—'}</td>"
            f"<td class='n'>{_num(sum(float(c.get('latency_s') or 0) for c in calls), 3)}</td>"
            f"<td>{sum(1 for c in calls if c.get('cached'))}</td><td></td></tr>")
    more = (f"<p class='muted'>The first {MAX_CALL_ROWS} of {len(calls)} calls are listed; calls.jsonl has all.</p>"
            if len(calls) > MAX_CALL_ROWS else "")
    return _fold(f"Model calls ({len(calls)})", f"<table class='calls'><thead>{head}</thead><tbody>{''.join(rows)}"
                                                f"</tbody><tfoot>{foot}</tfoot></table>{more}")


def _fold(title: str, body: str) -> str:
    return f"<details><summary>{esc(title)}</summary>{body}</details>"


def build_report(state: dict, run_dir: Path) -> str:
    """The page for a run folder's saved `state` (run.json's fields) and files."""
    doc = state.get("document")
    article = (markdown_html(str(doc), run_dir) if doc
               else "<p class='muted'>This run wrote no document (see the status above).</p>")
    timeline = _fold("Timeline", _image_file(run_dir, "timeline.png", "Where the time went: one lane per worker")) \
        if (run_dir / "timeline.png").is_file() else ""
    body = (_header(state) + f"<article>{article}</article>" + _plan_section(state) + timeline
            + _sources_section(state) + _calls_section(read_calls(run_dir)))
    title = esc(state.get("title") or state.get("goal") or "Run report")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            "<meta name='referrer' content='no-referrer'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>\n")


def write_report(state: dict, run_dir: Path) -> Path | None:
    """Write `report.html` into the run folder; returns its path, or None when it could not be built
    (recorded in nothing and raised to nobody: the page is never worth a failed run)."""
    from utils.run.runstore import atomic_write

    try:
        path = run_dir / REPORT
        atomic_write(path, build_report(state, run_dir))
        return path
    except Exception:  # noqa: BLE001 - a page is never worth a failed run
        return None
