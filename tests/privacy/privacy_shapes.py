"""Accepted query shapes, how to run one on D and D′, and what may differ between the two answers.

A shape is one aggregate × one grouping (none, public keys, partition selection) × one WHERE
family of the whitelist (``sandbox/query/whitelist.py``). ``compare`` states the invariant of
docs/dp.md for one pair of outcomes:

- the same outcome: both answered, or both refused/failed with the same error class, code and
  charge (epsilon and delta the plan reserves before reading data);
- answered: the same columns, grouping, cost, mechanisms and threshold; the same released keys in
  public-key and no-grouping mode (in the same order); in partition-selection mode D′ (which only
  adds rows) releases every key of D, and a key only D′ releases has a count within one unit's
  rows of the threshold; values of the same Python type, finite, inside their bounds, and apart by
  no more than one unit can move them plus 20 times the 95% noise half-width (the answers run at a
  huge epsilon, so the noise is close to zero);
- no analyst-visible string is or contains a digest of the stored content or the source.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from privacy_data import TABLE, UNIT, Profile, Registered

from sandbox.errors import SandboxError
from sandbox.query import Engine, Result
from sandbox.settings import Settings

HUGE_EPSILON = 1e6  # the largest epsilon the engine accepts (sandbox.ranges.MAX_EPSILON)
SELECTION_DELTA = 1e-6
QUANTILE_CANDIDATES = Settings().quantile_candidates
NOISE_WIDTHS = 20.0  # slack in 95% half-widths: a Laplace draw beyond it has probability < 1e-20


@dataclass(frozen=True)
class Aggregate:
    """One aggregate output: its SQL, kind (for the tolerance) and measure column."""

    sql: str
    kind: str  # count, units, sum, avg, variance, stddev, quantile
    column: str | None = None

    @property
    def needs_count(self) -> bool:
        """Whether the tolerance needs the group's non-NULL count (released as companion ``c``)."""
        return self.kind in ("avg", "variance", "stddev", "quantile")


def _measure_aggregates(column: str) -> list[Aggregate]:
    return [
        Aggregate(f"COUNT({column})", "count", column),
        Aggregate(f"SUM({column})", "sum", column),
        Aggregate(f"AVG({column})", "avg", column),
        Aggregate(f"VARIANCE({column})", "variance", column),
        Aggregate(f"STDDEV({column})", "stddev", column),
        Aggregate(f"MEDIAN({column})", "quantile", column),
        Aggregate(f"QUANTILE_CONT({column}, 0.9)", "quantile", column),
    ]


AGGREGATES = [
    Aggregate("COUNT(*)", "count"),
    Aggregate(f"COUNT(DISTINCT {UNIT})", "units"),
    *_measure_aggregates("x"),
    *_measure_aggregates("n"),
]

# Grouping mode -> GROUP BY lists. k, t and d have public keys; the others are selected privately.
GROUPINGS: dict[str, list[tuple[str, ...]]] = {
    "none": [()],
    "public_keys": [("k",), ("t",), ("d",), ("k", "d")],
    "threshold": [
        ("s",),
        ("g",),
        ("u",),
        ("e",),
        ("k", "u"),
        ("year(e)",),
        ("date_trunc('day', u)",),
        ("lower(s)",),
    ],
}

# Whitelist family -> WHERE conditions over every column type.
WHERE_FAMILIES: dict[str, list[str]] = {
    "none": [],
    "comparison": [
        "g > 0",
        "x <= 1.5",
        "s <> 'a'",
        "u < TIMESTAMP '2024-01-01 00:00:00'",
        "t >= '2024-01-01 00:00:00'",
        "d >= DATE '2024-01-01'",
        "x IS NOT DISTINCT FROM 0",
        "e IS DISTINCT FROM d",
    ],
    "temporal_mix": ["t = u", "TRY_CAST(e AS TIMESTAMP) < u", "u > TIMESTAMP '1500-01-01 00:00:00'"],
    "boolean": ["(g > 0 AND NOT s = 'a') OR x < 0"],
    "between": ["x BETWEEN -1 AND 1", "e BETWEEN '2000-01-01' AND '9999-12-31'"],
    "in": ["s IN ('a', 'z', '数据')", "g IN (0, 7, 9223372036854775807)", "d IN ('9999-12-31')"],
    "is": ["x IS NULL", "u IS NOT NULL", "(g > 0) IS TRUE"],
    "arithmetic": ["g + 1 > 0", "x * x - 2 / x % 3 > 1", "-g < 0", "n * n > 2"],
    "numeric_functions": ["abs(g) > 1", "floor(x) <= ceil(x)", "sign(n) >= 0", "round(x, 2) = 1.5"],
    "string_functions": ["lower(s) = upper(s)", "trim(s) = 'a'", "length(s) > 2"],
    "string_predicates": ["starts_with(s, 'a')", "contains(s, '据')", "s LIKE 'a%'", "s NOT ILIKE '_'"],
    "date_parts": [
        "year(e) > 2000",
        "quarter(d) = 4",
        "month(u) = 1",
        "week(t) > 0",
        "day(e) > 0",
        "dayofmonth(d) > 0",
        "dayofyear(e) > 0",
        "dayofweek(u) >= 0",
        "isodow(t) > 0",
        "hour(u) = 0",
        "minute(t) = 0",
    ],
    "extract": ["extract(year FROM u) > 2000", "extract(isodow FROM e) = 1", "extract(minute FROM t) = 0"],
    "date_trunc": [
        "date_trunc('month', e) > DATE '2000-01-01'",
        "date_trunc('day', u) IS NOT NULL",
        "date_trunc('year', t) > TIMESTAMP '2000-01-01 00:00:00'",
    ],
    "substring": ["substring(s, 2, 1) = ''"],
    "concat": ["concat(s, g, x, e, u) <> ''", "s || 'x' = 'ax'"],
    "variadic": ["coalesce(x, 0) > greatest(g, 0)", "least(e, d) < DATE '3000-01-01'"],
    "nullif": ["nullif(s, 'a') IS NULL"],
    "case": [
        "CASE WHEN g = 7 THEN x > 0 ELSE TRUE END",
        "CASE WHEN g = 7 THEN TRY_CAST(e AS TIMESTAMP) < u END",
    ],
    "if": ["IF(s = 'a', g, 0) > 0"],
    "try_cast": [
        "TRY_CAST(s AS BIGINT) > 0",
        "TRY_CAST(x AS INTEGER) = 1",
        "TRY_CAST(g AS TINYINT) IS NULL",
        "TRY_CAST(g AS DOUBLE) > 0",
        "TRY_CAST(x AS DECIMAL(18, 3)) > 0",
        "TRY_CAST(x AS VARCHAR) = 'nan'",
        "TRY_CAST(s AS DATE) IS NULL",
        "TRY_CAST(u AS DATE) < e",
        "TRY_CAST(s AS BOOLEAN)",
    ],
    "literal_cast": ["e < CAST('2024-01-01' AS DATE)", "u > CAST('1700-01-01 00:00:00' AS TIMESTAMP)"],
}


@dataclass(frozen=True)
class Shape:
    """One query: aggregate, GROUP BY expressions, WHERE family and condition (or None)."""

    aggregate: Aggregate
    mode: str
    group_by: tuple[str, ...]
    family: str
    where: str | None

    @property
    def delta(self) -> float:
        """Partition selection needs delta; the other modes run at delta 0."""
        return SELECTION_DELTA if self.mode == "threshold" else 0.0

    def sql(self) -> str:
        """The query text: group keys, the aggregate as ``a``, companions ``c`` and ``r``."""
        keys = self.group_by
        outputs = [f"{key} AS g{i}" for i, key in enumerate(keys)]
        outputs.append(f"{self.aggregate.sql} AS a")
        if self.aggregate.needs_count:
            outputs.append(f"COUNT({self.aggregate.column}) AS c")
        if self.mode == "threshold" and self.aggregate.sql != "COUNT(*)":
            outputs.append("COUNT(*) AS r")
        text = f"SELECT {', '.join(outputs)} FROM {TABLE}"
        if self.where:
            text += f" WHERE {self.where}"
        if keys:
            text += f" GROUP BY {', '.join(keys)}"
        return text


def every_shape() -> list[Shape]:
    """Each aggregate × each grouping × each WHERE condition of each family (the full product)."""
    shapes = []
    for aggregate in AGGREGATES:
        for mode, lists in GROUPINGS.items():
            for group_by in lists:
                for family, conditions in WHERE_FAMILIES.items():
                    wheres: list[str | None] = [*conditions] or [None]
                    for where in wheres:
                        shapes.append(Shape(aggregate, mode, group_by, family, where))
    return shapes


def covering_shapes() -> list[Shape]:
    """Each aggregate × each grouping mode × each WHERE family, conditions of a family AND-ed.

    Every factor of the product appears with every other one, at about 1,200 queries.
    """
    shapes = []
    for aggregate in AGGREGATES:
        for index, (mode, lists) in enumerate(GROUPINGS.items()):
            for offset, (family, conditions) in enumerate(WHERE_FAMILIES.items()):
                group_by = lists[(index + offset) % len(lists)]
                where = " AND ".join(f"({c})" for c in conditions) or None
                shapes.append(Shape(aggregate, mode, group_by, family, where))
    return shapes


@dataclass(frozen=True)
class Outcome:
    """What an analyst gets for one query on one dataset."""

    error: tuple[str, str] | None  # (error class, code)
    charge: tuple[float, float] | None  # (epsilon, delta) reserved, None when refused at planning
    result: Result | None

    @property
    def answered(self) -> bool:
        """Whether a result came back."""
        return self.result is not None

    def describe(self) -> str:
        """One line for messages."""
        if self.result is None:
            return f"error {self.error} charged {self.charge}"
        return f"{len(self.result.rows)} row(s): {self.result.rows[:6]!r}"


def engine_for(side: Registered) -> Engine:
    """An engine over one side's catalog that accepts a huge epsilon."""
    return Engine(side.catalog, Settings(max_epsilon_per_query=HUGE_EPSILON))


def run(engine: Engine, sql: str, delta: float, epsilon: float = HUGE_EPSILON) -> Outcome:
    """Plan then execute, as the gateway does; the charge is what the plan reserved."""
    try:
        plan = engine.plan("p", sql, epsilon, delta)
    except SandboxError as error:
        return Outcome((type(error).__name__, error.code), None, None)
    charge = (plan.epsilon_spent, plan.delta_spent)
    try:
        return Outcome(None, charge, engine.execute(plan))
    except SandboxError as error:
        return Outcome((type(error).__name__, error.code), charge, None)
    except Exception as error:
        return Outcome((type(error).__name__, "internal"), charge, None)


def compare(shape: Shape, profile: Profile, d: Outcome, d_prime: Outcome) -> list[str]:
    """Every way the two outcomes differ beyond what noise and one unit allow (empty: none)."""
    if d.error != d_prime.error or d.charge != d_prime.charge:
        return [f"outcome differs: D {d.describe()} / D′ {d_prime.describe()}"]
    if d.result is None or d_prime.result is None:
        return []
    a, b = d.result, d_prime.result
    problems = [
        f"{name} differs: {x!r} / {y!r}"
        for name, x, y in (
            ("columns", a.columns, b.columns),
            ("grouping", a.grouping, b.grouping),
            ("epsilon", a.epsilon, b.epsilon),
            ("delta", a.delta, b.delta),
            ("dataset", a.dataset, b.dataset),
            ("suppressed_rows", a.suppressed_rows, b.suppressed_rows),
            ("mechanisms", [x.mechanisms for x in a.accuracy], [y.mechanisms for y in b.accuracy]),
            ("meta", a.meta, b.meta),
        )
        if x != y
    ]
    if problems:
        return problems
    width = len(shape.group_by)
    rows_a = {_key(r[:width]): r for r in a.rows}
    rows_b = {_key(r[:width]): r for r in b.rows}
    if len(rows_a) != len(a.rows) or len(rows_b) != len(b.rows):
        problems.append("two released rows have the same key")
    if shape.mode != "threshold":
        if [r[:width] for r in a.rows] != [r[:width] for r in b.rows]:
            problems.append(f"released keys differ: {_keys(a)} / {_keys(b)}")
    else:
        problems.extend(_selection_problems(shape, profile, a, rows_a, rows_b))
    ci_a, ci_b = _ci(a), _ci(b)
    for key in rows_a.keys() & rows_b.keys():
        pair = (rows_a[key], rows_b[key])
        problems.extend(_row_problems(shape, profile, a.columns, pair, (ci_a[key], ci_b[key])))
    return problems


def _key(values: list[Any]) -> tuple[tuple[str, str], ...]:
    """A key that keeps apart values Python would merge (1 and 1.0 and True, dates and strings)."""
    return tuple((type(v).__name__, repr(v)) for v in values)


def _keys(result: Result) -> list[Any]:
    width = len(result.columns) - len(result.accuracy)
    return [r[:width] for r in result.rows][:8]


def _ci(result: Result) -> dict[tuple[tuple[str, str], ...], dict[str, float]]:
    """Per released key, the 95% noise half-width of each aggregate column."""
    width = len(result.columns) - len(result.accuracy)
    cis: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for index, row in enumerate(result.rows):
        cis[_key(row[:width])] = {acc.column: acc.ci95[index] or 0.0 for acc in result.accuracy}
    return cis


def _selection_problems(
    shape: Shape,
    profile: Profile,
    a: Result,
    rows_a: dict[Any, list[Any]],
    rows_b: dict[Any, list[Any]],
) -> list[str]:
    """D′ adds rows only, so at a huge epsilon it keeps every key of D; a key it adds is one the
    added unit lifted over the threshold."""
    problems = []
    lost = rows_a.keys() - rows_b.keys()
    if lost:
        problems.append(f"keys released on D but not on D′: {sorted(lost)[:4]}")
    threshold = a.meta.get("threshold") or 0
    count_column = "a" if shape.aggregate.sql == "COUNT(*)" else "r"
    index = a.columns.index(count_column)
    for key in rows_b.keys() - rows_a.keys():
        count = rows_b[key][index]
        if count > threshold + profile.max_rows_per_unit + 1:
            problems.append(f"key {key} appears on D′ only with count {count} (threshold {threshold:.3g})")
    return problems


def _row_problems(
    shape: Shape,
    profile: Profile,
    columns: list[str],
    rows: tuple[list[Any], list[Any]],
    cis: tuple[dict[str, float], dict[str, float]],
) -> list[str]:
    """Types, finiteness, ranges and the move between D and D′ of one key's aggregate values."""
    problems = []
    count = rows[0][columns.index("c")] if "c" in columns else None
    for name in ("a", "c", "r"):
        if name not in columns:
            continue
        x, y = (row[columns.index(name)] for row in rows)
        if type(x) is not type(y):
            problems.append(f"{name}: types differ: {x!r} / {y!r}")
            continue
        if x is None:
            continue
        if not (isinstance(x, int | float) and math.isfinite(x) and math.isfinite(y)):
            problems.append(f"{name}: not a finite number: {x!r} / {y!r}")
            continue
        slack = NOISE_WIDTHS * max(cis[0].get(name, 0.0), cis[1].get(name, 0.0))
        slack += 1e-9 * max(abs(x), abs(y), 1.0)
        aggregate = shape.aggregate if name == "a" else Aggregate("", "count")
        low, high, reach = _allowed(aggregate, profile, count)
        for value in (x, y):
            if not low - slack <= value <= high + slack:
                problems.append(f"{name}: {value!r} outside [{low}, {high}]")
        moved = y - x
        if aggregate.kind in ("count", "units"):
            if not -slack <= moved <= reach + slack:
                problems.append(f"{name}: moved {moved!r} by one unit (allowed 0..{reach}): {x!r} -> {y!r}")
        elif abs(moved) > reach + slack:
            problems.append(f"{name}: moved {moved!r} by one unit (allowed ±{reach:.6g}): {x!r} -> {y!r}")
    return problems


def _allowed(aggregate: Aggregate, profile: Profile, count: Any) -> tuple[float, float, float]:
    """Range of a released value and how far one added unit may move it (before noise)."""
    k = profile.max_rows_per_unit
    if aggregate.kind in ("count", "units") or aggregate.column is None:
        return 0.0, math.inf, float(k)
    bounds = profile.bounds(aggregate.column)
    unit = 10.0 ** -(bounds.scale or 0) if aggregate.column == "x" else 1.0
    n = max(float(count or 0), 1.0)
    if aggregate.kind == "sum":
        return -math.inf, math.inf, k * bounds.magnitude + unit
    if aggregate.kind == "avg":
        return bounds.lower, bounds.upper, min(bounds.width, k * bounds.width / n) + unit
    if aggregate.kind == "quantile":
        # candidates c_i = L + i * step, step = ceil((U - L) / (m - 1)): the last may pass U
        units = round(bounds.width / unit)
        last = max(min(QUANTILE_CANDIDATES, units + 1) - 1, 1)
        top = bounds.lower + last * math.ceil(units / last) * unit
        return bounds.lower, top, top - bounds.lower
    half = (bounds.width / 2) ** 2
    variance = min(half, (k + 1) * bounds.width**2 / max(n - 1, 1.0)) + k * bounds.width**2 * 2**-20
    if aggregate.kind == "variance":
        return 0.0, half, variance + unit
    return 0.0, bounds.width / 2, math.sqrt(variance) + unit


HEX_RUN = re.compile(r"[0-9a-f]{16,}")


def strings_of(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_of(key)
            yield from strings_of(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_of(item)


def content_digests(side: Registered, source_bytes: bytes) -> set[str]:
    """Digests an owner or auditor may see: the source's SHA-256, every ``*sha256*`` field and the
    record's ``version`` (the SHA-256 of the metadata and content; analysts get an opaque id)."""
    digests = {hashlib.sha256(source_bytes).hexdigest()}
    if side.record is not None:
        digests.add(side.record.version.lower())
        for key, value in _items(side.record.model_dump(mode="json")):
            if "sha256" in key and isinstance(value, str):
                digests.add(value.lower())
    return digests


def _items(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key), item
            yield from _items(item)
    elif isinstance(value, list):
        for item in value:
            yield from _items(item)


def digest_leaks(result: Result, digests: set[str]) -> list[str]:
    """Analyst-visible strings that contain (16 hex digits or more of) a content digest."""
    leaks = []
    for text in strings_of(result.to_dict()):
        for run in HEX_RUN.findall(text.lower()):
            if any(run in digest for digest in digests):
                leaks.append(text)
    return leaks
