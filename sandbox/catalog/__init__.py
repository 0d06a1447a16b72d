"""The catalog: datasets as data owners declare them, loaded into service-owned DuckDB files.

Exports are loaded on first use, so that importing the metadata models (as the control plane does)
does not pull in DuckDB and pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.catalog.models import (
        Classification,
        ColumnRole,
        ColumnSpec,
        DatasetMetadata,
        DatasetRecord,
        TableSpec,
    )
    from sandbox.catalog.registry import Catalog

_EXPORTS = {
    "Catalog": "sandbox.catalog.registry",
    "Classification": "sandbox.catalog.models",
    "ColumnRole": "sandbox.catalog.models",
    "ColumnSpec": "sandbox.catalog.models",
    "DatasetMetadata": "sandbox.catalog.models",
    "DatasetRecord": "sandbox.catalog.models",
    "TableSpec": "sandbox.catalog.models",
}

__all__ = [
    "Catalog",
    "Classification",
    "ColumnRole",
    "ColumnSpec",
    "DatasetMetadata",
    "DatasetRecord",
    "TableSpec",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
