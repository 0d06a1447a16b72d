"""Catalogue: list and describe datasets (metadata, never rows); register from the import folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, status

from sandbox.api.deps import OwnerOrOperatorDep, PrincipalDep, ServicesDep
from sandbox.api.schemas import DatasetOut, DatasetRegistration, error_responses
from sandbox.api.services import can_see
from sandbox.catalog.sources import SourceError, resolve
from sandbox.catalog.validate import load_metadata
from sandbox.errors import Forbidden, InvalidRequest, MetadataInvalid, NotFound

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


@router.get("", response_model=list[DatasetOut], responses=error_responses(401, 429))
def list_datasets(principal: PrincipalDep, services: ServicesDep) -> list[DatasetOut]:
    """Every dataset visible to the caller (core datasets: their owner and operators only)."""
    return [DatasetOut.of(r, principal) for r in services.catalog.list() if can_see(principal, r)]


@router.get("/{name}", response_model=DatasetOut, responses=error_responses(401, 404, 429))
def get_dataset(name: str, principal: PrincipalDep, services: ServicesDep) -> DatasetOut:
    """One dataset's metadata and schema: roles, bounds, public keys, classification (and, for its
    owners and operators, the content digests)."""
    return DatasetOut.of(services.visible_dataset(principal, name), principal)


@router.get(
    "/{name}/certificate", response_model=dict[str, Any], responses=error_responses(401, 403, 404, 429)
)
def get_certificate(
    name: str, principal: PrincipalDep, services: ServicesDep, version: str | None = None
) -> dict[str, Any]:
    """The registration certificate (登记存证) of the dataset's latest (or given) registration.

    Certificates carry content digests, so only the dataset's owners and operators get them.
    """
    record = services.visible_dataset(principal, name)
    if not record.can_see_digests(principal):
        raise Forbidden(
            "registration certificates carry content digests and are issued to the dataset's owners "
            "and to operators only",
            code="dataset.certificate_forbidden",
        )
    return services.control.certificate(name, version)


@router.post(
    "",
    response_model=DatasetOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 404, 409, 413, 422, 429),
)
def register_dataset(
    body: DatasetRegistration, principal: OwnerOrOperatorDep, services: ServicesDep
) -> DatasetOut:
    """Register a dataset from a metadata YAML and its sources under the import folder.

    Owners may register only datasets whose ``owner:`` is their organisation. Large sources take
    a while: the request returns when the data is loaded and the registration recorded.
    """
    root = services.settings.effective_import_dir
    metadata_path = _inside(root, body.metadata_path)
    if not metadata_path.is_file():
        raise NotFound(
            "no metadata file at that path in the import folder", code="dataset.import_file_not_found"
        )
    metadata, problems = load_metadata(metadata_path)
    if metadata is None:
        raise MetadataInvalid(f"the metadata has {len(problems)} problem(s)", details={"problems": problems})
    for table in metadata.tables:
        try:
            source = resolve(metadata_path.parent, table.source)
        except SourceError:
            continue  # reported with every other problem by the catalog's validation
        if not source.resolve().is_relative_to(root):
            raise InvalidRequest(
                f"the source of table {table.name!r} lies outside the import folder",
                code="dataset.import_path_outside",
            )
    record = services.control.register_dataset(
        principal,
        services.catalog,
        metadata_path,
        replace=body.replace,
        new_version_budget=body.new_version_budget,
    )
    return DatasetOut.of(record, principal)


def _inside(root: Path, relative: str) -> Path:
    """``relative`` resolved inside ``root``; ``InvalidRequest`` if it is absolute or escapes."""
    candidate = Path(relative)
    try:
        resolved = (root / candidate).resolve()
    except (OSError, ValueError):
        resolved = None
    if resolved is None or candidate.is_absolute() or not resolved.is_relative_to(root):
        raise InvalidRequest(
            "metadata_path must be a path relative to the import folder, staying inside it",
            code="dataset.import_path_outside",
        )
    return resolved
