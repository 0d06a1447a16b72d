"""Constants and helper types shared by the DP engine tests (imported as ``query_support``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.query.execute import lockdown_config
from sandbox.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
HUGE_EPSILON = 1e9

Registrar = Callable[[str], DatasetRecord]
DatasetMaker = Callable[..., DatasetRecord]


def stored(catalog: Catalog, dataset: str, sql: str) -> list[tuple[Any, ...]]:
    """Plain DuckDB on the dataset's stored (bounded, clamped) file, opened as the engine opens it."""
    settings = Settings()
    config = lockdown_config(settings.duckdb_memory_limit, settings.duckdb_threads)
    with duckdb.connect(str(catalog.database_path(dataset)), read_only=True, config=config) as connection:
        return connection.execute(sql).fetchall()
