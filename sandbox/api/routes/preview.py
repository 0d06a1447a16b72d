"""Synthetic previews: rows in a table's declared shape, generated from metadata alone (free)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from sandbox.api.deps import PrincipalDep, ServicesDep
from sandbox.api.schemas import PreviewOut, error_responses
from sandbox.query.preview import MAX_PREVIEW_ROWS, preview

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


@router.get("/{name}/preview", response_model=PreviewOut, responses=error_responses(400, 401, 404, 422, 429))
def get_preview(  # noqa: PLR0917 - FastAPI parameters
    name: str,
    principal: PrincipalDep,
    services: ServicesDep,
    table: Annotated[str | None, Query(max_length=63, description="Default: the first table.")] = None,
    n: Annotated[int, Query(ge=1, le=MAX_PREVIEW_ROWS, description="Rows to generate.")] = 1000,
    seed: Annotated[int, Query(ge=0, le=2**31, description="Same seed, same rows.")] = 0,
) -> dict[str, Any]:
    """``n`` SYNTHETIC rows of a table, generated from its metadata (keys, bounds, types) alone:
    they carry no information about the real data, read no data and cost no budget."""
    return preview(services.visible_dataset(principal, name), table, n, seed)
