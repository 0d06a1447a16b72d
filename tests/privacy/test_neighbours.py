"""Property: on neighbouring datasets every accepted query shape gives the same outcome (docs/dp.md).

Hypothesis draws D (units repeated to make large groups), one added unit placed adversarially
(values from the extreme pools of ``privacy_data``, often colliding with D's values) and a few
query shapes from the full product of ``privacy_shapes``, some with HAVING/ORDER BY/LIMIT, a
minimum group size or the Gaussian mechanism; ``privacy_check.check_pair`` lists every
difference an analyst could see. The example budget is the profile's (``privacy_profile``).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st
from privacy_check import check_pair
from privacy_data import (
    BIGINT_POOL,
    DATE_POOL,
    DAY_9999,
    DOUBLE_POOL,
    N_BOUNDS,
    STRING_KEYS,
    STRING_POOL,
    TIMESTAMP_POOL,
    X_BOUNDS,
    Pair,
    Profile,
    Row,
    twin,
    with_units,
)
from privacy_profile import chosen
from privacy_shapes import MIN_GROUP_SIZES, POSTS, Shape, every_shape, probe_shapes

ADDED_UID = 1_000_000
SHAPES = every_shape()
PROBES = probe_shapes()

# Wide bounds and CSV sources are drawn less often: the catalogue may refuse such bounds (both sides
# alike) or a CSV value its declared type cannot hold (the owner sees why), and then there is
# nothing to compare.
profiles = st.builds(
    Profile,
    source=st.sampled_from(["parquet", "parquet", "csv"]),
    time_unit=st.sampled_from(["ns", "us"]),
    max_rows_per_unit=st.integers(1, 2),
    x=st.sampled_from([*[X_BOUNDS[0]] * 6, *[X_BOUNDS[2]] * 3, X_BOUNDS[1]]),
    n=st.sampled_from([*[N_BOUNDS[0]] * 6, *[N_BOUNDS[2]] * 3, N_BOUNDS[1]]),
)


def _in_csv(value: int | None, per_second: int) -> bool:
    """Whether a raw temporal value is written to CSV as text a TIMESTAMP or DATE can read back
    (whole microseconds, years 1 to 9999; ``per_second`` 0 for days)."""
    if value is None:
        return True
    if per_second == 0:
        return -719_162 <= value <= DAY_9999
    seconds, fraction = divmod(value, per_second)
    return fraction % max(per_second // 10**6, 1) == 0 and -62_135_596_800 <= seconds < 253_402_300_800


def rows(profile: Profile) -> st.SearchStrategy[Row]:
    """One row: every column from its adversarial pool, measures sometimes ordinary values. D's rows
    in a CSV source keep to temporal values CSV text can hold (the added unit may still break that)."""
    timestamp_pool, date_pool = TIMESTAMP_POOL[profile.time_unit], DATE_POOL
    if profile.source == "csv":
        per_second = 10**9 if profile.time_unit == "ns" else 10**6
        timestamp_pool = tuple(v for v in timestamp_pool if _in_csv(v, per_second))
        date_pool = tuple(v for v in date_pool if _in_csv(v, 0))
    timestamps = st.sampled_from(timestamp_pool)
    dates = st.sampled_from(date_pool)
    return st.fixed_dictionaries(
        {
            "k": st.sampled_from([*STRING_KEYS, "z", None]),
            "s": st.sampled_from(STRING_POOL),
            "g": st.sampled_from(BIGINT_POOL),
            "t": timestamps,
            "u": timestamps,
            "d": dates,
            "e": dates,
            "f": st.sampled_from(DOUBLE_POOL),
            "x": st.sampled_from(DOUBLE_POOL) | st.floats(-20, 20, allow_nan=False),
            "n": st.sampled_from(BIGINT_POOL) | st.integers(-200, 200),
        }
    )


@st.composite
def added_row(draw: st.DrawFn, profile: Profile, base: list[Row]) -> Row:
    """A row of the added unit: each column a fresh extreme, a copy of a row of D, or its twin (a
    value DuckDB keeps apart from it that Python does not)."""
    fresh = draw(rows(profile))
    if not base:
        return fresh
    model = draw(st.sampled_from(base))
    row: Row = {}
    for column, value in fresh.items():
        how = draw(st.sampled_from(["fresh", "copy", "twin"]))
        row[column] = (
            value
            if how == "fresh"
            else model[column]
            if how == "copy"
            else twin(profile, column, model[column])
        )
    return row


@st.composite
def pairs(draw: st.DrawFn) -> Pair:
    """D: a few unit templates, each repeated for up to 40 units; D′: D plus one unit."""
    profile = draw(profiles)
    unit_rows = st.lists(rows(profile), min_size=1, max_size=profile.max_rows_per_unit)
    templates = draw(st.lists(st.tuples(unit_rows, st.integers(1, 40)), max_size=4))
    base = with_units([template for template, copies in templates for _ in range(copies)])
    size = draw(st.integers(1, profile.max_rows_per_unit))
    added = with_units([[draw(added_row(profile, base)) for _ in range(size)]], first_uid=ADDED_UID)
    return Pair(profile, base, added, added_first=draw(st.booleans()))


@st.composite
def variants(draw: st.DrawFn, shape: Shape) -> Shape:
    """The shape, often as is, else with post-release clauses, a minimum group size (1 blanks
    only empty cells) or the Gaussian mechanism."""
    posts = [None] * 4 + [p for p in POSTS if shape.group_by or not p.grouped]
    return replace(
        shape,
        post=draw(st.sampled_from(posts)),
        min_group_size=draw(st.sampled_from([0, 0, 0, 0, 1, *MIN_GROUP_SIZES])),
        mechanism=draw(st.sampled_from(["laplace"] * 4 + ["gaussian"])),
    )


@chosen()  # type: ignore[untyped-decorator]  # given() returns Callable[..., None]
@given(pair=pairs(), shapes=st.lists(st.sampled_from(SHAPES).flatmap(variants), min_size=1, max_size=8))
def test_neighbours_get_the_same_answers(pair: Pair, shapes: list[Shape]) -> None:
    """D and D′ are indistinguishable except through noise, whatever the query shape (the drawn
    shapes, and COUNT(*) by every grouping)."""
    with tempfile.TemporaryDirectory() as folder:
        report = check_pair(pair, Path(folder), PROBES + shapes)
    event("registered" if report.registered else "one side not registered (owner sees why)")
    assert not report.problems, report.message(pair)
