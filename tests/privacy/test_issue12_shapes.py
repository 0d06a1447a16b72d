"""Issue 12's shapes on the same adversarial neighbours: histogram bins and conditional aggregates.

Bins over the measures ``x`` and ``n`` (FLOOR, WIDTH_BUCKET, CASE bands) are public keys derived
from the declared bounds, so D and D′ must release the same bins; conditional aggregates (FILTER
and its CASE spellings) must behave like their unconditioned aggregate. Each new aggregate runs with
every grouping mode and a spread of WHERE families; each existing aggregate runs with every bin key.
Joins need several tables per dataset: ``test_join_neighbours`` checks them on their own
neighbours.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from privacy_check import check_pair
from privacy_pairs import PAIRS
from privacy_shapes import AGGREGATES, GROUPINGS, WHERE_FAMILIES, Aggregate, Shape

CONDITIONAL = [
    Aggregate("COUNT(*) FILTER (WHERE x > 0)", "count"),
    Aggregate("COUNT(CASE WHEN u IS NOT NULL THEN 1 END)", "count"),
    Aggregate("SUM(CASE WHEN g > 0 THEN 1 ELSE 0 END)", "count"),
    Aggregate("COUNT(n) FILTER (WHERE s <> 'a')", "count", "n"),
    Aggregate("SUM(n) FILTER (WHERE TRY_CAST(e AS TIMESTAMP) < u)", "sum", "n"),
    Aggregate("SUM(CASE WHEN k = 'a' THEN x ELSE 0 END)", "sum", "x"),
]
BINS = [
    ("FLOOR(n / 10) * 10",),  # too many bins under the widest bounds: rejected alike
    ("WIDTH_BUCKET(x, -1, 1, 4)",),
    ("CASE WHEN x < 0 THEN 'neg' WHEN x < 1 THEN 'small' ELSE 'big' END",),
    ("k", "FLOOR(x / 5)"),
]
FAMILIES = ("none", "comparison", "temporal_mix", "case", "arithmetic", "try_cast")


def issue12_shapes() -> list[Shape]:
    """New aggregates × every grouping (bins included) × a spread of WHERE families; every existing
    aggregate × every bin key."""
    groupings = [(mode, keys) for mode, lists in GROUPINGS.items() for keys in lists[:2]]
    groupings += [("public_keys", keys) for keys in BINS]
    shapes = []
    for aggregate in CONDITIONAL:
        for index, (mode, keys) in enumerate(groupings):
            family = FAMILIES[index % len(FAMILIES)]
            where = " AND ".join(f"({c})" for c in WHERE_FAMILIES[family]) or None
            shapes.append(Shape(aggregate, mode, keys, family, where))
    for aggregate in AGGREGATES:
        for keys in BINS:
            shapes.append(Shape(aggregate, "public_keys", keys, "none", None))
    return shapes


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_issue12_shapes_on_adversarial_neighbours(name: str, tmp_path: Path) -> None:
    pair, _, _ = PAIRS[name]
    report = check_pair(pair, tmp_path, issue12_shapes())
    assert report.registered
    assert report.answered > report.ran // 2, f"only {report.answered} of {report.ran} shapes answered"
    assert not report.problems, report.message(pair)
