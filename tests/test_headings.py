"""Heading demotion in the assembled document, read by a CommonMark parser (markdown-it-py)."""
from __future__ import annotations

from utils.run.assemble import demote_headings, headings, section_body


def test_setext_headings_are_demoted_like_atx_ones():
    text = "Overview\n========\n\nBody text.\n\nDetails\n-------\n\nMore.\n\n# Also\n"
    out = demote_headings(text, 3)
    assert out == "### Overview\n\nBody text.\n\n#### Details\n\nMore.\n\n### Also\n"
    assert [level for _, _, level, _ in headings(out)] == [3, 4, 3]


def test_heading_like_lines_in_tilde_and_long_backtick_fences_are_untouched():
    text = ("# Top\n\n~~~python\n# a comment\n```\n## not a heading\n~~~\n\n"
            "````markdown\n```\n# still code\n```\n````\n\n## Sub\n")
    out = demote_headings(text, 3)
    assert "\n# a comment\n" in out and "\n## not a heading\n" in out and "\n# still code\n" in out
    assert out.startswith("### Top\n") and out.endswith("\n#### Sub\n")
    assert [level for _, _, level, _ in headings(out)] == [3, 4]


def test_levels_never_pass_six_and_low_headings_stay():
    assert demote_headings("# A\n\n###### F\n", 3) == "### A\n\n###### F\n"
    assert demote_headings("### Already low\n", 3) == "### Already low\n"
    assert demote_headings("#hashtag, not a heading\n", 3) == "#hashtag, not a heading\n"


def test_section_body_drops_a_repeated_setext_title():
    body = section_body("The Results", "The results\n===========\n\nText.\n\nDetail\n------\n\nMore.")
    assert body == "Text.\n\n### Detail\n\nMore."
