"""Validation of metadata documents: one test per rule, and all problems reported at once."""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sandbox.catalog import Catalog
from sandbox.errors import MetadataInvalid


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder holding ``people.parquet`` with a spread of column types."""
    table = pa.table(
        {
            "pid": pa.array([1, 2, 3], pa.int64()),
            "age": pa.array([30, 40, None], pa.int64()),
            "score": pa.array([0.5, 1.5, 2.5], pa.float64()),
            "amount": pa.array(
                [decimal.Decimal("1.25"), None, decimal.Decimal("3.50")], pa.decimal128(10, 2)
            ),
            "city": pa.array(["a", "b", None], pa.string()),
            "tags": pa.array([["x"], [], None], pa.list_(pa.string())),
            "blob": pa.array([b"x", b"y", b"z"], pa.binary()),
            "flag": pa.array([True, False, None], pa.bool_()),
        }
    )
    pq.write_table(table, tmp_path / "people.parquet")
    return tmp_path


def document(**table_overrides: Any) -> dict[str, Any]:
    """A valid metadata document; keyword arguments replace keys of its one table."""
    table: dict[str, Any] = {
        "name": "people",
        "source": "people.parquet",
        "privacy_unit": "pid",
        "max_rows_per_unit": 1,
        "columns": [
            {"name": "pid", "role": "privacy_unit"},
            {"name": "age", "role": "measure", "lower": 0, "upper": 100},
            {"name": "city", "role": "dimension", "keys": ["a", "b", None]},
        ],
    }
    table.update(table_overrides)
    return {
        "dataset": "demo",
        "title": "Demo",
        "owner": "owner-a",
        "classification": "general",
        "tables": [table],
    }


def problems_of(folder: Path, doc: dict[str, Any] | str, source_root: Path | None = None) -> list[str]:
    """Write the document as ``meta.yaml`` in ``folder`` and validate it."""
    path = folder / "meta.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return Catalog(folder / "home").validate(path, source_root=source_root)


def columns(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The privacy-unit column plus ``extra``."""
    return [{"name": "pid", "role": "privacy_unit"}, *extra]


def test_valid_document_has_no_problems(folder: Path) -> None:
    assert problems_of(folder, document()) == []


def test_yaml_syntax_error_names_line(folder: Path) -> None:
    problems = problems_of(folder, "dataset: x\n  title: [\n")
    assert len(problems) == 1
    assert problems[0].startswith("metadata is not valid YAML at line 2")


def test_document_must_be_a_mapping(folder: Path) -> None:
    assert problems_of(folder, "- a\n- b\n") == [
        "metadata must be a YAML mapping with the keys dataset, title, owner, tables, ..."
    ]


def test_duplicate_yaml_key_rejected(folder: Path) -> None:
    text = yaml.safe_dump(document(), sort_keys=False) + "owner: someone-else\n"
    problems = problems_of(folder, text)
    assert len(problems) == 1
    assert "found duplicate key 'owner'" in problems[0]


def test_model_errors_listed_as_sentences(folder: Path) -> None:
    doc = document(columns=[{"name": "pid", "role": "boss", "lower": "abc"}])
    doc["dataset"] = "Bad-Name"
    doc["classification"] = "secret"
    doc["colour"] = "blue"
    del doc["owner"]
    problems = problems_of(folder, doc)
    assert problems == [
        "key 'dataset': must be lowercase letters, digits and underscores, starting with a letter "
        "(at most 63 characters)",
        "key 'owner': is required but missing",
        "key 'classification': Input should be 'general', 'important' or 'core'",
        "table 'people', column 'pid', key 'role': Input should be 'privacy_unit', 'identifier', "
        "'dimension' or 'measure'",
        "table 'people', column 'pid', key 'lower': Input should be a valid number, unable to parse string "
        "as a number",
        "key 'colour': is not a known key",
    ]


def test_owner_must_not_be_empty(folder: Path) -> None:
    doc = document()
    doc["owner"] = "  "
    assert problems_of(folder, doc) == ["owner must not be empty"]


def test_table_names_unique(folder: Path) -> None:
    doc = document()
    doc["tables"].append(dict(doc["tables"][0]))
    assert problems_of(folder, doc) == [
        "table 'people' is declared more than once; table names must be unique"
    ]


def test_column_names_unique_case_insensitive(folder: Path) -> None:
    doc = document(
        columns=columns({"name": "age", "role": "dimension"}, {"name": "AGE", "role": "dimension"})
    )
    assert problems_of(folder, doc) == [
        "table 'people': column 'AGE' is declared more than once; column names must be unique"
    ]


def test_column_name_must_be_identifier_and_not_reserved(folder: Path) -> None:
    doc = document(
        columns=columns(
            {"name": "my col", "role": "identifier"}, {"name": "age__clamped", "role": "identifier"}
        )
    )
    problems = problems_of(folder, doc)
    assert problems[:2] == [
        "table 'people', column 'my col': a column name must be a plain identifier (letters, digits and "
        "underscores, not starting with a digit, at most 63 characters)",
        "table 'people', column 'age__clamped': column names ending in '__clamped' are reserved for "
        "clamped measures",
    ]


def test_privacy_unit_must_be_a_declared_column(folder: Path) -> None:
    doc = document(privacy_unit="person", columns=[{"name": "age", "role": "dimension"}])
    assert problems_of(folder, doc) == ["table 'people': privacy_unit 'person' is not a declared column"]


def test_privacy_unit_column_needs_privacy_unit_role(folder: Path) -> None:
    doc = document(columns=[{"name": "pid", "role": "dimension"}])
    assert problems_of(folder, doc) == [
        "table 'people': privacy_unit 'pid' must be declared with role privacy_unit, not dimension"
    ]


def test_privacy_unit_role_only_on_the_tables_unit(folder: Path) -> None:
    doc = document(columns=columns({"name": "age", "role": "privacy_unit"}))
    assert problems_of(folder, doc) == [
        "table 'people', column 'age': has role privacy_unit, so it must be the table's privacy_unit "
        "(which is 'pid'); a table has at most one privacy unit column"
    ]


def test_null_privacy_unit_requires_one_row_per_unit(folder: Path) -> None:
    cols = [{"name": "age", "role": "measure", "lower": 0, "upper": 100}]
    assert problems_of(folder, document(privacy_unit=None, max_rows_per_unit=1, columns=cols)) == []
    for bound in (2, None):
        assert problems_of(folder, document(privacy_unit=None, max_rows_per_unit=bound, columns=cols)) == [
            "table 'people': privacy_unit is null (row-level privacy: each row is its own unit), "
            "which requires max_rows_per_unit: 1"
        ]


def test_missing_contribution_bound_is_allowed(folder: Path) -> None:
    doc = document()
    del doc["tables"][0]["max_rows_per_unit"]
    assert problems_of(folder, doc) == []


def test_keys_bounds_scale_only_on_their_roles(folder: Path) -> None:
    doc = document(
        columns=columns(
            {"name": "age", "role": "measure", "lower": 0, "upper": 1, "keys": [1]},
            {"name": "city", "role": "dimension", "lower": 0, "upper": 1, "scale": 2},
        )
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'age': keys are allowed only on dimensions, not on a measure",
        "table 'people', column 'city': lower/upper bounds are allowed only on measures, not on a dimension",
        "table 'people', column 'city': scale is allowed only on measures, not on a dimension",
    ]


def test_measure_bounds_rules(folder: Path) -> None:
    doc = document(
        columns=columns(
            {"name": "age", "role": "measure", "lower": 0},
            {"name": "score", "role": "measure", "lower": float("-inf"), "upper": 1},
            {"name": "amount", "role": "measure", "lower": 5, "upper": 1},
        )
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'age': a measure needs both lower and upper bounds, or neither "
        "(then it is not aggregatable)",
        "table 'people', column 'score': lower bound must be a finite number",
        "table 'people', column 'amount': lower bound 5.0 is greater than upper bound 1.0",
    ]


def test_measure_without_bounds_is_allowed(folder: Path) -> None:
    assert problems_of(folder, document(columns=columns({"name": "age", "role": "measure"}))) == []


def test_source_location_rules(folder: Path) -> None:
    (folder / "people.txt").write_text("x", encoding="utf-8")
    (folder / "broken.parquet").write_bytes(b"not parquet at all")
    doc = document()
    base = doc["tables"][0]
    doc["tables"] = [
        {**base, "name": "t1", "source": "missing.parquet"},
        {**base, "name": "t2", "source": "people.txt"},
        {**base, "name": "t3", "source": str(folder / "people.parquet")},
        {**base, "name": "t4", "source": "../people.parquet"},
        {**base, "name": "t5", "source": "broken.parquet"},
    ]
    assert problems_of(folder, doc) == [
        "table 't1': source 'missing.parquet' does not exist or is not a file",
        "table 't2': source 'people.txt' must be a .parquet or .csv file",
        f"table 't3': source '{folder / 'people.parquet'}' must be a relative path inside the source "
        "folder, without '..'",
        "table 't4': source '../people.parquet' must be a relative path inside the source folder, "
        "without '..'",
        "table 't5': source 'broken.parquet' cannot be read as Parquet",
    ]


def test_sources_relative_to_source_root(folder: Path) -> None:
    meta_dir = folder / "meta"
    meta_dir.mkdir()
    path = meta_dir / "meta.yaml"
    path.write_text(yaml.safe_dump(document()), encoding="utf-8")
    catalog = Catalog(folder / "home")
    assert catalog.validate(path) == [
        "table 'people': source 'people.parquet' does not exist or is not a file"
    ]
    assert catalog.validate(path, source_root=folder) == []


def test_declared_column_must_exist_in_source(folder: Path) -> None:
    doc = document(
        columns=columns({"name": "ghost", "role": "identifier"}, {"name": "CITY", "role": "dimension"})
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'ghost': is declared but not present in the source file"
    ]


def test_measure_must_be_numeric(folder: Path) -> None:
    doc = document(
        columns=columns(
            {"name": "city", "role": "measure", "lower": 0, "upper": 1},
            {"name": "flag", "role": "measure"},
            {"name": "amount", "role": "measure", "lower": 0, "upper": 10},
        )
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'city': a measure must be numeric (integer, DECIMAL, FLOAT or DOUBLE), "
        "not VARCHAR",
        "table 'people', column 'flag': a measure must be numeric (integer, DECIMAL, FLOAT or DOUBLE), "
        "not BOOLEAN",
    ]


def test_scale_only_on_floating_point_measures(folder: Path) -> None:
    doc = document(
        columns=columns(
            {"name": "age", "role": "measure", "lower": 0, "upper": 1, "scale": 2},
            {"name": "score", "role": "measure", "lower": 0, "upper": 1, "scale": 2},
        )
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'age': scale applies only to FLOAT/DOUBLE measures; this one is BIGINT"
    ]


def test_scaled_bound_must_keep_arithmetic_exact(folder: Path) -> None:
    """Bounds beyond 2**43 fixed-point units are refused: sums of squares over 2**40 rows would
    overflow HUGEINT, and VARIANCE would answer or fail depending on how many rows sit at the top."""
    doc = document(
        privacy_unit=None,
        columns=[
            {"name": "score", "role": "measure", "lower": -1e12, "upper": 9e9, "scale": 9},
            {"name": "age", "role": "measure", "lower": 0, "upper": 2**43},
            {"name": "pid", "role": "measure", "lower": 0, "upper": 2**43 + 1},
        ],
    )
    limit = (
        "exceeds 2**43 (8796093022208), the largest fixed-point bound whose sums and sums of squares "
        "stay exact over any table; narrow the bounds"
    )
    assert problems_of(folder, doc) == [
        f"table 'people', column 'score': lower bound times 10**9 {limit} or lower scale",
        f"table 'people', column 'score': upper bound times 10**9 {limit} or lower scale",
        f"table 'people', column 'pid': upper bound times 10**0 {limit}",
    ]


def test_contribution_times_range_must_fit_the_mechanisms(folder: Path) -> None:
    """k times the bounds' range is the sensitivity OpenDP's 64-bit mechanisms take: at most 2**62."""
    doc = document(
        max_rows_per_unit=2**20,
        columns=columns({"name": "age", "role": "measure", "lower": -(2**42), "upper": 2**42}),
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'age': max_rows_per_unit (1048576) times the bounds' range in "
        "fixed-point units exceeds 2**62, the largest sensitivity the noise mechanisms take; narrow "
        "the bounds or lower max_rows_per_unit"
    ]


def test_bounds_are_multiples_of_the_fixed_point_step(folder: Path) -> None:
    doc = document(
        columns=columns(
            {"name": "age", "role": "measure", "lower": 0.5, "upper": 100},
            {"name": "amount", "role": "measure", "lower": -1.005, "upper": 1.01},
            {"name": "score", "role": "measure", "lower": 0.12345, "upper": 1, "scale": 5},
        )
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'age': lower bound 0.5 is not a multiple of 10**-0, the column's "
        "fixed-point step (round it)",
        "table 'people', column 'amount': lower bound -1.005 is not a multiple of 10**-2, the column's "
        "fixed-point step (round it)",
    ]
    doc["tables"][0]["columns"][3]["scale"] = 4
    assert problems_of(folder, doc)[2] == (
        "table 'people', column 'score': lower bound 0.12345 is not a multiple of 10**-4, the column's "
        "fixed-point step (round it or raise scale)"
    )


def test_dimension_must_be_scalar(folder: Path) -> None:
    doc = document(
        columns=columns({"name": "tags", "role": "dimension"}, {"name": "blob", "role": "dimension"})
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'tags': a dimension must have a scalar type (no LIST, STRUCT, MAP or BLOB), "
        "not VARCHAR[]",
        "table 'people', column 'blob': a dimension must have a scalar type (no LIST, STRUCT, MAP or BLOB), "
        "not BLOB",
    ]


def test_identifier_may_have_any_type(folder: Path) -> None:
    doc = document(
        columns=columns({"name": "tags", "role": "identifier"}, {"name": "blob", "role": "identifier"})
    )
    assert problems_of(folder, doc) == []


def test_privacy_unit_must_be_scalar(folder: Path) -> None:
    doc = document(privacy_unit="tags", columns=[{"name": "tags", "role": "privacy_unit"}])
    assert problems_of(folder, doc) == [
        "table 'people', column 'tags': a privacy unit must have a scalar type, "
        "but the source type is VARCHAR[]"
    ]


def test_keys_must_cast_exactly_to_the_column_type(folder: Path) -> None:
    doc = document(
        columns=columns(
            {"name": "age", "role": "dimension", "keys": [30, "40", "forty", 1.5, None]},
            {"name": "score", "role": "dimension", "keys": [0.5, 1, "2.5"]},
            {"name": "amount", "role": "dimension", "keys": [1.25, 1.255]},
        )
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'age': 2 of the keys cannot be cast exactly to the column type BIGINT",
        "table 'people', column 'amount': 1 of the keys cannot be cast exactly to the column type "
        "DECIMAL(10,2)",
    ]


def test_keys_without_duplicates(folder: Path) -> None:
    doc = document(
        columns=columns(
            {"name": "city", "role": "dimension", "keys": ["a", "a"]},
            {"name": "age", "role": "dimension", "keys": [1, "1", None]},
        )
    )
    assert problems_of(folder, doc) == [
        "table 'people', column 'city': keys contain duplicates",
        "table 'people', column 'age': keys contain duplicates once cast to the column type BIGINT",
    ]


def test_keys_scalar_and_unquoted_yaml_booleans(folder: Path) -> None:
    nested = document(columns=columns({"name": "city", "role": "dimension", "keys": ["a", [1, 2]]}))
    assert problems_of(folder, nested) == [
        "table 'people', column 'city': keys must be scalar values "
        "(strings, numbers, booleans, dates or null)"
    ]
    unquoted = (
        "dataset: demo\ntitle: Demo\nowner: a\nclassification: general\ntables:\n"
        "  - name: people\n    source: people.parquet\n    privacy_unit: pid\n    max_rows_per_unit: 1\n"
        "    columns:\n      - {name: pid, role: privacy_unit}\n"
        "      - {name: city, role: dimension, keys: [a, No, yes]}\n"
    )
    assert problems_of(folder, unquoted) == [
        "table 'people', column 'city': keys include a boolean but the column type is VARCHAR "
        "(YAML reads unquoted yes/no/on/off/true/false as booleans: quote them)"
    ]
    booleans = document(columns=columns({"name": "flag", "role": "dimension", "keys": [True, False, None]}))
    assert problems_of(folder, booleans) == []


def test_every_problem_reported_at_once(folder: Path) -> None:
    doc = document(
        privacy_unit="person",
        columns=[
            {"name": "pid", "role": "privacy_unit"},
            {"name": "age", "role": "measure", "lower": 10, "upper": 1},
            {"name": "city", "role": "measure", "lower": 0, "upper": 1},
            {"name": "ghost", "role": "dimension", "keys": [1, 1]},
            {"name": "tags", "role": "dimension"},
        ],
    )
    doc["owner"] = ""
    problems = problems_of(folder, doc)
    assert len(problems) == 8, problems
    for fragment in (
        "owner must not be empty",
        "column 'pid': has role privacy_unit",
        "privacy_unit 'person' is not a declared column",
        "column 'age': lower bound 10.0 is greater than upper bound 1.0",
        "column 'ghost': keys contain duplicates",
        "column 'city': a measure must be numeric",
        "column 'ghost': is declared but not present",
        "column 'tags': a dimension must have a scalar type",
    ):
        assert any(fragment in problem for problem in problems), fragment


def test_register_raises_metadata_invalid_with_all_problems(folder: Path) -> None:
    doc = document(
        columns=columns({"name": "city", "role": "measure"}, {"name": "ghost", "role": "dimension"})
    )
    path = folder / "meta.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    catalog = Catalog(folder / "home")
    with pytest.raises(MetadataInvalid) as caught:
        catalog.register(path)
    assert caught.value.code == "metadata.invalid"
    assert caught.value.details["problems"] == catalog.validate(path)
    assert len(caught.value.details["problems"]) == 2
    assert not (folder / "home" / "datasets" / "demo").exists()


def test_missing_metadata_file(folder: Path) -> None:
    assert Catalog(folder / "home").validate(folder / "nope.yaml") == [
        "metadata file 'nope.yaml' cannot be read as UTF-8 text"
    ]
