"""The published reference values of the full public datasets (shared data README), when present.

The rest of the suite runs on the repository's extracts (``data/``); these tests register the full
tables from ``$SANDBOX_SHARED_DATA`` and are skipped, saying so, when it is unset (``.ci/run`` sets it
when the shared folder sits beside the clone).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.catalog import Catalog
from sandbox.query import Engine
from sandbox.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
HUGE_EPSILON = 1e9
# README: rows kept after contribution bounding, per (dataset, table)
STORED_ROWS = {
    ("pums", "people"): 1000,
    ("fulton_pums", "people"): 25_766,
    ("adult", "people"): 48_842,
    ("diabetes_130", "encounters"): 99_231,
    ("beijing_air", "air_quality"): 420_768,
}


@pytest.fixture(scope="module")
def full_catalog(full_shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    catalog = Catalog(tmp_path_factory.mktemp("full") / "home")
    for name, _table in STORED_ROWS:
        catalog.register(SHARED_METADATA / f"{name}.yaml", source_root=full_shared_data)
    return catalog


@pytest.fixture(scope="module")
def full_engine(full_catalog: Catalog) -> Iterator[Engine]:
    engine = Engine(full_catalog, Settings(max_epsilon_per_query=HUGE_EPSILON))
    yield engine
    engine.close()


def test_stored_row_counts(full_engine: Engine) -> None:
    for (name, table), rows in STORED_ROWS.items():
        assert full_engine.query(name, f"SELECT COUNT(*) FROM {table}", HUGE_EPSILON).rows == [[rows]], name


def test_adult_reference_values(full_engine: Engine) -> None:
    """README §3: Male 32,650 / Female 16,192, 11,687 with >50K, mean age 38.6436."""
    result = full_engine.query("adult", "SELECT sex, COUNT(*) FROM people GROUP BY sex", HUGE_EPSILON)
    assert dict(map(tuple, result.rows)) == {"Male": 32_650, "Female": 16_192}
    result = full_engine.query("adult", "SELECT income, COUNT(*) FROM people GROUP BY income", HUGE_EPSILON)
    assert dict(map(tuple, result.rows)) == {"<=50K": 37_155, ">50K": 11_687}
    ((mean_age,),) = full_engine.query("adult", "SELECT AVG(age) FROM people", HUGE_EPSILON).rows
    assert mean_age == pytest.approx(38.6436, abs=1e-4)


def test_diabetes_bounded_to_five_encounters(full_engine: Engine) -> None:
    """README §4: k = 5 keeps 99,231 of 101,766 encounters, of 71,518 patients."""
    result = full_engine.query(
        "diabetes_130", "SELECT COUNT(*), COUNT(DISTINCT patient_nbr) FROM encounters", HUGE_EPSILON
    )
    assert result.rows == [[99_231, 71_518]]


def test_pums_reference_values(full_engine: Engine) -> None:
    """README §1: the repository's copy of pums_1000 is the shared file itself."""
    result = full_engine.query("pums", "SELECT COUNT(*), SUM(income), AVG(age) FROM people", HUGE_EPSILON)
    ((count, income, age),) = result.rows
    assert (count, income) == (1000, 34_380_084)
    assert age == pytest.approx(44.797, abs=1e-9)


def test_repository_copies_match_the_shared_files(full_shared_data: Path) -> None:
    """Files the repository copies whole are byte-identical to the shared ones."""
    ours = _sums(REPO / "data" / "SHA256SUMS")
    theirs = _sums(full_shared_data / "SHA256SUMS")
    whole = [name for name in ours if name.startswith("pums/") or name.endswith("id_mapping.parquet")]
    assert len(whole) == 4
    assert all(ours[name] == theirs[name] for name in whole)


def _sums(path: Path) -> dict[str, str]:
    """File name -> SHA-256 of a ``sha256sum`` listing."""
    pairs = (line.split("  ", 1) for line in path.read_text(encoding="utf-8").splitlines())
    return {name: digest for digest, name in pairs}
