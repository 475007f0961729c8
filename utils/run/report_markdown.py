"""Markdown (the document, model text) to safe HTML for `report.html`.

Why its own renderer settings: the document is model-written, so raw HTML in it is never passed
through (markdown-it's `html` option is off: `<script>` and `onerror=` arrive as text), links keep
only http(s), mailto and in-page targets, and an image is shown only when it is a file of the run
folder, embedded as a `data:` URI; a remote image becomes its alt text, so opening the page never
asks another host for anything. Mermaid Gantt blocks become a table (no JavaScript is needed to
read the page); other Mermaid blocks stay as their source.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
MAX_IMAGE_BYTES = 20 * 1024 * 1024
SAFE_LINK = re.compile(r"^(https?:|mailto:|#)", re.I)
_GANTT_TASK = re.compile(r"^\s*(?P<label>[^:]+?)\s*:(?P<spec>.*)$")
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")


def data_uri(blob: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(blob).decode('ascii')}"


def local_image(src: str, run_dir: Path | None) -> str | None:
    """A `data:` URI for an image file of the run folder named by `src`, else None (remote, a path
    out of the folder, an unknown type, too large or missing)."""
    if run_dir is None or not src or "/" in src or "\\" in src or ":" in src or src.startswith("."):
        return None
    mime = IMAGE_TYPES.get(Path(src).suffix.lower())
    path = run_dir / src
    try:
        if mime is None or not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        return data_uri(path.read_bytes(), mime)
    except OSError:
        return None


def gantt_table(code: str) -> str | None:
    """A Mermaid `gantt` block as an HTML table (section, task, start, end, critical); None when the
    block is not a Gantt chart or has no dated task."""
    lines = code.strip().splitlines()
    if not lines or lines[0].strip() != "gantt":
        return None
    title, section, rows = "", "", []
    for line in lines[1:]:
        text = line.strip()
        if text.startswith("title "):
            title = text[6:]
        elif text.startswith("section "):
            section = text[8:]
        elif not text.startswith(("dateFormat", "excludes", "axisFormat", "todayMarker", "%%")):
            m = _GANTT_TASK.match(text)
            if not m:
                continue
            parts = [p.strip() for p in m.group("spec").split(",")]
            dates = [p for p in parts if _DATE.match(p)]
            if dates:
                rows.append((section, m.group("label"), dates[0], dates[-1], "crit" in parts))
    if not rows:
        return None
    cells = "".join(f"<tr><td>{html.escape(s)}</td><td>{html.escape(lab)}</td><td>{a}</td><td>{b}</td>"
                    f"<td>{'yes' if crit else ''}</td></tr>" for s, lab, a, b, crit in rows)
    caption = f"<caption>{html.escape(title)} (Gantt)</caption>" if title else "<caption>Gantt</caption>"
    return (f'<table class="gantt">{caption}<thead><tr><th>section</th><th>task</th><th>start</th>'
            f"<th>end</th><th>critical</th></tr></thead><tbody>{cells}</tbody></table>")


def _renderer(run_dir: Path | None):
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        alt = html.escape("".join(t.content for t in (token.children or [])) or token.content)
        uri = local_image(str(token.attrGet("src") or ""), run_dir)
        if uri is None:
            return f'<span class="noimg">[image not embedded: {alt}]</span>'
        return f'<img class="chart" src="{uri}" alt="{alt}">'

    def link_open(self, tokens, idx, options, env):
        token = tokens[idx]
        href = str(token.attrGet("href") or "")
        if not SAFE_LINK.match(href):
            return "<a>"
        return f'<a href="{html.escape(href)}" rel="noopener noreferrer nofollow">'

    def fence(self, tokens, idx, options, env):
        token = tokens[idx]
        lang = (token.info or "").strip().split(" ")[0].lower()
        if lang == "mermaid":
            table = gantt_table(token.content)
            if table:
                return table
        cls = f' class="lang-{html.escape(lang)}"' if lang else ""
        return f"<pre><code{cls}>{html.escape(token.content)}</code></pre>\n"

    md.add_render_rule("image", image)
    md.add_render_rule("link_open", link_open)
    md.add_render_rule("fence", fence)
    return md


def markdown_html(text: str, run_dir: Path | None = None) -> str:
    """`text` as HTML with no raw HTML, no script, no event handler and no remote image."""
    return _renderer(run_dir).render(text or "")
