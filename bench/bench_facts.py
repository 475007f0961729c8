"""Fact extraction quality on real text written by others: precision and recall against hand labels.

The corpus (tests/data/facts_corpus/) is short verbatim excerpts of GNU grep's, coreutils' and sed's
NEWS files, scikit-learn's dataset descriptions and vega_datasets' CSV files; the labels are in
tests/facts_corpus.py (one per fact a careful reader would name: the number, its line, the units
that would do). A found fact is right when its (file, line, value) is labelled and its unit is one the
label accepts; a CSV fact when its (column, group) is labelled. Two sets are measured: the tuning set,
which the extractor was developed against, and a held-out set labelled afterwards and not tuned on.

    python bench/bench_facts.py          # add -v to list every miss and every false fact
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.facts_corpus import (CSV_LABELS, HELDOUT_CSV_LABELS, HELDOUT_TEXT_LABELS, TEXT_LABELS,  # noqa: E402
                                score)
from utils.tools.sources import facts_from, read_source  # noqa: E402


def extract(path: Path) -> list[dict]:
    return facts_from(read_source(path))


def main() -> None:
    verbose = "-v" in sys.argv
    print(f"{'set':<10} {'labels':>6} {'found':>6} {'right':>6} {'precision':>9} {'recall':>7} {'ms':>6}")
    for name, text, csv in (("tuning", TEXT_LABELS, CSV_LABELS), ("held-out", HELDOUT_TEXT_LABELS, HELDOUT_CSV_LABELS)):
        t0 = time.perf_counter()
        s = score(extract, text, csv)
        ms = (time.perf_counter() - t0) * 1000
        labels = s.true_pos + len(s.false_neg) + len(s.wrong_unit)
        found = s.true_pos + len(s.false_pos) + len(s.wrong_unit)
        print(f"{name:<10} {labels:>6} {found:>6} {s.true_pos:>6} {s.precision:>9.1%} {s.recall:>7.1%} {ms:>6.0f}")
        if verbose:
            for kind, items in (("false", s.false_pos), ("missed", s.false_neg), ("wrong unit", s.wrong_unit)):
                for item in items:
                    print(f"    {kind}: {item}")


if __name__ == "__main__":
    main()
