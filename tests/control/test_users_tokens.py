"""The user registry and API tokens: roles and organisations, hashed storage, expiry, revocation."""

from __future__ import annotations

import hashlib

import pytest
from control_support import OPERATOR, Clock
from sqlalchemy import text

from sandbox.control import ControlPlane
from sandbox.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from sandbox.principals import Principal, Role
from sandbox.store.db import make_engine


def test_users_have_roles_and_organisations(cp: ControlPlane) -> None:
    added = cp.add_user("alice", [Role.ANALYST], "acme", actor="olga")
    assert added == Principal("alice", frozenset({Role.ANALYST}), "acme")
    cp.add_user("otto", [Role.OWNER, Role.ANALYST], "city_stats", actor="olga")
    cp.add_user("olga", [Role.OPERATOR], None, actor="bootstrap")
    assert cp.get_principal("otto").roles == frozenset({Role.OWNER, Role.ANALYST})
    assert [p.name for p in cp.list_users()] == ["alice", "olga", "otto"]
    [event] = cp.audit_events(OPERATOR, actor="bootstrap")
    assert (event.type, event.payload) == (
        "user.added",
        {"username": "olga", "roles": ["operator"], "organisation": None},
    )


@pytest.mark.parametrize(
    ("name", "roles", "organisation", "code"),
    [
        ("bad name", [Role.ANALYST], "acme", "user.invalid_name"),
        ("", [Role.ANALYST], "acme", "user.invalid_name"),
        ("alice", [], "acme", "user.no_role"),
        ("alice", [Role.ANALYST], None, "user.organisation_required"),
        ("alice", [Role.OWNER], "  ", "user.organisation_required"),
        ("alice", [Role.ANALYST], "x" * 129, "user.invalid_organisation"),
    ],
)
def test_invalid_users_are_refused(
    cp: ControlPlane, name: str, roles: list[Role], organisation: str | None, code: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        cp.add_user(name, roles, organisation, actor="olga")
    assert raised.value.code == code
    assert cp.list_users() == []


def test_duplicate_and_unknown_users(cp: ControlPlane) -> None:
    cp.add_user("alice", [Role.ANALYST], "acme", actor="olga")
    with pytest.raises(Conflict) as conflict:
        cp.add_user("alice", [Role.OPERATOR], None, actor="olga")
    assert conflict.value.code == "user.exists"
    with pytest.raises(NotFound) as missing:
        cp.get_principal("nobody")
    assert missing.value.code == "user.not_found"
    with pytest.raises(NotFound):
        cp.issue_token("nobody", actor="olga")


def test_token_round_trip_and_storage(cp: ControlPlane, db_url: str) -> None:
    cp.add_user("alice", [Role.ANALYST], "acme", actor="olga")
    issued = cp.issue_token("alice", actor="olga", note="laptop")
    assert issued.token.startswith("sbx_") and len(issued.token) > 40
    assert issued.token not in repr(issued)
    assert cp.principal_for_token(issued.token) == cp.get_principal("alice")
    [stored] = cp.list_tokens("alice")
    assert (stored.id, stored.note, stored.revoked_at) == (issued.id, "laptop", None)
    assert (stored.expires_at - stored.created_at).days == cp.settings.token_ttl_days
    engine = make_engine(db_url)
    with engine.connect() as connection:
        hashes = connection.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
        chain = " ".join(connection.execute(text("SELECT payload FROM audit_events")).scalars())
    engine.dispose()
    assert hashes == [hashlib.sha256(issued.token.encode()).hexdigest()]
    assert issued.token not in chain and issued.token[4:] not in chain
    assert cp.audit_events(OPERATOR, type="token.issued")[0].payload["token_id"] == issued.id


def test_revoked_token_fails_at_once(cp: ControlPlane) -> None:
    cp.add_user("alice", [Role.ANALYST], "acme", actor="olga")
    issued = cp.issue_token("alice", actor="olga")
    other = cp.issue_token("alice", actor="olga")
    cp.revoke_token(issued.id, actor="olga")
    with pytest.raises(Unauthenticated) as raised:
        cp.principal_for_token(issued.token)
    assert "revoked" in raised.value.message and issued.token not in raised.value.message
    assert cp.principal_for_token(other.token).name == "alice"
    with pytest.raises(Conflict):
        cp.revoke_token(issued.id, actor="olga")
    with pytest.raises(NotFound):
        cp.revoke_token("tok_missing", actor="olga")
    assert cp.audit_events(OPERATOR, type="token.revoked")[0].payload == {
        "token_id": issued.id,
        "username": "alice",
    }


def test_expired_token_fails(cp: ControlPlane, clock: Clock) -> None:
    cp.add_user("alice", [Role.ANALYST], "acme", actor="olga")
    issued = cp.issue_token("alice", actor="olga", ttl_days=2)
    clock.advance(days=1, hours=23)
    assert cp.principal_for_token(issued.token).name == "alice"
    clock.advance(hours=1)
    with pytest.raises(Unauthenticated) as raised:
        cp.principal_for_token(issued.token)
    assert "expired" in raised.value.message
    with pytest.raises(InvalidRequest):
        cp.issue_token("alice", actor="olga", ttl_days=0)


@pytest.mark.parametrize("token", ["", "garbage", "sbx_" + "A" * 43, "Bearer sbx_x"])
def test_unknown_tokens_fail(cp: ControlPlane, token: str) -> None:
    with pytest.raises(Unauthenticated) as raised:
        cp.principal_for_token(token)
    assert raised.value.http_status == 401
    assert token not in raised.value.message or not token
