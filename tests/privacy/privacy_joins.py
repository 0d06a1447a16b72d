"""Neighbouring datasets with joins: ``people`` (the harness's table), ``visits`` about the same
units, and the public lookup ``lookup`` (``code`` → ``region``), registered as D and D′.

D′ adds one unit with rows in ``people`` and ``visits`` (possibly more visits than the bound: ingest
keeps some of that unit's rows, no one else's). Every unit of D keeps within both bounds, so D′ is D
plus that unit. A join shape is a harness ``Shape`` read from a join instead of ``people``, with an
optional analyst ``max_joined_rows_per_unit``; its comparison uses the joined bound ``k`` re-derived
here from the metadata (``k₁ · k₂`` on the unit, ``k₁`` through the lookup, lowered by the owner's
and the analyst's clamps) and ``cost``'s bounds, so one unit may move a value by what ``k`` joined
rows can.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from privacy_data import (
    DATASET,
    TABLE,
    UNIT,
    Bounds,
    Profile,
    Registered,
    Row,
    arrow_table,
    metadata,
    register_document,
)
from privacy_shapes import Aggregate, Shape

COST = Bounds(0, 1000)
KINDS = ["in", "out"]
LOOKUP = {"a": "north", "b": "north", "c": "south"}  # codes are people.k's public keys


@dataclass(frozen=True)
class JoinProfile:
    """What D and D′ share beyond the people table: the visits bound and the owner's clamp."""

    people: Profile
    visits_per_unit: int = 1
    owner_clamp: int | None = None


@dataclass(frozen=True)
class Source:
    """A FROM clause and what it joins."""

    sql: str
    visits: bool  # joins visits on the unit (k₁ · k₂), else only the lookup (k₁)
    lookup: bool


SOURCES = [
    Source("people p JOIN visits v ON p.uid = v.uid", visits=True, lookup=False),
    Source("people p LEFT JOIN visits v ON p.uid = v.uid", visits=True, lookup=False),
    Source("visits v JOIN people p USING (uid)", visits=True, lookup=False),
    Source("people p JOIN lookup l ON p.k = l.code", visits=False, lookup=True),
    Source("people p LEFT JOIN lookup l ON p.k = l.code", visits=False, lookup=True),
    Source(
        "visits v JOIN people p ON v.uid = p.uid LEFT JOIN lookup l ON p.k = l.code", visits=True, lookup=True
    ),
]
AGGREGATES = [
    Aggregate("COUNT(*)", "count"),
    Aggregate(f"COUNT(DISTINCT {UNIT})", "units"),
    Aggregate("SUM(x)", "sum", "x"),
    Aggregate("AVG(x)", "avg", "x"),
    Aggregate("SUM(cost)", "sum", "cost"),
    Aggregate("AVG(cost)", "avg", "cost"),
    Aggregate("MEDIAN(cost)", "quantile", "cost"),
    Aggregate("COUNT(*) FILTER (WHERE cost > 500)", "count"),
]
# (mode, GROUP BY) -> needs visits, needs the lookup
GROUPINGS: list[tuple[str, tuple[str, ...], bool, bool]] = [
    ("none", (), False, False),
    ("public_keys", ("p.k",), False, False),
    ("public_keys", ("l.region",), False, True),
    ("public_keys", ("v.kind",), True, False),
    ("public_keys", ("l.region", "v.kind"), True, True),
    ("threshold", ("p.s",), False, False),
    ("threshold", ("v.code",), True, False),
]
WHERES = [None, None, "cost > 500", "p.g > 0", "x <= 1.5 OR cost IS NULL"]


@dataclass(frozen=True)
class JoinShape:
    """A harness shape read from a join, with the analyst's clamp (None: not asked)."""

    shape: Shape
    source: Source
    requested: int | None = None

    def sql(self) -> str:
        """The shape's query with the join as its FROM."""
        return self.shape.sql().replace(f" FROM {TABLE}", f" FROM {self.source.sql}", 1)

    def bound(self, profile: JoinProfile) -> int:
        """The joined rows one unit may contribute, from the metadata (docs/sql.md, Joins)."""
        k = profile.people.max_rows_per_unit
        if self.source.visits:
            k *= profile.visits_per_unit
        if profile.owner_clamp is not None:
            k = min(k, profile.owner_clamp)
        return k if self.requested is None or self.requested > k else self.requested

    def profile(self, profile: JoinProfile) -> Profile:
        """The people profile the comparison reads: the joined bound, and cost's bounds for cost."""
        people = replace(profile.people, max_rows_per_unit=self.bound(profile))
        return replace(people, n=COST) if self.shape.aggregate.column == "cost" else people


def join_shapes() -> list[JoinShape]:
    """Every source × grouping it can answer × aggregate it can answer, WHERE rotating, with the
    analyst's clamp absent, 1 or 2 (2 may be above the bound: refused alike)."""
    shapes = []
    for s_index, source in enumerate(SOURCES):
        for g_index, (mode, group_by, visits, lookup) in enumerate(GROUPINGS):
            if (visits and not source.visits) or (lookup and not source.lookup):
                continue
            for a_index, aggregate in enumerate(AGGREGATES):
                if "cost" in aggregate.sql and not source.visits:
                    continue
                where = WHERES[(s_index + g_index + a_index) % len(WHERES)]
                if where is not None and "cost" in where and not source.visits:
                    where = None
                shape = Shape(aggregate, mode, group_by, "join", where)
                requested = (None, None, 1, 2)[(s_index + a_index) % 4]
                shapes.append(JoinShape(shape, source, requested))
    return shapes


def visits_table(rows: list[Row]) -> pa.Table:
    return pa.table(
        {
            UNIT: pa.array([r.get(UNIT) for r in rows], pa.int64()),
            "kind": pa.array([r.get("kind") for r in rows], pa.string()),
            "code": pa.array([r.get("code") for r in rows], pa.string()),
            "cost": pa.array([r.get("cost") for r in rows], pa.int64()),
        }
    )


def join_metadata(profile: JoinProfile) -> dict[str, Any]:
    """The people table of the harness, visits about the same unit, and the public lookup."""
    document = metadata(profile.people, f"{TABLE}.parquet")
    document["tables"] += [
        {
            "name": "visits",
            "source": "visits.parquet",
            "privacy_unit": UNIT,
            "max_rows_per_unit": profile.visits_per_unit,
            "columns": [
                {"name": UNIT, "role": "privacy_unit", "type": "BIGINT"},
                {"name": "kind", "role": "dimension", "type": "VARCHAR", "keys": KINDS},
                {"name": "code", "role": "dimension", "type": "VARCHAR"},
                {
                    "name": "cost",
                    "role": "measure",
                    "type": "BIGINT",
                    "lower": COST.lower,
                    "upper": COST.upper,
                },
            ],
        },
        {
            "name": "lookup",
            "source": "lookup.parquet",
            "public": True,
            "join_keys": ["code"],
            "columns": [
                {"name": "code", "role": "dimension", "type": "VARCHAR"},
                {"name": "region", "role": "dimension", "type": "VARCHAR"},
            ],
        },
    ]
    if profile.owner_clamp is not None:
        document["max_joined_rows_per_unit"] = profile.owner_clamp
    return document


def register(people: list[Row], visits: list[Row], profile: JoinProfile, home: Path) -> Registered:
    """Write the three tables as Parquet under ``home`` and register them in a catalog there."""
    folder = home / "source"
    folder.mkdir(parents=True)
    pq.write_table(arrow_table(people, profile.people), folder / f"{TABLE}.parquet")
    pq.write_table(visits_table(visits), folder / "visits.parquet")
    pq.write_table(
        pa.table({"code": list(LOOKUP), "region": list(LOOKUP.values())}), folder / "lookup.parquet"
    )
    return register_document(folder / f"{DATASET}.yaml", join_metadata(profile), home)


@dataclass
class JoinPair:
    """D (people and visits rows) and D′ (the same plus one unit's rows in both tables)."""

    profile: JoinProfile
    people: list[Row]
    visits: list[Row]
    added_people: list[Row]
    added_visits: list[Row]
    d: Registered = field(init=False, repr=False)
    d_prime: Registered = field(init=False, repr=False)

    def register(self, folder: Path) -> None:
        """Register D under ``folder/d`` and D′ (its added rows first) under ``folder/d_prime``."""
        self.d = register(self.people, self.visits, self.profile, folder / "d")
        self.d_prime = register(
            self.added_people + self.people, self.added_visits + self.visits, self.profile, folder / "d_prime"
        )

    def describe(self) -> str:
        """A reproduction: the profile, D's sizes, the added unit's rows."""
        return (
            f"{self.profile}\n  D: {len(self.people)} people rows, {len(self.visits)} visits rows; "
            f"first people {self.people[:3]!r}, first visits {self.visits[:3]!r}\n"
            f"  D′ adds: people {self.added_people!r}, visits {self.added_visits!r}"
        )
