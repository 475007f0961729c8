"""Generate examples/data/sales.csv: SAMPLE data with a known relation, for the analysis workflow.

Why a script: the analysis tools are tested and demonstrated on data whose truth is known, so a reader
can check that the regression recovers it. Re-running this script rewrites the same file byte for byte
(fixed seed, stdlib `random` only).

Layout: 50 months (2021-01 .. 2025-02) x 4 regions (North, South, East, West) = 200 rows, columns
    month (categorical, "YYYY-MM"), region (categorical), ad_spend, price, visitors, revenue

The relation built in (before the injected defects):
    ad_spend ~ Uniform(5_000, 20_000)                     (currency units per month)
    price    ~ Normal(25, 2)                              (does not affect revenue)
    visitors = 3_000 + 0.15 * ad_spend + region effect + Normal(0, 300)
               region effect: North +500, South 0, East -300, West +200
    revenue  = 2_000 + 1.8 * ad_spend + 3.5 * visitors + Normal(0, 1_500)

Injected defects, so the `preprocess` tool has something to report:
    - 6 missing values: ad_spend rows 17 and 120, price row 45, visitors rows 88 and 151, region row 63
      (1-based data rows; written as an empty cell, "NA" or "null")
    - 3 outliers: price x 4 at data row 30, price x 0.2 at data row 150, visitors x 5 at data row 99
      (revenue is computed from the true visitors, so that row's visitors is a recording error)

Usage:  python examples/data/make_sample_data.py  [output.csv]
"""
from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

SEED = 20260105
REGIONS = {"North": 500.0, "South": 0.0, "East": -300.0, "West": 200.0}
MISSING = {(17, "ad_spend"): "", (120, "ad_spend"): "NA", (45, "price"): "", (88, "visitors"): "null",
           (151, "visitors"): "", (63, "region"): ""}
OUTLIERS = {(30, "price"): 4.0, (150, "price"): 0.2, (99, "visitors"): 5.0}


def make_rows(seed: int = SEED) -> list[dict]:
    """The 200 sample rows, defects included (values rounded as they would appear in an export)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for m in range(50):
        month = f"{2021 + m // 12}-{m % 12 + 1:02d}"
        for region, effect in REGIONS.items():
            ad = rng.uniform(5_000, 20_000)
            price = rng.gauss(25, 2)
            visitors = 3_000 + 0.15 * ad + effect + rng.gauss(0, 300)
            revenue = 2_000 + 1.8 * ad + 3.5 * visitors + rng.gauss(0, 1_500)
            rows.append({"month": month, "region": region, "ad_spend": round(ad, 2), "price": round(price, 2),
                         "visitors": round(visitors), "revenue": round(revenue, 2)})
    for (n, col), factor in OUTLIERS.items():
        value = rows[n - 1][col] * factor
        rows[n - 1][col] = round(value) if col == "visitors" else round(value, 2)
    for (n, col), marker in MISSING.items():
        rows[n - 1][col] = marker
    return rows


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("sales.csv")
    rows = make_rows()
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main(sys.argv)
