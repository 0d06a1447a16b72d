"""``GET /api/v1/me``: who the caller is."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.api.deps import PrincipalDep
from sandbox.api.schemas import Me, error_responses

router = APIRouter(prefix="/api/v1", tags=["identity"])


@router.get("/me", response_model=Me, responses=error_responses(401, 403, 429))
async def me(principal: PrincipalDep) -> Me:
    """The caller's name, roles and organisation."""
    return Me(name=principal.name, roles=sorted(principal.roles), organisation=principal.organisation)
