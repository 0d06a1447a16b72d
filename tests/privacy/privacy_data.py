"""Neighbouring datasets for the privacy harness: a table D, the same table plus one privacy unit (D′),
both written as the same kind of source (CSV or Parquet) and registered with the library API.

Every column holds values an adversary would pick: BIGINT and DOUBLE extremes, NULL, NaN, ±inf,
temporal extremes (TIMESTAMP_NS values 1 ns apart, 1677 and 2262 at the edges of TIMESTAMP_NS,
``infinity`` next to ``9999-12-31``, dates no TIMESTAMP can hold) and keys that collide once they
leave DuckDB. Temporal values are held as raw integers (days, µs or ns since 1970) so that the
values Python's ``datetime`` cannot represent can still be written.

D and D′ are registered in two catalogs (two homes) under the same dataset name, so that a query
text is the same on both and everything an analyst receives can be compared field by field.
Each unit has at most ``max_rows_per_unit`` rows, so contribution bounding (a random choice of rows)
never runs and D′ is exactly D plus the added unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from sandbox.catalog import Catalog, ColumnSpec, DatasetRecord
from sandbox.errors import SandboxError

DATASET = "p"
TABLE = "people"
UNIT = "uid"

# Raw temporal values.
DAY_2024 = 19_723  # 2024-01-01 in days since 1970-01-01
DAY_9999 = 2_932_896  # 9999-12-31
DAY_INFINITY = 2**31 - 1  # DuckDB's DATE 'infinity'
SECOND_2024 = DAY_2024 * 86_400
I64_MAX = 2**63 - 1  # DuckDB's TIMESTAMP 'infinity' (any unit)

DATE_POOL: tuple[int | None, ...] = (
    DAY_2024,
    DAY_9999,
    DAY_INFINITY,
    -DAY_INFINITY,  # -infinity
    DAY_9999 + 1,  # 10000-01-01: a DATE with no TIMESTAMP
    -719_162,  # 0001-01-01
    -719_163,  # 0001-12-31 (BC)
    -200_000,  # 1422: outside TIMESTAMP_NS
    0,
    None,
)
TIMESTAMP_POOL: dict[str, tuple[int | None, ...]] = {
    "ns": (
        SECOND_2024 * 10**9,
        SECOND_2024 * 10**9 + 1,  # 1 ns later: the same Python datetime
        SECOND_2024 * 10**9 + 1_000,  # 1 µs later
        -9_223_372_036_854_775_000,  # 1677-09-21, near the lower edge
        9_223_372_036_854_775_000,  # 2262-04-11, near the upper edge
        I64_MAX,  # infinity
        -I64_MAX,  # -infinity
        0,
        None,
    ),
    "us": (
        SECOND_2024 * 10**6,
        SECOND_2024 * 10**6 + 1,
        253_402_300_799_999_999,  # 9999-12-31 23:59:59.999999
        253_402_300_800_000_000,  # 10000-01-01
        I64_MAX,  # infinity, shown as 9999-12-31 23:59:59.999999 in Python
        -I64_MAX,
        -62_135_596_800_000_000,  # 0001-01-01
        -14_831_769_600_000_000,  # 1500-01-01: outside TIMESTAMP_NS
        None,
    ),
}
# Values DuckDB keeps apart that become the same Python value (a group key collision).
TWINS: dict[str, dict[int, int]] = {
    "date": {DAY_9999: DAY_INFINITY, DAY_INFINITY: DAY_9999, -719_162: -DAY_INFINITY},
    "ns": {SECOND_2024 * 10**9: SECOND_2024 * 10**9 + 1, SECOND_2024 * 10**9 + 1: SECOND_2024 * 10**9},
    "us": {
        253_402_300_799_999_999: I64_MAX,
        I64_MAX: 253_402_300_799_999_999,
        -62_135_596_800_000_000: -I64_MAX,
    },
}
TIMESTAMP_KEYS = {
    "ns": ["2024-01-01 00:00:00", "2024-01-01 00:00:00.000001"],
    "us": ["2024-01-01 00:00:00", "9999-12-31 23:59:59.999999"],
}
DATE_KEYS = ["2024-01-01", "9999-12-31"]
DOUBLE_KEYS = [0.0, 1.5]
STRING_KEYS = ["a", "b", "c"]
STRING_POOL: tuple[str | None, ...] = (
    "a",
    "b",
    "c",
    "z",
    "A",
    "",
    " a",
    "%",
    "_",
    "数据",
    "1",
    "a" * 300,
    None,
)
BIGINT_POOL: tuple[int | None, ...] = (
    0,
    1,
    -1,
    7,
    2**53 + 1,
    2**62,
    2**62 + 1,
    2**63 - 1,
    -(2**63),
    None,
)
DOUBLE_POOL: tuple[float | None, ...] = (
    0.0,
    -0.0,
    1.5,
    -2.25,
    9e9,
    1e308,
    -1e308,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
    None,
)


@dataclass(frozen=True)
class Bounds:
    """Declared clamping bounds of a measure (``scale`` only for DOUBLE)."""

    lower: float
    upper: float
    scale: int | None = None

    @property
    def width(self) -> float:
        """``upper - lower``."""
        return self.upper - self.lower

    @property
    def magnitude(self) -> float:
        """``max(|lower|, |upper|)``: what one row can add to a SUM."""
        return max(abs(self.lower), abs(self.upper))


X_BOUNDS = (Bounds(-10.0, 10.0, 2), Bounds(0.0, 9e9, 9), Bounds(-1e6, 1e6, 0))
N_BOUNDS = (Bounds(0, 100), Bounds(-(2.0**62), 2.0**62), Bounds(-1000, 1000))


@dataclass(frozen=True)
class Profile:
    """What D and D′ share: source kind, timestamp unit, contribution bound, measure bounds."""

    source: str = "parquet"  # "parquet" or "csv"
    time_unit: str = "ns"  # "ns" or "us" (the Parquet type of t and u)
    max_rows_per_unit: int = 1
    x: Bounds = X_BOUNDS[0]
    n: Bounds = N_BOUNDS[0]

    def bounds(self, column: str) -> Bounds:
        """Bounds of measure ``x`` or ``n``."""
        return self.x if column == "x" else self.n


Row = dict[str, Any]

# Column name -> (Arrow type of the raw value, declared role, type an owner would declare).
COLUMNS: dict[str, tuple[str, str, str]] = {
    "uid": ("int64", "privacy_unit", "BIGINT"),
    "k": ("string", "dimension", "VARCHAR"),  # public keys
    "s": ("string", "dimension", "VARCHAR"),
    "g": ("int64", "dimension", "BIGINT"),
    "t": ("timestamp", "dimension", "TIMESTAMP"),  # public keys
    "u": ("timestamp", "dimension", "TIMESTAMP"),
    "d": ("date", "dimension", "DATE"),  # public keys
    "e": ("date", "dimension", "DATE"),
    "f": ("float64", "dimension", "DOUBLE"),  # public keys
    "x": ("float64", "measure", "DOUBLE"),
    "n": ("int64", "measure", "BIGINT"),
}


def arrow_table(rows: list[Row], profile: Profile) -> pa.Table:
    """The rows as an Arrow table with the profile's column types."""
    arrays: dict[str, pa.Array] = {}
    for name, (kind, _, _) in COLUMNS.items():
        values = [row.get(name) for row in rows]
        if kind == "timestamp":
            arrays[name] = pa.array(values, pa.int64()).cast(pa.timestamp(profile.time_unit))
        elif kind == "date":
            arrays[name] = pa.array(values, pa.int32()).cast(pa.date32())
        else:
            arrays[name] = pa.array(values, getattr(pa, kind)())
    return pa.table(arrays)


def write_source(rows: list[Row], profile: Profile, folder: Path) -> Path:
    """Write the rows as ``people.parquet`` or ``people.csv`` (CSV as DuckDB writes it)."""
    table = arrow_table(rows, profile)
    if profile.source == "parquet":
        path = folder / f"{TABLE}.parquet"
        pq.write_table(table, path)
        return path
    path = folder / f"{TABLE}.csv"
    with duckdb.connect() as con:
        con.register("rows_", table)
        con.execute(f"COPY rows_ TO '{path.as_posix()}' (HEADER, DELIMITER ',')")
    return path


def metadata(profile: Profile, source: str) -> dict[str, Any]:
    """The owner's metadata document, identical for D and D′.

    Column types are declared whenever the catalogue reads them (issue 8: types come from the
    metadata, never from the values alone); older catalogues infer them from the source.
    """
    declares_type = "type" in ColumnSpec.model_fields
    columns: list[dict[str, Any]] = []
    for name, (_, role, declared) in COLUMNS.items():
        column: dict[str, Any] = {"name": name, "role": role}
        if declares_type:
            column["type"] = declared
        if name == "k":
            column["keys"] = list(STRING_KEYS)
        elif name == "t":
            column["keys"] = list(TIMESTAMP_KEYS[profile.time_unit])
        elif name == "d":
            column["keys"] = list(DATE_KEYS)
        elif name == "f":
            column["keys"] = list(DOUBLE_KEYS)
        elif role == "measure":
            bounds = profile.bounds(name)
            column["lower"], column["upper"] = bounds.lower, bounds.upper
            if bounds.scale is not None:
                column["scale"] = bounds.scale
        columns.append(column)
    return {
        "dataset": DATASET,
        "title": "neighbouring dataset",
        "owner": "tests",
        "classification": "general",
        "tables": [
            {
                "name": TABLE,
                "source": source,
                "privacy_unit": UNIT,
                "max_rows_per_unit": profile.max_rows_per_unit,
                "columns": columns,
            }
        ],
    }


@dataclass(frozen=True)
class Registered:
    """One side of a pair: its catalog and record, or the registration error."""

    catalog: Catalog
    record: DatasetRecord | None
    error: SandboxError | None = None


def register(rows: list[Row], profile: Profile, home: Path) -> Registered:
    """Write the rows as a source under ``home`` and register them in a catalog there."""
    folder = home / "source"
    folder.mkdir(parents=True)
    return register_source(write_source(rows, profile, folder), profile, home)


def register_source(source: Path, profile: Profile, home: Path) -> Registered:
    """Write the metadata beside ``source`` and register it in a catalog under ``home``."""
    return register_document(source.parent / f"{DATASET}.yaml", metadata(profile, source.name), home)


def register_document(document: Path, content: dict[str, Any], home: Path) -> Registered:
    """Write ``content`` as the metadata document and register it in a catalog under ``home``."""
    document.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    catalog = Catalog(home / "home")
    try:
        return Registered(catalog, catalog.register(document))
    except SandboxError as error:
        return Registered(catalog, None, error)


@dataclass
class Pair:
    """D (``base``) and D′ (``base`` plus ``added``, the rows of one new unit)."""

    profile: Profile
    base: list[Row]
    added: list[Row]
    added_first: bool = False  # where D′'s source holds the added rows: first rows win ties in DuckDB
    d: Registered = field(init=False, repr=False)
    d_prime: Registered = field(init=False, repr=False)

    @property
    def neighbour(self) -> list[Row]:
        """The rows of D′."""
        return self.added + self.base if self.added_first else self.base + self.added

    def register(self, folder: Path) -> None:
        """Register D under ``folder/d`` and D′ under ``folder/d_prime``."""
        self.d = register(self.base, self.profile, folder / "d")
        self.d_prime = register(self.neighbour, self.profile, folder / "d_prime")

    def describe(self) -> str:
        """A reproduction: the profile, D's distinct rows with their counts, the added unit's rows."""
        counts: dict[str, int] = {}
        for row in self.base:
            text = repr({c: v for c, v in row.items() if c != UNIT})
            counts[text] = counts.get(text, 0) + 1
        base = "; ".join(f"{n} x {text}" for text, n in counts.items()) or "no rows"
        where = "before" if self.added_first else "after"
        return f"{self.profile}\n  D: {base}\n  D′ adds ({where} D's rows): {self.added!r}"


def twin(profile: Profile, column: str, value: Any) -> Any:
    """A value that collides with ``value`` once it leaves DuckDB, or ``value`` itself (for DOUBLE:
    0.0 and -0.0, one group in DuckDB with two texts)."""
    kind = COLUMNS[column][0]
    if kind == "float64" and value == 0.0:
        return -value
    table = TWINS["date"] if kind == "date" else TWINS[profile.time_unit] if kind == "timestamp" else {}
    return table.get(value, value)


def with_units(groups: list[list[Row]], first_uid: int = 1) -> list[Row]:
    """Rows of ``groups`` (one list per unit), each tagged with its unit's id."""
    rows: list[Row] = []
    for offset, group in enumerate(groups):
        for row in group:
            rows.append({**row, UNIT: first_uid + offset})
    return rows
