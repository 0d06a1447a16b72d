"""Synthetic previews (issue 12): rows in the declared shape, from the metadata alone.

Two datasets with the same metadata and different rows get the same preview (so a preview carries no
information about the data); values stay within the declared keys and bounds; identifiers never
appear; the owner's marginal hints shape the keys' frequencies.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sandbox.catalog import Catalog
from sandbox.errors import InvalidRequest, QueryRejected
from sandbox.query.preview import MAX_PREVIEW_ROWS, preview

COLUMNS: list[dict[str, Any]] = [
    {"name": "uid", "role": "privacy_unit"},
    {"name": "ssn", "role": "identifier"},
    {"name": "sex", "role": "dimension", "keys": ["F", "M", "X"], "preview_weights": [5, 4, 1]},
    {"name": "city", "role": "dimension"},
    {"name": "day", "role": "dimension"},
    {"name": "age", "role": "measure", "lower": 0, "upper": 100},
    {"name": "income", "role": "measure", "lower": 0, "upper": 1000, "scale": 2},
    {"name": "score", "role": "measure"},
]


def register(home: Path, rows: int, seed: int) -> Catalog:
    folder = home / "src"
    folder.mkdir(parents=True)
    data = pa.table(
        {
            "uid": list(range(rows)),
            "ssn": [f"s{i + seed}" for i in range(rows)],
            "sex": ["F" if (i + seed) % 3 else "M" for i in range(rows)],
            "city": [f"real-city-{(i * seed) % 7}" for i in range(rows)],
            "day": [dt.date(2020, 1, 1) + dt.timedelta(days=(i + seed) % 50) for i in range(rows)],
            "age": [(i * 7 + seed) % 120 for i in range(rows)],
            "income": [float(i * seed % 2000) for i in range(rows)],
            "score": [float(i) for i in range(rows)],
        }
    )
    pq.write_table(data, folder / "t.parquet")
    document = {
        "dataset": "previewed",
        "title": "preview test",
        "owner": "tests",
        "classification": "general",
        "tables": [
            {
                "name": "t",
                "source": "t.parquet",
                "privacy_unit": "uid",
                "max_rows_per_unit": 1,
                "columns": COLUMNS,
            }
        ],
    }
    (folder / "p.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    catalog = Catalog(home / "home")
    catalog.register(folder / "p.yaml")
    return catalog


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, Catalog]:
    return (
        register(tmp_path_factory.mktemp("preview_a"), 50, 1),
        register(tmp_path_factory.mktemp("preview_b"), 900, 3),
    )


def test_the_same_metadata_gives_the_same_preview_whatever_the_data(two: tuple[Catalog, Catalog]) -> None:
    first, second = (preview(c.get("previewed"), None, 500, seed=7) for c in two)
    assert first == second
    assert preview(two[0].get("previewed"), None, 500, seed=8) != first


def test_rows_follow_the_declared_shape(two: tuple[Catalog, Catalog]) -> None:
    shown = preview(two[0].get("previewed"), "t", 4000)
    assert shown["synthetic"] is True and "SYNTHETIC" in shown["notice"]
    assert shown["columns"] == ["uid", "sex", "city", "day", "age", "income", "score"]  # no identifier
    columns = {name: [row[i] for row in shown["rows"]] for i, name in enumerate(shown["columns"])}
    assert columns["uid"][:2] == ["synthetic-1", "synthetic-2"]
    assert all(0 <= a <= 100 and isinstance(a, int) for a in columns["age"])
    assert all(0 <= x <= 1000 for x in columns["income"])
    assert all(v is None for v in columns["score"])  # a measure without bounds
    assert not any(str(c).startswith("real-city") for c in columns["city"])
    assert all(d.startswith("2024-") for d in columns["day"])
    counts = Counter(columns["sex"])
    assert set(counts) == {"F", "M", "X"}
    assert counts["F"] > counts["M"] > 2 * counts["X"]  # the owner's hint 5 : 4 : 1


def test_preview_limits(two: tuple[Catalog, Catalog]) -> None:
    record = two[0].get("previewed")
    with pytest.raises(InvalidRequest):
        preview(record, None, MAX_PREVIEW_ROWS + 1)
    with pytest.raises(QueryRejected):
        preview(record, "nope", 10)


def test_preview_weights_are_checked(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "home")
    bad = dict(COLUMNS[2], preview_weights=[1, -1, 1])
    document = {
        "dataset": "bad_weights",
        "title": "t",
        "owner": "o",
        "classification": "general",
        "tables": [
            {
                "name": "t",
                "source": "t.parquet",
                "privacy_unit": "uid",
                "max_rows_per_unit": 1,
                "columns": [COLUMNS[0], bad],
            }
        ],
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert any("preview_weights" in p for p in catalog.validate(path))
