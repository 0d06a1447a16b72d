"""Accepted query shapes: each aggregate × each grouping mode × each WHERE family of the whitelist,
and the settings around them (HAVING/ORDER BY/LIMIT, ``min_group_size``, the Gaussian mechanism).

A shape is one aggregate, one grouping (none, public keys, partition selection) and one WHERE
condition from a family of ``sandbox/query/whitelist.py`` (the one whitelist); ``Shape.sql`` writes
the query, with the companions the comparison needs (``c``: the measure's non-NULL count, for the
tolerance of AVG/VARIANCE/STDDEV/quantiles; ``r``: the row count, in partition-selection mode and
under ``min_group_size``). A shape may add post-release clauses (``Post``), a minimum group size
and the Gaussian mechanism; ``settings_shapes`` crosses those with the grouping modes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from privacy_data import TABLE, UNIT

SELECTION_DELTA = 1e-6
# The Gaussian mechanism's largest epsilon the engine can calibrate (at 1e5 OpenDP's conversion to
# rho overflows and the plan fails with an internal error, on D and D′ alike).
GAUSSIAN_EPSILON = 1e4
HUGE_EPSILON = 1e6  # the largest epsilon the engine accepts (sandbox.ranges.MAX_EPSILON)


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

# Grouping mode -> GROUP BY lists. k, t, d and f have public keys; the others are selected privately.
GROUPINGS: dict[str, list[tuple[str, ...]]] = {
    "none": [()],
    "public_keys": [("k",), ("t",), ("d",), ("f",), ("k", "d")],
    "threshold": [
        ("s",),
        ("g",),
        ("u",),
        ("e",),
        ("k", "u"),
        ("year(e)",),
        ("date_trunc('day', u)",),
        ("lower(s)",),
        ("f * 1",),
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
        "f = 0",
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
class Post:
    """HAVING, ORDER BY and LIMIT over the released table.

    ``reads``: the released column the clauses read (None: group keys only, so they keep or order
    rows the same way on D and D′). ``edge``: the HAVING condition is ``reads > edge`` (a key kept
    on one side only must then sit within one unit's reach of the edge); None with ``reads`` set:
    a HAVING on an aggregate the query does not release (nothing to bound; rows may differ).
    """

    having: str | None = None
    order: str | None = None
    limit: int | None = None
    reads: str | None = None
    edge: float | None = None
    grouped: bool = True  # uses the group key g0 (not for queries without GROUP BY)

    def sql(self) -> str:
        """The clauses, after GROUP BY."""
        text = f" HAVING {self.having}" if self.having else ""
        text += f" ORDER BY {self.order}" if self.order else ""
        return text + (f" LIMIT {self.limit}" if self.limit is not None else "")


POSTS = [
    Post(having="g0 IS NOT NULL"),  # HAVING on a group key
    Post(order="g0 DESC", limit=1),  # ORDER BY a group key, LIMIT
    Post(order="1", limit=2),  # ORDER BY a position
    Post(order="g0 IS NULL DESC, g0", limit=3),  # ORDER BY an expression of a key
    Post(limit=2, grouped=False),  # LIMIT alone: the first rows in key order
    Post(limit=0, grouped=False),
    Post(order="a DESC", limit=1, reads="a", grouped=False),  # which key survives depends on noise
    Post(order="COUNT(*) DESC", limit=1, reads="COUNT(*)", grouped=False),  # an aggregate not in SELECT
    Post(having="a > 40", order="a", reads="a", edge=40.0, grouped=False),  # 40: the large group
    Post(having="a > 6 AND g0 IS NOT NULL", reads="a", edge=6.0),
    Post(having="SUM(n) > 0", order="g0", reads="SUM(n)"),  # an aggregate released only to HAVING
]


@dataclass(frozen=True)
class Shape:
    """One query: aggregate, GROUP BY expressions, WHERE family and condition (or None), and the
    settings around it: post-release clauses, minimum group size, mechanism."""

    aggregate: Aggregate
    mode: str
    group_by: tuple[str, ...]
    family: str
    where: str | None
    post: Post | None = None
    min_group_size: int = 0
    mechanism: str = "laplace"

    @property
    def delta(self) -> float:
        """Partition selection and the Gaussian mechanism need delta; the rest runs at delta 0."""
        return SELECTION_DELTA if self.mode == "threshold" or self.mechanism == "gaussian" else 0.0

    @property
    def epsilon(self) -> float:
        """A huge epsilon (the noise is close to zero), the largest the mechanism can calibrate."""
        return GAUSSIAN_EPSILON if self.mechanism == "gaussian" else HUGE_EPSILON

    def sql(self) -> str:
        """The query text: group keys, the aggregate as ``a``, companions ``c`` and ``r``."""
        keys = self.group_by
        outputs = [f"{key} AS g{i}" for i, key in enumerate(keys)]
        outputs.append(f"{self.aggregate.sql} AS a")
        if self.aggregate.needs_count:
            outputs.append(f"COUNT({self.aggregate.column}) AS c")
        if (self.mode == "threshold" or self.min_group_size > 0) and self.aggregate.sql != "COUNT(*)":
            outputs.append("COUNT(*) AS r")
        text = f"SELECT {', '.join(outputs)} FROM {TABLE}"
        if self.where:
            text += f" WHERE {self.where}"
        if keys:
            text += f" GROUP BY {', '.join(keys)}"
        return text + (self.post.sql() if self.post else "")


def probe_shapes() -> list[Shape]:
    """COUNT(*) by every grouping, without WHERE: cheap queries that see any group key collision."""
    return [
        Shape(AGGREGATES[0], mode, group_by, "none", None)
        for mode, lists in GROUPINGS.items()
        for group_by in lists
    ]


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


def covering_shapes(part: int = 0, parts: int = 1) -> list[Shape]:
    """Each aggregate × each grouping mode × each WHERE family, conditions of a family AND-ed (the
    grouping rotates through its mode's lists); ``part`` of ``parts`` takes every ``parts``-th.

    Every factor of the product appears with every other one, at about 1,200 queries.
    """
    shapes = []
    for aggregate in AGGREGATES:
        for index, (mode, lists) in enumerate(GROUPINGS.items()):
            for offset, (family, conditions) in enumerate(WHERE_FAMILIES.items()):
                group_by = lists[(index + offset) % len(lists)]
                where = " AND ".join(f"({c})" for c in conditions) or None
                shapes.append(Shape(aggregate, mode, group_by, family, where))
    return shapes[part::parts]


# A few aggregates for the settings shapes: a count, an additive sum, a ratio, a quantile.
SETTINGS_AGGREGATES = [AGGREGATES[0], AGGREGATES[3], AGGREGATES[12], AGGREGATES[7]]
# min_group_size 41: one more than D's large group (so D′'s unit lifts it over); 5: the NULL group.
MIN_GROUP_SIZES = (41, 5)


def settings_shapes(part: int = 0, parts: int = 1) -> list[Shape]:
    """Post-release clauses, ``min_group_size`` and the Gaussian mechanism, each × grouping mode ×
    a few aggregates (no WHERE, or one WHERE family, rotating); ``part`` of ``parts``."""
    families = [f for f in WHERE_FAMILIES if f != "none"]
    bases: list[Shape] = []
    for index, aggregate in enumerate(SETTINGS_AGGREGATES):
        for mode, lists in GROUPINGS.items():
            family = families[(index * 3 + len(bases)) % len(families)]
            where = WHERE_FAMILIES[family][0] if index % 2 else None
            group_by = lists[index % len(lists)]
            bases.append(Shape(aggregate, mode, group_by, family if where else "none", where))
    shapes = []
    for base in bases:
        for post in POSTS:
            if base.group_by or not post.grouped:
                shapes.append(replace(base, post=post))
        for size in MIN_GROUP_SIZES:
            shapes.append(replace(base, min_group_size=size))
        shapes.append(replace(base, mechanism="gaussian"))
        shapes.append(replace(base, mechanism="gaussian", min_group_size=MIN_GROUP_SIZES[0], post=POSTS[1]))
    return shapes[part::parts]
