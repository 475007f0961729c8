"""Main text out of a fetched page, and the passages of it that bear on a research question.

Extraction is trafilatura's job (navigation, ads, comments and boilerplate are what it is built to
drop); hand-written HTML stripping would keep the menus. Passage choice is plain term overlap with the
question, kept in page order: cheap, deterministic, and good enough to fit the context budget.
"""
from __future__ import annotations

import re

MIN_PASSAGE_CHARS = 40
MAX_PASSAGE_CHARS = 700
MAX_PDF_PAGES = 30
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]+")
_STOP = frozenset("the and for with that this from are was were what which how why who has have had "
                  "its into over about than then them they their there these those not but can will "
                  "would should could been being also more most such per via of in on to a an is it by "
                  "as at or be do does did in".split())


def main_text(body: str | bytes, content_type: str, url: str = "") -> tuple[str, str]:
    """(title, main text). Plain text passes through; PDF goes through pypdf; HTML through trafilatura
    (both imported here so `import utils.tools` stays light). Comments are left out: they are not the
    page's claims."""
    if content_type == "text/plain":
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        return "", text.strip()
    if content_type == "application/pdf":
        return pdf_text(body if isinstance(body, bytes) else body.encode("latin-1", errors="replace"))
    import trafilatura

    text = trafilatura.extract(body, url=url or None, include_comments=False, include_tables=True,
                               favor_precision=True) or ""
    meta = trafilatura.extract_metadata(body)
    title = (meta.title if meta and meta.title else "") or ""
    return title.strip(), text.strip()


def pdf_text(data: bytes) -> tuple[str, str]:
    """(title, text) of a PDF with pypdf, the first `MAX_PDF_PAGES` pages. PDF text comes as
    wrapped lines, so it is regrouped into paragraph-sized chunks of whole sentences; an unreadable
    file gives no text (the page is then reported as having none)."""
    import io

    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        title = str((reader.metadata or {}).get("/Title") or "")
        raw = " ".join((page.extract_text() or "") for page in reader.pages[:MAX_PDF_PAGES])
    except Exception:  # pypdf raises many types for broken files; a bad PDF is one unusable page
        return "", ""
    chunks, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", raw).strip()):
        if current and len(current) + len(sentence) > MAX_PASSAGE_CHARS - 200:
            chunks.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    return title.strip(), "\n".join(chunks + ([current] if current else []))


def terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def passages(text: str, question: str, limit: int, max_chars: int) -> list[str]:
    """Up to `limit` paragraphs sharing most terms with `question`, in page order, within `max_chars`.

    A page with no overlap still gives its opening paragraphs: the search engine thought it relevant.
    """
    paras = [re.sub(r"\s+", " ", p).strip() for p in text.split("\n")]
    paras = [p[:MAX_PASSAGE_CHARS] for p in paras if len(p) >= MIN_PASSAGE_CHARS]
    wanted = terms(question)
    scored = sorted(range(len(paras)), key=lambda i: (-len(terms(paras[i]) & wanted), i))
    chosen, used = [], 0
    for i in scored[:limit]:
        if used + len(paras[i]) > max_chars and chosen:
            break
        chosen.append(i)
        used += len(paras[i])
    return [paras[i] for i in sorted(chosen)]
