"""Which rows D and D′ may release: key sets, HAVING/ORDER BY/LIMIT and small-group suppression.

Everything here reads released values only, as the engine does after the noise (docs/dp.md,
"Post-processing"):

- without post-release clauses, public keys are released in the same order on D and D′; under
  partition selection D′ (which only adds rows) keeps D's keys at a huge epsilon and adds only
  keys its unit lifted over the threshold;
- clauses on group keys keep and order the same keys on both sides;
- clauses on noisy values may keep other keys (post-processing of noise), but on each side every
  kept row passes the HAVING condition on its released value, the rows follow ORDER BY and LIMIT
  is respected; ORDER BY values + LIMIT keeps the same number of rows on both sides; a key kept by
  ``HAVING a > edge`` on one side only has a value within one unit's reach of the edge;
- ``min_group_size`` blanks every aggregate of a row whose noisy count is below it: on each side
  the blank rows are exactly those counted in ``suppressed_rows`` and every other row's count is at
  least the minimum; a row blank on one side only has a count within one unit's reach of it.
"""

from __future__ import annotations

from typing import Any

from privacy_data import Profile
from privacy_shapes import Aggregate, Shape
from privacy_values import NOISE_WIDTHS, Key, allowed, keys_of

from sandbox.query import Result

Rows = dict[Key, list[Any]]
Cis = dict[Key, dict[str, float]]


def count_column(shape: Shape) -> str:
    """The released column holding the group's noisy row count."""
    return "a" if shape.aggregate.sql == "COUNT(*)" else "r"


def suppressed(shape: Shape, columns: list[str], rows: tuple[list[Any], list[Any]]) -> bool:
    """Whether either side blanked this key's row (``min_group_size``)."""
    index = columns.index(count_column(shape))
    return any(row[index] is None for row in rows)


def side_problems(shape: Shape, result: Result) -> list[str]:
    """What one answer must satisfy on its own: its HAVING, ORDER BY, LIMIT and suppression."""
    problems: list[str] = []
    columns, rows = result.columns, result.rows
    post = shape.post
    if post is not None and post.limit is not None and len(rows) > post.limit:
        problems.append(f"{len(rows)} rows past LIMIT {post.limit}")
    if post is not None and post.reads in columns:
        values = [row[columns.index(post.reads)] for row in rows]
        if post.edge is not None and not all(v is not None and v > post.edge for v in values):
            problems.append(f"a kept row fails HAVING {post.having}: {values[:8]}")
        name, *direction = (post.order or "-").split()
        if name == post.reads:
            descending = direction == ["DESC"]
            present = [v for v in values if v is not None]
            nulls = [v is None for v in values]  # NULLS FIRST ascending, NULLS LAST descending
            if present != sorted(present, reverse=descending) or nulls != sorted(
                nulls, reverse=not descending
            ):
                problems.append(f"rows not in ORDER BY {post.order}: {values[:8]}")
    if shape.min_group_size:
        width = len(shape.group_by)
        index = columns.index(count_column(shape))
        blank = [row for row in rows if row[index] is None]
        if len(blank) != result.suppressed_rows:
            problems.append(f"{len(blank)} blank rows, suppressed_rows {result.suppressed_rows}")
        if any(v is not None for row in blank for v in row[width:]):
            problems.append("a suppressed row releases an aggregate")
        low = [row[index] for row in rows if row[index] is not None and row[index] < shape.min_group_size]
        if low:
            problems.append(f"counts below min_group_size {shape.min_group_size} released: {low[:4]}")
    return problems


def key_problems(
    shape: Shape,
    profile: Profile,
    results: tuple[Result, Result],
    rows: tuple[Rows, Rows],
    cis: tuple[Cis, Cis],
) -> list[str]:
    """The keys D and D′ release, compared (see the module docstring)."""
    a, b = results
    rows_a, rows_b = rows
    post = shape.post
    limited = post is not None and post.limit is not None
    by_values = post is not None and post.reads is not None and (post.having is not None or limited)
    problems = []
    if shape.mode != "threshold":
        if post is None or post.reads is None:
            if [r[: len(shape.group_by)] for r in a.rows] != [r[: len(shape.group_by)] for r in b.rows]:
                problems.append(f"released keys differ: {keys_of(a)} / {keys_of(b)}")
        elif not by_values and rows_a.keys() != rows_b.keys():
            problems.append(f"released key sets differ: {keys_of(a)} / {keys_of(b)}")
        elif post.having is None and len(a.rows) != len(b.rows):
            problems.append(f"row counts differ under LIMIT: {len(a.rows)} / {len(b.rows)}")
        elif post.edge is not None and not limited:
            problems += _edge_problems(shape, profile, rows, cis)
    elif not by_values:
        problems += selection_problems(shape, profile, a, rows_a, rows_b, keeps_all=not limited)
    if shape.min_group_size:
        problems += _suppression_problems(shape, profile, a.columns, rows, cis)
    return problems


def _edge_problems(
    shape: Shape, profile: Profile, rows: tuple[Rows, Rows], cis: tuple[Cis, Cis]
) -> list[str]:
    """A key kept by ``HAVING a > edge`` on one side only is one unit's move away from the edge."""
    assert shape.post is not None and shape.post.edge is not None
    problems = []
    rows_a, rows_b = rows
    edge = shape.post.edge
    for side, mine, theirs, ci in (("D", rows_a, rows_b, cis[0]), ("D′", rows_b, rows_a, cis[1])):
        for key in mine.keys() - theirs.keys():
            value = mine[key][len(shape.group_by)]  # the edge is on ``a``
            _, _, reach = allowed(shape.aggregate, profile, None)
            slack = NOISE_WIDTHS * ci[key].get("a", 0.0) + 1e-9 * max(abs(value), 1.0)
            if value - edge > reach + slack:
                problems.append(f"key {key} kept on {side} only with {value!r}, {edge} + {reach} at most")
    return problems


def _suppression_problems(
    shape: Shape, profile: Profile, columns: list[str], rows: tuple[Rows, Rows], cis: tuple[Cis, Cis]
) -> list[str]:
    """A cell suppressed on one side only has a count within one unit's reach of the minimum."""
    problems = []
    name = count_column(shape)
    index = columns.index(name)
    _, _, reach = allowed(Aggregate("", "count"), profile, None)
    rows_a, rows_b = rows
    for key in rows_a.keys() & rows_b.keys():
        counts = rows_a[key][index], rows_b[key][index]
        if (counts[0] is None) == (counts[1] is None):
            continue
        count = counts[0] if counts[0] is not None else counts[1]
        slack = NOISE_WIDTHS * max(cis[0][key].get(name, 0.0), cis[1][key].get(name, 0.0))
        if count is None or count - shape.min_group_size > reach + slack:
            problems.append(
                f"key {key} suppressed on one side only, count {counts} (minimum {shape.min_group_size})"
            )
    return problems


def selection_problems(
    shape: Shape, profile: Profile, a: Result, rows_a: Rows, rows_b: Rows, *, keeps_all: bool = True
) -> list[str]:
    """D′ adds rows only, so at a huge epsilon it keeps every key of D (``keeps_all``: unless a
    LIMIT cut it); a key it adds is one the added unit lifted over the threshold."""
    problems = []
    lost = rows_a.keys() - rows_b.keys()
    if lost and keeps_all:
        problems.append(f"keys released on D but not on D′: {sorted(lost)[:4]}")
    threshold = a.meta.get("threshold") or 0
    index = a.columns.index(count_column(shape))
    for key in rows_b.keys() - rows_a.keys():
        count = rows_b[key][index]
        if count is not None and count > threshold + profile.max_rows_per_unit + 1:
            problems.append(f"key {key} appears on D′ only with count {count} (threshold {threshold:.3g})")
    return problems
