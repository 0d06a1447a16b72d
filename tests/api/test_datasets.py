"""Catalogue endpoints: metadata and schema (never rows), registration from the import folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from gateway_support import SHARED_METADATA, World, assert_error, variant_metadata


def test_list_and_describe_show_schema_not_storage(world: World) -> None:
    with world.client("alice") as client:
        listed = {d["name"]: d for d in client.get("/api/v1/datasets").json()}
        pums = client.get("/api/v1/datasets/pums").json()
    assert {"pums", "pums_t"} <= set(listed)
    assert listed["pums"] == pums
    assert pums["owner"] == "census-bureau" and pums["classification"] == "general"
    # analysts see an opaque registration id, never a digest of the rows (a digest can be checked
    # against a guess of the data)
    assert pums["version"].startswith("reg_") and len(pums["version"]) == 36
    assert pums["content_digest"] is None
    (table,) = pums["tables"]
    assert table["privacy_unit"] == "pid" and table["max_rows_per_unit"] == 1
    assert table["content_sha256"] is None and table["source_sha256"] is None
    columns = {c["name"]: c for c in table["columns"]}
    assert columns["age"]["role"] == "measure" and (columns["age"]["lower"], columns["age"]["upper"]) == (
        0,
        100,
    )
    assert columns["sex"]["role"] == "dimension" and columns["sex"]["keys"] == [0, 1]
    assert columns["pid"]["role"] == "privacy_unit"
    text = str(pums)
    assert "physical" not in text and "database_file" not in text and "rows" not in pums


def test_owners_and_operators_see_digests(world: World) -> None:
    for user in ("olivia", "oscar"):
        with world.client(user) as client:
            pums = client.get("/api/v1/datasets/pums").json()
        assert pums["version"].startswith("reg_") and len(pums["content_digest"]) == 64
        (table,) = pums["tables"]
        assert len(table["content_sha256"]) == 64 and len(table["source_sha256"]) == 64


def test_certificate_only_for_owners_and_operators(world: World) -> None:
    with world.client("olivia") as client:
        certificate = client.get("/api/v1/datasets/pums/certificate")
        assert certificate.status_code == 200, certificate.text
        assert certificate.json()["registration_id"].startswith("reg_")
        assert len(certificate.json()["tables"][0]["content_sha256"]) == 64
    with world.client("bob") as client:
        assert_error(client.get("/api/v1/datasets/pums/certificate"), 403, "dataset.certificate_forbidden")
        assert_error(client.get("/api/v1/datasets/pums_null/certificate"), 404)


def test_owner_registers_own_dataset_from_import_folder(world: World) -> None:
    import_dir = world.settings.effective_import_dir
    variant_metadata(
        SHARED_METADATA / "pums.yaml",
        import_dir / "census" / "pums_import.yaml",
        dataset="pums_import",
        title="PUMS registered through the API",
    )
    shutil.copy(import_dir / "pums_1000.parquet", import_dir / "census" / "pums_1000.parquet")
    _point_sources_at(import_dir / "census" / "pums_import.yaml", "pums_1000.parquet")
    with world.client("olivia") as olivia:
        created = olivia.post("/api/v1/datasets", json={"metadata_path": "census/pums_import.yaml"})
        assert created.status_code == 201, created.text
        assert created.json()["name"] == "pums_import"
        assert olivia.get("/api/v1/datasets/pums_import").status_code == 200
        again = olivia.post("/api/v1/datasets", json={"metadata_path": "census/pums_import.yaml"})
        assert_error(again, 409)
    with world.client("oscar") as oscar:
        events = oscar.get(
            "/api/v1/audit", params={"type": "dataset.registered", "dataset": "pums_import"}
        ).json()
    assert [e["actor"] for e in events] == ["olivia"]


def test_owner_cannot_register_another_owners_dataset(world: World) -> None:
    import_dir = world.settings.effective_import_dir
    path = variant_metadata(
        SHARED_METADATA / "pums.yaml", import_dir / "pums_other.yaml", dataset="pums_other"
    )
    _point_sources_at(path, "pums_1000.parquet")
    with world.client("otto") as otto:
        response = otto.post("/api/v1/datasets", json={"metadata_path": "pums_other.yaml"})
    assert_error(response, 403, "dataset.owner_mismatch")
    with world.client("alice") as alice:
        assert_error(alice.post("/api/v1/datasets", json={"metadata_path": "pums_other.yaml"}), 403)


def test_owner_cannot_replace_another_owners_dataset(world: World) -> None:
    import_dir = world.settings.effective_import_dir
    path = variant_metadata(
        SHARED_METADATA / "pums.yaml",
        import_dir / "takeover.yaml",
        owner="transport-bureau",
        title="Not yours",
    )
    _point_sources_at(path, "pums_1000.parquet")
    with world.client("otto") as otto:
        before = otto.get("/api/v1/datasets/pums").json()
        response = otto.post("/api/v1/datasets", json={"metadata_path": "takeover.yaml", "replace": True})
        assert_error(response, 403, "dataset.not_owner")
        after = otto.get("/api/v1/datasets/pums").json()
    assert after == before and after["owner"] == "census-bureau"


def test_registration_paths_stay_inside_the_import_folder(world: World) -> None:
    with world.client("oscar") as oscar:
        for path in ("../variants/pums_t.yaml", "/etc/passwd", "a/../../x.yaml", "bad\u0000name"):
            response = oscar.post("/api/v1/datasets", json={"metadata_path": path})
            assert_error(response, 422, "dataset.import_path_outside")
        missing = oscar.post("/api/v1/datasets", json={"metadata_path": "nothing.yaml"})
        assert_error(missing, 404, "dataset.import_file_not_found")


def test_invalid_metadata_lists_problems(world: World) -> None:
    broken = world.settings.effective_import_dir / "broken.yaml"
    broken.write_text("dataset: broken\ntitle: x\n", encoding="utf-8")
    with world.client("oscar") as oscar:
        response = oscar.post("/api/v1/datasets", json={"metadata_path": "broken.yaml"})
    error = assert_error(response, 422, "metadata.invalid")
    assert error["details"]["problems"]


def _point_sources_at(path: Path, source: str) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for table in document["tables"]:
        table["source"] = source
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
