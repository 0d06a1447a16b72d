"""Use case: who may act. Users, roles and API tokens; verifying the CLI's ``--as``; recording
failed authentications and authorisation refusals."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.auth import tokens, users
from sandbox.auth.tokens import IssuedToken, TokenView
from sandbox.control.base import Core
from sandbox.control.refusals import RefusalLimiter
from sandbox.errors import Forbidden, NotFound, Unauthenticated
from sandbox.principals import Principal, Role
from sandbox.store.models import User


class Identity(Core):
    """Users, roles and tokens; every change is audited with the acting principal."""

    refusals: RefusalLimiter

    def add_user(
        self, name: str, roles: Iterable[Role], organisation: str | None, *, actor: str | Principal
    ) -> Principal:
        """Register a user (``user.added``); ``Conflict`` (``user.exists``) if the name is taken."""
        with self._store.write_transaction() as session:
            return users.add(session, name, roles, organisation, actor=actor, now=self._now())

    def set_user_roles(
        self, name: str, roles: Iterable[Role], organisation: str | None, *, actor: str | Principal
    ) -> Principal:
        """Change a user's roles and organisation (``user.roles_changed`` with old and new values)."""
        with self._store.write_transaction() as session:
            return users.set_roles(session, name, roles, organisation, actor=actor, now=self._now())

    def disable_user(self, name: str, *, actor: str | Principal) -> None:
        """Disable a user (``user.disabled``): its tokens and ``--as`` are refused at once."""
        with self._store.write_transaction() as session:
            users.set_disabled(session, name, disabled=True, actor=actor, now=self._now())

    def enable_user(self, name: str, *, actor: str | Principal) -> None:
        """Enable a disabled user again (``user.enabled``)."""
        with self._store.write_transaction() as session:
            users.set_disabled(session, name, disabled=False, actor=actor, now=self._now())

    def get_principal(self, name: str) -> Principal:
        """The registered user; ``NotFound`` (``user.not_found``)."""
        with self._store.read() as session:
            return users.get(session, name)

    def list_users(self) -> list[Principal]:
        """All registered users, by name."""
        with self._store.read() as session:
            return users.list_all(session)

    def disabled_users(self) -> set[str]:
        """Names of the disabled users."""
        with self._store.read() as session:
            return set(session.scalars(select(User.name).where(User.disabled_at.is_not(None))))

    def issue_token(
        self, username: str, *, actor: str | Principal, ttl_days: int | None = None, note: str = ""
    ) -> IssuedToken:
        """A new API token for ``username`` (``token.issued``); the token is shown once."""
        ttl = self.settings.token_ttl_days if ttl_days is None else ttl_days
        with self._store.write_transaction() as session:
            return tokens.issue(session, username, actor=actor, ttl_days=ttl, note=note, now=self._now())

    def revoke_token(self, token_id: str, *, actor: str | Principal) -> None:
        """Revoke a token (``token.revoked``); it fails at once afterwards."""
        with self._store.write_transaction() as session:
            tokens.revoke(session, token_id, actor=actor, now=self._now())

    def list_tokens(self, username: str | None = None) -> list[TokenView]:
        """Stored tokens (never the secrets), newest first."""
        with self._store.read() as session:
            return tokens.list_tokens(session, username)

    def principal_for_token(self, token: str) -> Principal:
        """The principal a token belongs to; ``Unauthenticated`` if unknown, revoked, expired or disabled."""
        with self._store.connect() as connection:
            try:
                return tokens.principal_for(connection, token, now=self._now())
            except NotFound as error:
                raise Unauthenticated("the token's user no longer exists") from error

    def acting_user(
        self, name: str, via: str, *, role: Role | tuple[Role, ...], organisation: str | None = None
    ) -> Principal:
        """The registered user ``name`` acting through the CLI (``--as``), verified for ``role``
        (one of them, when several are given).

        Refused (``auth.unknown_actor``, ``auth.actor_disabled``, ``auth.actor_lacks_role``, each
        recorded as ``auth.failed``/``auth.refused``) unless the user exists, is enabled, holds
        ``role`` and, when ``organisation`` is given (the dataset's owning body for an owner),
        belongs to it. The principal carries ``via`` (the OS user) so both are recorded.
        """
        with self._store.read() as session:
            user = session.get(User, name)
            principal = users.principal_of(user) if user is not None else None
            disabled = user is not None and user.disabled_at is not None
        roles = (role,) if isinstance(role, Role) else role
        needed = " or ".join(r.value for r in roles)
        what = f"act as {needed}" + (f" of {organisation}" if organisation else "")
        if principal is None or disabled:
            code = "auth.unknown_actor" if principal is None else "auth.actor_disabled"
            message = (
                f"--as {name}: no registered user of that name"
                if principal is None
                else f"--as {name}: the user is disabled"
            )
            self.record_refusal(EventType.AUTH_FAILED, name, what, code, via=via)
            raise Unauthenticated(message + " (add or enable it with `sandbox user`)", code=code)
        if not any(principal.has(r) for r in roles) or (
            organisation is not None and principal.organisation != organisation
        ):
            held = ", ".join(sorted(r.value for r in principal.roles))
            message = (
                f"--as {name}: user holds {held} of {principal.organisation or 'no organisation'}; "
                f"this command needs {needed}" + (f" of {organisation!r}" if organisation else "")
            )
            self.record_refusal(EventType.AUTH_REFUSED, name, what, "auth.actor_lacks_role", via=via)
            raise Forbidden(message, code="auth.actor_lacks_role")
        return Principal(principal.name, principal.roles, principal.organisation, via=via)

    def record_refusal(
        self,
        type: EventType,
        who: str,
        what: str,
        code: str,
        *,
        via: str | None = None,
        **payload: Any,
    ) -> bool:
        """Record a failed authentication or an authorisation refusal (rate-limited); whether it was."""
        now = self._now()
        suppressed = self.refusals.admit(type, who, now)
        if suppressed is None:
            return False
        actor = Principal(who[:64], frozenset(), via=via)
        with self._store.write_transaction() as session:
            chain.append(
                session,
                type,
                actor=actor,
                now=now,
                payload={"action": what, "code": code, "suppressed": suppressed, **payload},
            )
        return True
