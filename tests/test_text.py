import pytest

from utils.text import bracket_depth, for_file, for_terminal


def test_terminal_neutralises_escape_sequences():
    hostile = "Title\x1b]52;c;ZXZpbA==\x07 \x1b[2J\x9b31m end\tok\n"
    shown = for_terminal(hostile)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert shown.startswith("Title^[]52;c;ZXZpbA==^G ^[[2J\\x9b31m end\tok\n")


def test_file_keeps_text_minus_controls():
    assert for_file("a\x1b[31mb\r\nc\x00d\te\x85") == "a[31mb\ncd\te"


@pytest.mark.parametrize("text, depth", [
    ("", 0), ("plain prose", 0), ("[]", 1), ('{"a": [1, {"b": 2}]}', 3),
    ('{"a": "[[[[{{{{"}', 1),                 # brackets inside a string never count
    ('{"a": "quote \\" [[[["}', 1),           # nor after an escaped quote inside it
    ("]]]] [[", 2),                           # stray closers never make the depth negative
    ("[" * 20000 + "]" * 20000, 20000),
])
def test_bracket_depth(text, depth):
    assert bracket_depth(text) == depth
