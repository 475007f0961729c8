"""A labelled corpus of real text written by others, for measuring the fact extractor.

The files under tests/data/facts_corpus/ are short verbatim excerpts of documents that ship on this
machine or inside Python packages (GNU grep's and coreutils' NEWS from /usr/share/doc, scikit-learn's
dataset descriptions, vega_datasets' CSV files). The labels below were written by hand, line by line,
before the extractor was tuned, by one rule: a fact is a number written in digits that measures
something and says in what unit (%, times, KiB, MB, people, samples, ...). Versions, years and dates,
Unicode code points, bug numbers, exit statuses, modes, `N^2`, machine and dataset names, timestamps,
numbers inside command examples, quoted command output and code blocks are not facts. A number
given as the earlier value of a comparison ("from 12KiB to 64KiB") is part of the later fact, not a
fact of its own. Each label is (line, value, units a reader would accept for it).

CSV files: one fact per numeric column that measures something (mean over its rows), one per
category level when a category column splits the rows into separate series (the same dates repeat
for each level), never a pooled mean across such series. A CSV label is (column, level or None).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "data" / "facts_corpus"

TIMES = {"times", "x"}
KIB, MB, GB, GIB = {"KiB"}, {"MB"}, {"GB"}, {"GiB"}

TEXT_LABELS: dict[str, list[tuple[int, float, set[str]]]] = {
    "grep_news.txt": [
        (43, 80000, {"lines"}),
        (44, 100, GB), (44, 3, {"minutes", "min"}),
        (45, 400, MB),
        (59, 200, TIMES),
        (67, 10, TIMES),
        (70, 7, TIMES),
        (84, 30, {"%"}),
        (88, 50, {"%"}),
    ],
    "coreutils_news.txt": [
        (15, 100, KIB),
        (16, 102400, {"blocks"}),
        (24, 128, KIB),
        (30, 4, TIMES),
        (31, 8, TIMES),
        (49, 5, TIMES),
        (80, 64, KIB),            # earlier 12KiB
        (86, 25, {"%"}),
        (87, 8, TIMES),
        (117, 10000, TIMES),
        (121, 70, TIMES),
        (129, 64, KIB),
        (130, 32, KIB), (130, 64, KIB),
        (131, 10, {"%"}),
        (146, 1, GIB),
        (147, 30, MB),
    ],
    "sklearn_descr.txt": [
        (10, 20640, {"instances"}),
        (12, 8, {"attributes"}),
        (30, 100000, {"$"}),
        (35, 600, {"people"}), (35, 3000, {"people"}),
        (62, 80.1, {"%"}),
        (72, 1, {"%"}),
        (76, 0.3, {"%"}),
        (96, 40, {"subjects"}),
        (106, 40, {"classes"}),
        (107, 400, {"samples"}),
        (108, 4096, {"dimensions"}),
        (112, 256, {"grey levels", "levels"}),
        (117, 10, {"examples"}),
        (131, 18000, {"posts", "newsgroups posts"}),
        (132, 20, {"topics"}),
        (149, 20, {"classes"}),
        (150, 18846, {"samples"}),
        (151, 1, {"dimensions"}),
        (172, 159, {"components", "non-zero components"}),
        (173, 30000, {"dimensions"}),
        (174, 0.5, {"%"}),
        (207, 0.88, {"F-score", "score"}),
    ],
}

CSV_LABELS: dict[str, set[tuple[str, str | None]]] = {
    # three sources of electricity, each a yearly series 2001-2017: never pooled
    "iowa_electricity.csv": {("net_generation", "Fossil Fuels"), ("net_generation", "Nuclear Energy"),
                             ("net_generation", "Renewables")},
    # one row per day (dates never repeat), so "weather" labels days, it does not split series
    "seattle_weather.csv": {("precipitation", None), ("temp_max", None), ("temp_min", None), ("wind", None)},
    # five share prices over the same three months
    "stocks.csv": {("price", s) for s in ("MSFT", "AMZN", "IBM", "GOOG", "AAPL")},
}

# Held out: labelled after the extractor was tuned on the sets above, and never tuned against, so
# their figures estimate how the extractor does on text it has not seen.
HELDOUT_TEXT_LABELS: dict[str, list[tuple[int, float, set[str]]]] = {
    "heldout_sed_news.txt": [(13, 2, GB), (16, 2, GB), (40, 2, GB), (78, 10, TIMES)],
    "heldout_sklearn_descr.txt": [
        (8, 30, {"m", "m²"}),
        (12, 54, {"features"}),
        (20, 7, {"classes"}), (21, 581012, {"samples"}), (22, 54, {"dimensions"}),
        (80, 1797, {"instances"}), (81, 64, {"attributes"}),
        (90, 10, {"classes"}),
        (95, 43, {"people"}), (95, 30, {"people"}), (95, 13, {"people"}),
    ],
}
HELDOUT_CSV_LABELS: dict[str, set[tuple[str, str | None]]] = {
    # one row per person: age is a measure, longitude/latitude place a row, nothing splits series
    "heldout_la_riots.csv": {("age", None)},
}


@dataclass
class Score:
    true_pos: int
    false_pos: list[str]
    false_neg: list[str]
    wrong_unit: list[str]

    @property
    def precision(self) -> float:
        found = self.true_pos + len(self.false_pos) + len(self.wrong_unit)
        return self.true_pos / found if found else 0.0

    @property
    def recall(self) -> float:
        want = self.true_pos + len(self.false_neg) + len(self.wrong_unit)
        return self.true_pos / want if want else 0.0


def score(extract, text_labels: dict | None = None, csv_labels: dict | None = None) -> Score:
    """Compare `extract(path) -> list of fact dicts` with the labels. A text fact matches a label
    on (file, line, value) and counts as right only when its unit is one the label accepts; a CSV
    fact matches on (file, column, group)."""
    tp, fps, fns, wrong = 0, [], [], []
    for name, labels in (TEXT_LABELS if text_labels is None else text_labels).items():
        got = [(f["line"], float(f["value"]), f["unit"]) for f in extract(CORPUS / name)]
        want = list(labels)
        for line, value, unit in got:
            hit = next((w for w in want if w[0] == line and abs(w[1] - value) < 1e-9), None)
            if hit is None:
                fps.append(f"{name}:L{line} {value:g} {unit}")
            elif unit in hit[2]:
                tp += 1
                want.remove(hit)
            else:
                wrong.append(f"{name}:L{line} {value:g} {unit!r} (want {sorted(hit[2])})")
                want.remove(hit)
        fns += [f"{name}:L{w[0]} {w[1]:g} {sorted(w[2])}" for w in want]
    for name, labels in (CSV_LABELS if csv_labels is None else csv_labels).items():
        got = {(f["column"], f.get("group")) for f in extract(CORPUS / name)}
        tp += len(got & labels)
        fps += [f"{name} {c} {g}" for c, g in sorted(got - labels, key=str)]
        fns += [f"{name} {c} {g}" for c, g in sorted(labels - got, key=str)]
    return Score(tp, fps, fns, wrong)
