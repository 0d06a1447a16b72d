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
    """The principal of a stored user (whether it is disabled is checked where it acts)."""
    roles = frozenset(Role(r) for r in user.roles.split(",") if r)
    return Principal(name=user.name, roles=roles, organisation=user.organisation)


def add(
    session: Session,
    name: str,
    roles: Iterable[Role],
    organisation: str | None,
    *,
    actor: str | Principal,
    now: datetime,
) -> Principal:
    """Register a user (``user.added``). Analysts and owners need an organisation."""
    organisation = (organisation or "").strip() or None
    if not USERNAME_PATTERN.match(name):
        raise InvalidRequest(
            "user names are 1-64 characters: letters, digits and . _ @ + - (starting with a letter or digit)",
            code="user.invalid_name",
        )
    wanted = _checked_roles(roles, organisation)
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


def _checked_roles(roles: Iterable[Role], organisation: str | None) -> frozenset[Role]:
    wanted = frozenset(Role(r) for r in roles)
    if not wanted:
        raise InvalidRequest(
            "give at least one role: analyst, owner, operator or metrics", code="user.no_role"
        )
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
    return wanted


def _stored(session: Session, name: str) -> User:
    user = session.get(User, name, with_for_update=True)
    if user is None:
        raise NotFound(f"no user {name!r}: add it with `sandbox user add`", code="user.not_found")
    return user


def set_roles(
    session: Session,
    name: str,
    roles: Iterable[Role],
    organisation: str | None,
    *,
    actor: str | Principal,
    now: datetime,
) -> Principal:
    """Change a user's roles and organisation (``user.roles_changed``, old and new values)."""
    user = _stored(session, name)
    organisation = (organisation or "").strip() or None
    wanted = _checked_roles(roles, organisation)
    old_roles = sorted(r for r in user.roles.split(",") if r)
    new_roles = sorted(r.value for r in wanted)
    if (old_roles, user.organisation) == (new_roles, organisation):
        raise Conflict(f"user {name!r} already has these roles", code="user.unchanged")
    old = {"roles": old_roles, "organisation": user.organisation}
    new = {"roles": new_roles, "organisation": organisation}
    user.roles, user.organisation = ",".join(new_roles), organisation
    chain.append(
        session,
        EventType.USER_ROLES_CHANGED,
        actor=actor,
        now=now,
        organisation=organisation,
        payload={"username": name, "old": old, "new": new},
    )
    return principal_of(user)


def set_disabled(
    session: Session, name: str, *, disabled: bool, actor: str | Principal, now: datetime
) -> None:
    """Disable a user (tokens and ``--as`` stop working at once) or enable it again; audited."""
    user = _stored(session, name)
    if (user.disabled_at is not None) == disabled:
        state = "disabled" if disabled else "enabled"
        code = "user.already_disabled" if disabled else "user.already_enabled"
        raise Conflict(f"user {name!r} is already {state}", code=code)
    user.disabled_at = now if disabled else None
    chain.append(
        session,
        EventType.USER_DISABLED if disabled else EventType.USER_ENABLED,
        actor=actor,
        now=now,
        organisation=user.organisation,
        payload={"username": name},
    )


def ensure_enabled(session: Session, name: str) -> None:
    """``Conflict`` (``user.disabled``) if the user is disabled."""
    user = session.get(User, name)
    if user is not None and user.disabled_at is not None:
        raise Conflict(f"user {name!r} is disabled: enable it first", code="user.disabled")


def get(session: Session, name: str) -> Principal:
    """The registered user ``name``; ``NotFound`` (``user.not_found``)."""
    user = session.get(User, name)
    if user is None:
        raise NotFound(f"no user {name!r}: add it with `sandbox user add`", code="user.not_found")
    return principal_of(user)


def list_all(session: Session) -> list[Principal]:
    """Every registered user, by name."""
    return [principal_of(u) for u in session.scalars(select(User).order_by(User.name))]
