"""The catalog: datasets as data owners declare them, loaded into service-owned DuckDB files."""

from sandbox.catalog.models import (
    Classification,
    ColumnRole,
    ColumnSpec,
    DatasetMetadata,
    DatasetRecord,
    TableSpec,
)
from sandbox.catalog.registry import Catalog

__all__ = [
    "Catalog",
    "Classification",
    "ColumnRole",
    "ColumnSpec",
    "DatasetMetadata",
    "DatasetRecord",
    "TableSpec",
]
