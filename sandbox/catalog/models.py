"""Dataset metadata as the data owner declares it, and as the catalog records it after ingest."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.principals import Principal, Role

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class Classification(StrEnum):
    """Data classification (数据分类分级)."""

    GENERAL = "general"  # 一般
    IMPORTANT = "important"  # 重要
    CORE = "core"  # 核心: catalogue entry only, never queryable


class ColumnRole(StrEnum):
    """What a column may be used for. Columns not declared are not usable at all."""

    PRIVACY_UNIT = "privacy_unit"  # identifies a person; only COUNT(DISTINCT unit)
    IDENTIFIER = "identifier"  # never usable in any clause
    DIMENSION = "dimension"  # groupable and filterable
    MEASURE = "measure"  # aggregatable (with bounds) and filterable


LOADED_ROLES = frozenset({ColumnRole.PRIVACY_UNIT, ColumnRole.DIMENSION, ColumnRole.MEASURE})


class ColumnSpec(BaseModel):
    """One declared column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: ColumnRole
    type: str | None = Field(
        None,
        description="Declared DuckDB type (BIGINT, DOUBLE, DECIMAL(p,s), VARCHAR, DATE, TIMESTAMP, ...); "
        "required for CSV sources, checked against a Parquet file's schema.",
    )
    description: str = ""
    keys: list[Any] | None = Field(None, description="Public category list of a dimension.")
    preview_weights: list[float] | None = Field(
        None,
        description="Owner's marginal hint for synthetic previews: one non-negative weight per key "
        "(a public statement by the owner, never computed from the data).",
    )
    lower: float | None = Field(None, description="Lower clamping bound of a measure.")
    upper: float | None = Field(None, description="Upper clamping bound of a measure.")
    scale: int | None = Field(
        None, ge=0, le=9, description="Decimal places kept for a floating-point measure (default 4)."
    )


class TableSpec(BaseModel):
    """One declared table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    source: str
    description: str = ""
    privacy_unit: str | None = None
    max_rows_per_unit: int | None = Field(None, ge=1)
    public: bool = Field(
        False,
        description="A public lookup table (no person in it): only joined, many-to-one, on join_keys.",
    )
    join_keys: list[str] | None = Field(
        None, description="Columns of a public table other tables may join on (unique, checked at ingest)."
    )
    columns: list[ColumnSpec]

    def column(self, name: str) -> ColumnSpec | None:
        """The declared column of that name (case-insensitive), if any."""
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


class DatasetMetadata(BaseModel):
    """The metadata document (YAML) a data owner writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(pattern=NAME_PATTERN)
    title: str
    owner: str
    classification: Classification
    description: str = ""
    max_joined_rows_per_unit: int | None = Field(
        None,
        ge=1,
        description="Owner's bound on one person's rows in a join of this dataset's tables: a join "
        "whose bound (the product of the tables' bounds) is larger keeps at most this many per person.",
    )
    tables: list[TableSpec] = Field(min_length=1)

    def table(self, name: str) -> TableSpec | None:
        """The declared table of that name (case-insensitive), if any."""
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)


class StoredColumn(BaseModel):
    """How a declared column is stored in the dataset's DuckDB file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    duckdb_type: str
    physical: str = Field(description="Physical column holding the raw value (filters, grouping).")
    clamped: str | None = Field(
        None, description="Physical column holding the clamped fixed-point value (measures)."
    )
    clamped_scale: int = Field(0, description="Decimal places of the clamped fixed-point value.")
    clamped_lower: int | None = Field(
        None, description="Lower bound in fixed-point units (lower * 10**clamped_scale, rounded)."
    )
    clamped_upper: int | None = Field(
        None, description="Upper bound in fixed-point units (upper * 10**clamped_scale, rounded)."
    )
    public_keys: list[Any] | None = Field(
        None, description="Distinct values of a dimension of a public table (public, so usable as keys)."
    )


class StoredTable(BaseModel):
    """A loaded table: where it lives physically and its fingerprints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    physical: str
    columns: list[StoredColumn]
    source_sha256: str
    content_sha256: str

    def column(self, name: str) -> StoredColumn | None:
        """The stored column of that declared name (case-insensitive), if any."""
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


class DatasetRecord(BaseModel):
    """A registered dataset: the owner's metadata plus what ingest recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metadata: DatasetMetadata
    tables: list[StoredTable]
    version: str = Field(
        description="SHA-256 over the metadata and every table's content fingerprint (owners and "
        "operators only: a digest of the rows can be checked against a guess of them)."
    )
    registration_id: str = Field(
        description="Opaque random id of this registration: the dataset version analysts see."
    )
    registered_at: datetime
    database_file: str = Field(description="DuckDB file name, relative to the dataset folder.")

    @property
    def name(self) -> str:
        """The dataset's unique name."""
        return self.metadata.dataset

    def visible_to(self, principal: Principal) -> bool:
        """Core (核心) datasets are visible to operators and their owners only; the rest to everyone."""
        return self.metadata.classification is not Classification.CORE or self.can_see_digests(principal)

    def can_see_digests(self, principal: Principal) -> bool:
        """Whether ``principal`` may see content digests: operators and the dataset's owners."""
        return principal.has(Role.OPERATOR) or (
            principal.has(Role.OWNER) and principal.organisation == self.metadata.owner
        )

    def stored_table(self, name: str) -> StoredTable | None:
        """The stored table of that declared name (case-insensitive), if any."""
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)
