"""The user registry: username → roles and organisation, kept in the state store."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.errors import Conflict, InvalidRequest, NotFound
from sandbox.principals import Principal, Role
from sandbox.store.models import User

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
MAX_ORGANISATION_LENGTH = 128


def principal_of(user: User) -> Principal:
    """The principal of a stored user."""
    roles = frozenset(Role(r) for r in user.roles.split(",") if r)
    return Principal(name=user.name, roles=roles, organisation=user.organisation)


def add(
    session: Session,
    name: str,
    roles: Iterable[Role],
    organisation: str | None,
    *,
    actor: str,
    now: datetime,
) -> Principal:
    """Register a user (``user.added``). Analysts and owners need an organisation."""
    wanted = frozenset(Role(r) for r in roles)
    organisation = (organisation or "").strip() or None
    if not USERNAME_PATTERN.match(name):
        raise InvalidRequest(
            "user names are 1-64 characters: letters, digits and . _ @ + - (starting with a letter or digit)",
            code="user.invalid_name",
        )
    if not wanted:
        raise InvalidRequest("give at least one role: analyst, owner or operator", code="user.no_role")
    if organisation is None and wanted & {Role.ANALYST, Role.OWNER}:
        raise InvalidRequest(
            "analysts and owners need an organisation (the company, or the owning body of datasets)",
            code="user.organisation_required",
        )
    if organisation is not None and len(organisation) > MAX_ORGANISATION_LENGTH:
        raise InvalidRequest(
            f"organisation names are at most {MAX_ORGANISATION_LENGTH} characters",
            code="user.invalid_organisation",
        )
    if session.get(User, name) is not None:
        raise Conflict(f"user {name!r} already exists", code="user.exists")
    role_text = ",".join(sorted(r.value for r in wanted))
    session.add(User(name=name, roles=role_text, organisation=organisation, created_at=now))
    chain.append(
        session,
        EventType.USER_ADDED,
        actor=actor,
        now=now,
        organisation=organisation,
        payload={"username": name, "roles": sorted(r.value for r in wanted), "organisation": organisation},
    )
    return Principal(name=name, roles=wanted, organisation=organisation)


def get(session: Session, name: str) -> Principal:
    """The registered user ``name``; ``NotFound`` (``user.not_found``)."""
    user = session.get(User, name)
    if user is None:
        raise NotFound(f"no user {name!r}: add it with `sandbox user add`", code="user.not_found")
    return principal_of(user)


def list_all(session: Session) -> list[Principal]:
    """Every registered user, by name."""
    return [principal_of(u) for u in session.scalars(select(User).order_by(User.name))]
