"""Model-written text made safe for where it goes: the terminal or a file.

Why: a model (or a fetched page) can emit terminal escape sequences: OSC 52 writes the clipboard, others
set the window title or clear the screen. Anything model-written that reaches the terminal goes through
`for_terminal`; anything written to a file goes through `for_file`, which keeps the text as written
minus C0/C1 control characters (newline and tab stay). Bottom layer: importable from everywhere.
"""
from __future__ import annotations

import re

# C0 controls except \t and \n, DEL, and the C1 range (U+0080-U+009F, which includes the 8-bit CSI/OSC).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_file(text: str) -> str:
    """Drop control characters other than newline and tab (a lone CR becomes a newline)."""
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def for_terminal(text: str) -> str:
    """Show control characters as visible `^X` / `\\xNN` marks so they cannot act on the terminal."""
    def mark(m: re.Match[str]) -> str:
        code = ord(m.group(0))
        return f"^{chr(code + 64)}" if code < 0x20 else ("^?" if code == 0x7F else f"\\x{code:02x}")
    return _CONTROLS.sub(mark, text.replace("\r\n", "\n"))


# A JSON string (escapes included) or one bracket: strings are matched whole, so their brackets never count.
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def bracket_depth(text: str) -> int:
    """The deepest nesting of [ and { outside double-quoted strings.

    Why: JSON and YAML parsers recurse once per level, so a document (or a model's reply) of 20,000
    '[' runs the interpreter to its recursion limit; a garbage collection at that depth runs
    finalizers that cannot even report their errors. Scanning first lets callers refuse such a text
    before any parser sees it. A stray ']' never makes the depth negative.
    """
    depth = deepest = 0
    for m in _BRACKETS.finditer(text):
        ch = m.group(0)
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest
