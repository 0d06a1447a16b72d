"""Fixtures of the DP engine tests: shared datasets registered once per session into a tmp home.

- ``catalog``: a ``Catalog`` in a session tmp home; ``shared(name)`` registers a shared dataset
  (``deploy/datasets/shared/<name>.yaml``, sources in ``shared_data``) on first use only.
- ``engine``: an ``Engine`` over that catalog with a huge epsilon ceiling (exactness tests).
- ``make_dataset``: writes a tiny YAML + Parquet dataset and registers it (purpose-built tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from query_support import HUGE_EPSILON, SHARED_METADATA, DatasetMaker, Registrar

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.query import Engine
from sandbox.settings import Settings


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """An empty catalog in a session-wide tmp home."""
    return Catalog(tmp_path_factory.mktemp("query") / "home")


@pytest.fixture(scope="session")
def shared(catalog: Catalog, shared_data: Path) -> Registrar:
    """``shared(name)``: the shared dataset ``name``, registered from the real data on first use."""
    records: dict[str, DatasetRecord] = {}

    def register(name: str) -> DatasetRecord:
        if name not in records:
            records[name] = catalog.register(SHARED_METADATA / f"{name}.yaml", source_root=shared_data)
        return records[name]

    return register


@pytest.fixture(scope="session")
def engine(catalog: Catalog) -> Iterator[Engine]:
    """An engine that accepts huge epsilons (answers then equal the exact ones)."""
    engine = Engine(catalog, Settings(max_epsilon_per_query=HUGE_EPSILON))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def make_dataset(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> DatasetMaker:
    """``make_dataset(name, table, columns, max_rows_per_unit=1, privacy_unit=...)``: a one-table dataset.

    ``table`` is a ``pyarrow.Table`` written as ``<name>.parquet``; ``columns`` are the YAML column
    entries; the dataset's table is called ``t``.
    """

    def make(
        name: str,
        table: pa.Table,
        columns: list[dict[str, Any]],
        *,
        privacy_unit: str | None = "uid",
        max_rows_per_unit: int | None = 1,
        classification: str = "general",
    ) -> DatasetRecord:
        folder = tmp_path_factory.mktemp(name)
        pq.write_table(table, folder / f"{name}.parquet")
        spec: dict[str, Any] = {"name": "t", "source": f"{name}.parquet", "columns": columns}
        if privacy_unit is not None:
            spec["privacy_unit"] = privacy_unit
        if max_rows_per_unit is not None:
            spec["max_rows_per_unit"] = max_rows_per_unit
        document = {
            "dataset": name,
            "title": f"test dataset {name}",
            "owner": "tests",
            "classification": classification,
            "tables": [spec],
        }
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return catalog.register(path)

    return make
