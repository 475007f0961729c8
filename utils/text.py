"""Model-written text made safe for where it goes: the terminal or a file.

Why: a model (or a fetched page) can emit terminal escape sequences: OSC 52 writes the clipboard, others
set the window title or clear the screen. Anything model-written that reaches the terminal goes through
`for_terminal`; anything written to a file goes through `for_file`, which keeps the text as written
minus C0/C1 control characters and bidi overrides (newline and tab stay). Bottom layer: importable
from everywhere.

The same module holds the two things every written or shown text passes once: `valid_text` (a lone
surrogate, which a JSON escape can smuggle in, cannot be encoded as UTF-8 and would make a file write
or an HTTP request raise after the answer was paid for) and `scrub` (the one place secrets are
removed: every configured key, registered with `add_secret` where it is read, in any form).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

# C0 controls except \t and \n, DEL, and the C1 range (U+0080-U+009F, which includes the 8-bit CSI/OSC),
# and the bidi embeddings/overrides/isolates (U+202A-U+202E, U+2066-U+2069) that make a line read
# differently from what it holds.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

MIN_SECRET_LEN = 8  # shorter "keys" are placeholders; masking them would mangle ordinary words
_SECRETS: set[str] = set()
# The case-insensitive patterns run on a lower-cased copy (a literal first word lets the regex
# engine skip ahead; `(?i)` or a leading `\b` makes it try every position: seconds on a 50 MB output).
_KEYLIKE = re.compile(r"(?<![A-Za-z0-9_])sk-[A-Za-z0-9_\-]{6,}")
_BEARER = re.compile(r"(bearer\s+)[a-z0-9._~+/=\-]{8,}")
_URL_CREDS = re.compile(r"(https?://)[^/\s@]+@")
_URL_PARAMS = re.compile(r"([?&](?:api[-_]?key|key|token|access_token)=)[^&\s]+")

def add_secret(value: str | None) -> None:
    """Remember a configured secret (model key, search key) so `scrub` removes it from every text."""
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LEN:
        _SECRETS.add(value.strip())


def scrub(text: str) -> str:
    """`text` without any registered secret, `Bearer <token>`, `sk-...` tokens, URL credentials or
    `?api-key=` values. Why one function: every file, log and terminal line goes through it, so a
    key a model or a page echoes back is masked everywhere or nowhere."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    if "sk-" in text:
        text = _KEYLIKE.sub("sk-***", text)
    for pattern, word, tail in ((_BEARER, "bearer", "***"), (_URL_CREDS, "://", "***@"), (_URL_PARAMS, "=", "***")):
        low = text.lower()
        if word not in low:
            continue
        if len(low) == len(text):
            text = _mask(text, low, pattern, tail)
        else:  # a few characters lower-case to two: match the text itself, case-insensitively
            text = _mask(text, text, re.compile(pattern.pattern, re.IGNORECASE), tail)
    return text


def _mask(text: str, low: str, pattern: re.Pattern[str], tail: str) -> str:
    """`text` with each match of `pattern` in `low` (its lower-cased twin) replaced by group 1 + `tail`."""
    out, last = [], 0
    for m in pattern.finditer(low):
        out += [text[last:m.start()], text[m.start():m.end(1)], tail]
        last = m.end()
    return "".join(out + [text[last:]]) if out else text

def valid_text(text: str) -> str:
    """`text` as valid Unicode: a lone surrogate becomes U+FFFD (a well-formed pair is joined).
    Applied once where text enters from outside (files, pages, saved state, replies)."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def valid_data(value: Any) -> Any:
    """`valid_text` over every string (keys too) of parsed JSON/YAML; other values unchanged."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_data(k): valid_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [valid_data(v) for v in value]
    return value


def json_text(value: Any, **kw: Any) -> str:
    """`json.dumps` that always writes strict JSON: a non-finite number (a price of 1e308 times a
    token count is `inf`) becomes null instead of `Infinity`, which no strict reader accepts."""
    kw.setdefault("default", str)
    try:
        return json.dumps(value, allow_nan=False, **kw)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, **kw)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def for_file(text: str) -> str:
    """Drop control characters other than newline and tab (a lone CR becomes a newline)."""
    return _CONTROLS.sub("", valid_text(text).replace("\r\n", "\n").replace("\r", "\n"))


# Code (fenced blocks, inline spans) is shown as text by every renderer: left as written.
_CODE = re.compile(r"(?ms)^[ \t]*(```|~~~).*?(?:^[ \t]*\1[^\n]*$|\Z)|`[^`\n]+`")
_RAW_BLOCK = re.compile(r"(?is)<(script|style|iframe|object|embed|template)\b.*?(?:</\1\s*>|\Z)")
_HTML = re.compile(r"(?s)<!--.*?(?:-->|\Z)|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>|<[A-Za-z][A-Za-z0-9+.-]*:[^<>\s]*>")
_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\([ \t]*<?((?:[^()\s<>]|\([^()\s]*\))*)>?(?:[ \t]+[\"'(][^)\n]*)?[ \t]*\)")
_REF_DEF = re.compile(r"(?m)^ {0,3}\[[^\]\n]+\]:[ \t]*<?(\S+?)>?(?:[ \t].*)?$")
_SAFE_URL = re.compile(r"(?i)^(?:https?://|[^:]*$)")  # http(s), or relative (no scheme at all)


def for_markdown(text: str) -> str:
    """Model-written Markdown for a file: `for_file`, minus raw HTML (a `<script>` block goes whole)
    and links or images whose target has a scheme other than http(s) (`javascript:`, `data:`...),
    which keep their text. Why: output.md is opened in viewers that render HTML and follow links."""
    text = for_file(text)

    def clean(part: str) -> str:
        part = _HTML.sub(lambda m: m.group(0) if m.group(0).lower().startswith(("<http://", "<https://"))
                         else "", _RAW_BLOCK.sub("", part))
        part = _LINK.sub(lambda m: m.group(0) if _SAFE_URL.match(m.group(3)) else m.group(2), part)
        return _REF_DEF.sub(lambda m: m.group(0) if _SAFE_URL.match(m.group(1)) else "", part)

    out, last = [], 0
    for m in _CODE.finditer(text):
        out += [clean(text[last:m.start()]), m.group(0)]
        last = m.end()
    out.append(clean(text[last:]))
    return "".join(out)


def for_terminal(text: str) -> str:
    """Show control characters as visible `^X` / `\\xNN` / `<U+202E>` marks so they cannot act on
    the terminal; secrets are scrubbed."""
    def mark(m: re.Match[str]) -> str:
        code = ord(m.group(0))
        if code >= 0x2000:
            return f"<U+{code:04X}>"
        return f"^{chr(code + 64)}" if code < 0x20 else ("^?" if code == 0x7F else f"\\x{code:02x}")
    return _CONTROLS.sub(mark, scrub(valid_text(text)).replace("\r\n", "\n"))


# A JSON string (its escapes removed first) or one bracket: strings are matched whole, so their
# brackets never count. No repeated group: a 50 MB string costs one pass, not a regex stack per character.
_BRACKETS = re.compile(r'"[^"]*"|[\[\]{}]')


def bracket_depth(text: str) -> int:
    """The deepest nesting of [ and { outside double-quoted strings.

    Why: JSON and YAML parsers recurse once per level, so a document (or a model's reply) of 20,000
    '[' runs the interpreter to its recursion limit; a garbage collection at that depth runs
    finalizers that cannot even report their errors. Scanning first lets callers refuse such a text
    before any parser sees it. A stray ']' never makes the depth negative.
    """
    depth = deepest = 0
    text = text.replace("\\\\", "").replace('\\"', "")  # escaped backslashes, then escaped quotes
    for m in _BRACKETS.finditer(text):
        ch = m.group(0)
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest
