"""API tokens: ``sbx_`` + random, stored as SHA-256 only, with expiry and revocation."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.auth import users
from sandbox.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from sandbox.principals import Principal
from sandbox.store.models import ApiToken, Base, User

MAX_NOTE_LENGTH = 200
_TOKENS = Base.metadata.tables[ApiToken.__tablename__]
_USERS = Base.metadata.tables[User.__tablename__]
# one pre-built Core statement per request: the token's state and its holder
_TOKEN_HOLDER = (
    select(
        _TOKENS.c.revoked_at,
        _TOKENS.c.expires_at,
        _USERS.c.name,
        _USERS.c.roles,
        _USERS.c.organisation,
        _USERS.c.disabled_at,
    )
    .select_from(_TOKENS.outerjoin(_USERS, _USERS.c.name == _TOKENS.c.username))
    .where(_TOKENS.c.token_hash == bindparam("b_hash"))
)


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


TOKEN_PREFIX = "sbx_"


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256 hex of its UTF-8 text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(
    session: Session, username: str, *, actor: str | Principal, ttl_days: int, note: str, now: datetime
) -> IssuedToken:
    """Issue a token for a registered user (``token.issued``); only its hash is stored."""
    user = users.get(session, username)
    users.ensure_enabled(session, username)
    if ttl_days < 1:
        raise InvalidRequest("token lifetime must be at least one day", code="token.invalid_ttl")
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidRequest(
            f"token notes are at most {MAX_NOTE_LENGTH} characters", code="token.invalid_note"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(16)
    expires_at = now + timedelta(days=ttl_days)
    session.add(
        ApiToken(
            id=token_id,
            username=username,
            token_hash=hash_token(token),
            note=note,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
        )
    )
    chain.append(
        session,
        EventType.TOKEN_ISSUED,
        actor=actor,
        now=now,
        organisation=user.organisation,
        payload={
            "token_id": token_id,
            "username": username,
            "expires_at": expires_at.isoformat(),
            "note": note,
        },
    )
    return IssuedToken(id=token_id, username=username, token=token, expires_at=expires_at)


def revoke(session: Session, token_id: str, *, actor: str | Principal, now: datetime) -> None:
    """Revoke a token (``token.revoked``); ``Conflict`` if it already is."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no token {token_id!r}", code="token.not_found")
    if row.revoked_at is not None:
        raise Conflict(f"token {token_id!r} is already revoked", code="token.already_revoked")
    row.revoked_at = now
    owner = users.get(session, row.username)
    chain.append(
        session,
        EventType.TOKEN_REVOKED,
        actor=actor,
        now=now,
        organisation=owner.organisation,
        payload={"token_id": token_id, "username": row.username},
    )


def principal_for(connection: Session | Connection, token: str, *, now: datetime) -> Principal:
    """The principal holding ``token``; ``Unauthenticated`` if unknown, revoked or expired.

    One indexed Core SELECT (token state joined with its user), read on every request.
    ``NotFound`` (``user.not_found``) if the token's user no longer exists.
    """
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated("invalid token: use a token issued by `sandbox token create`")
    row = connection.execute(_TOKEN_HOLDER, {"b_hash": hash_token(token)}).one_or_none()
    if row is None:
        raise Unauthenticated("invalid token: use a token issued by `sandbox token create`")
    if row.revoked_at is not None:
        raise Unauthenticated("this token was revoked: ask the operator for a new one")
    if row.expires_at <= now:
        raise Unauthenticated("this token has expired: ask the operator for a new one")
    if row.name is None:
        raise NotFound("the token's user no longer exists", code="user.not_found")
    if row.disabled_at is not None:
        raise Unauthenticated(f"user {row.name!r} is disabled: ask the operator", code="auth.user_disabled")
    return users.principal_of(User(name=row.name, roles=row.roles, organisation=row.organisation))


def list_tokens(session: Session, username: str | None = None) -> list[TokenView]:
    """Stored tokens (optionally of one user), newest first; never the secrets."""
    statement = select(ApiToken).order_by(ApiToken.created_at.desc())
    if username is not None:
        statement = statement.where(ApiToken.username == username)
    return [
        TokenView(
            id=r.id,
            username=r.username,
            note=r.note,
            created_at=r.created_at,
            expires_at=r.expires_at,
            revoked_at=r.revoked_at,
        )
        for r in session.scalars(statement)
    ]
