"""Facts on real text written by others: precision and recall against hand labels, each kind of
number that is not a fact, comparisons kept whole, CSV means that equal an independent computation."""
from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from tests.facts_corpus import CORPUS, HELDOUT_CSV_LABELS, HELDOUT_TEXT_LABELS, score
from utils.tools.quantities import quantities
from utils.tools.source_facts import csv_facts, text_facts
from utils.tools.sources import facts_from, read_source


def extract(path: Path) -> list[dict]:
    return facts_from(read_source(path))


def test_precision_and_recall_on_the_labelled_corpus():
    s = score(extract)
    assert s.precision >= 0.95 and s.recall >= 0.80, (s.false_pos, s.false_neg, s.wrong_unit)


def test_precision_and_recall_on_the_held_out_corpus():
    s = score(extract, HELDOUT_TEXT_LABELS, HELDOUT_CSV_LABELS)
    assert s.precision >= 0.95 and s.recall >= 0.80, (s.false_pos, s.false_neg, s.wrong_unit)


def values(text: str) -> set[float]:
    return {q.value for q in quantities(text)}


@pytest.mark.parametrize("kind, sentence", [
    ("version", "The commands deprecated since release 2.5.3 now warn; grep 3.4 and HP-UX 11.11 fail from 3.2 through 3.7."),
    ("code point", "It fails to match Unicode characters U+108000 through U+10FFFF."),
    ("identifier", "[Bug#43527 introduced in grep 3.4] and issue 77 track ticket #4521."),
    ("port", "The server listens on port 8080 and the proxy on ports 443 and 8443."),
    ("chmod mode", "Copying a file with group A and mode 644 into a group-B sticky directory."),
    ("exit status", "expr now exits with status 2 (not 3) for errors; exit status 3 is now used only internally."),
    ("date and year", "Released on 2022-09-02, disabled in March of 2010 and again on 12 May 2024."),
    ("timestamp", "If the time is currently 1590020079.003388470 seconds after the Epoch, it pads."),
    ("phone or id", "Call 5551234567 or quote account 123456789 orders."),
    ("N^2", "An N^2 RSS performance regression and numbers up to 2^128 have been fixed."),
    ("machine model", "On a Sun 4 running SunOS 4.1 this may cut system time."),
    ("quoted command", "For example, 'dd count=100KiB' and \"3441325000 bytes (3.4 GB) copied\" changed."),
    ("scale letter alone", "The file is 46371K on disk and 4 million in total."),
    ("neighbouring word", "It affects 3 through 9, and Queue 7 waited for 12 of them."),
    ("dataset name", "The 20 newsgroups dataset comprises posts on topics."),
    ("exponent", "This supports larger files (2**66 - 1 bytes instead of 2**33 - 1 bytes)."),
    ("hex prefix and printf format", "dd warns about a 0x prefix; use %.3X for fractional digits."),
    ("shell parameter", "The `$0' special parameter expands to $0 on assignment."),
    ("attributive unit", "It is inconsistent with the 24 hour time format used on 32 bit systems."),
    ("verb after a number", "Setting it to 0 causes the history file to be truncated."),
])
def test_numbers_that_are_not_facts(kind: str, sentence: str):
    assert quantities(sentence) == [], kind


def test_code_blocks_listings_and_syntax_tables_are_not_facts(tmp_path: Path):
    doc = ("Size suffixes work, for example:\n"
           "    $ ls -l --block-size=\"K\"\n"
           "    -rw-rw-r--    1 eggert   src          46371K Sep 24 23:40 file\n"
           "\n"
           "It used 400MB and took 3 minutes:\n"
           "    head -80000 /usr/share/dict/linux.words > w; grep -vf w w\n"
           "\n"
           "```\nusers 500 people\n```\n"
           "    >>> vectors.shape\n"
           "\n"
           "| option | meaning |\n|---|---|\n| `-n 10` | print the first 10 lines |\n"
           "\n"
           "Quoted from the site:\n"
           "    There are ten images of each of 40 distinct subjects.\n")
    facts = text_facts("news.md", doc, "markdown")
    assert [(f["line"], f["value"], f["unit"]) for f in facts] == [(5, 400.0, "MB"), (5, 3.0, "minutes"),
                                                                  (18, 40.0, "subjects")]


def test_units_are_units_never_column_names(tmp_path: Path):
    facts = csv_facts("figures.csv", "name,age,average_order_value,share_pct,orders\n"
                                     "a,40,80.5,10,3\nb,43.6,92.3,30,5\n")
    assert {f["column"]: f["unit"] for f in facts} == {"age": "", "average_order_value": "", "share_pct": "%",
                                                       "orders": "orders"}
    assert {f["what"] for f in facts} >= {"mean age", "mean average order value"}


def test_comparisons_keep_their_structure():
    [rose] = quantities("Adoption rose to 87% from 81% in 2025.")
    assert (rose.value, rose.unit, rose.earlier, rose.scope) == (87.0, "%", 81.0, "in 2025")
    [spent] = quantities("The team spent $48,000 of a $60,000 allocation.")
    assert (spent.value, spent.unit, spent.total, spent.earlier) == (48000.0, "$", 60000.0, None)
    [fell] = quantities("The price fell from $310 to $285 over twelve months.")
    assert (fell.value, fell.earlier, fell.what, fell.scope) == (285.0, 310.0, "price fell", "over twelve months")
    assert [(q.value, q.unit) for q in quantities("a population of 600 to 3,000 people")] == [
        (600.0, "people"), (3000.0, "people")]
    [faster] = quantities("grep -i is now typically 10 times faster for patterns.")
    assert (faster.value, faster.unit, faster.what) == (10.0, "times", "grep i (faster)")


def _column(path: Path, col: str, where: tuple[str, str] | None = None) -> list[float]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [float(r[col]) for r in rows if where is None or r[where[0]] == where[1]]


def test_csv_means_per_series_equal_an_independent_computation():
    path = CORPUS / "iowa_electricity.csv"
    facts = csv_facts(path.name, path.read_text(encoding="utf-8"))
    got = {f["group"]: f for f in facts}
    assert set(got) == {"Fossil Fuels", "Nuclear Energy", "Renewables"}  # never pooled across sources
    for source, f in got.items():
        want = _column(path, "net_generation", ("source", source))
        assert f["value"] == pytest.approx(statistics.fmean(want)) and f["n"] == len(want)
        assert (f["min"], f["max"]) == (min(want), max(want))
        assert "2001-01-01 to 2017-01-01" in f["scope"] and source in f["scope"]
    weather = CORPUS / "seattle_weather.csv"
    pooled = {f["column"]: f for f in csv_facts(weather.name, weather.read_text(encoding="utf-8"))}
    assert set(pooled) == {"precipitation", "temp_max", "temp_min", "wind"}  # one row per day: no split
    for col, f in pooled.items():
        assert f["group"] is None and f["value"] == pytest.approx(statistics.fmean(_column(weather, col)))
