"""API tokens: ``sbx_`` + random, stored as SHA-256 only, with expiry and revocation."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class IssuedToken(BaseModel):
    """A freshly issued token; ``token`` is shown once and never stored."""

    model_config = ConfigDict(frozen=True)

    id: str
    username: str
    token: str = Field(repr=False)
    expires_at: datetime


class TokenView(BaseModel):
    """A stored token's bookkeeping (never the token itself)."""

    model_config = ConfigDict(frozen=True)

    id: str
    username: str
    note: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
