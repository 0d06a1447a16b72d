"""Token mode: revocation and expiry take effect on the very next request; both header schemes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway_support import World, assert_error

from sandbox.control import ControlPlane
from sandbox.store.db import Store
from sandbox.store.models import ApiToken


def test_revoked_token_fails_at_once(world: World, control: ControlPlane) -> None:
    issued = control.issue_token("alice", actor="test-admin", note="revocation test")
    headers = {"Authorization": f"Bearer {issued.token}"}
    with world.client() as client:
        assert client.get("/api/v1/me", headers=headers).json()["name"] == "alice"
        control.revoke_token(issued.id, actor="test-admin")
        response = client.get("/api/v1/me", headers=headers)
    error = assert_error(response, 401)
    assert "revoked" in str(error["message"])
    assert issued.token not in response.text


def test_expired_token_fails_at_once(world: World, control: ControlPlane) -> None:
    issued = control.issue_token("bob", actor="test-admin", ttl_days=1)
    headers = {"Authorization": f"Bearer {issued.token}"}
    with world.client() as client:
        assert client.get("/api/v1/me", headers=headers).status_code == 200
        store = Store(world.settings.state_db_url)
        with store.write_transaction() as session:
            row = session.get(ApiToken, issued.id)
            assert row is not None
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        store.dispose()
        response = client.get("/api/v1/me", headers=headers)
    error = assert_error(response, 401)
    assert "expired" in str(error["message"])


def test_hub_style_token_scheme_is_accepted(world: World) -> None:
    with world.client() as client:
        response = client.get("/api/v1/me", headers={"Authorization": f"token {world.tokens['oscar']}"})
    assert response.json() == {"name": "oscar", "roles": ["operator"], "organisation": None}


def test_me_for_every_role(world: World) -> None:
    for user, role, organisation in (
        ("alice", "analyst", "acme"),
        ("olivia", "owner", "census-bureau"),
        ("oscar", "operator", None),
    ):
        with world.client(user) as client:
            assert client.get("/api/v1/me").json() == {
                "name": user,
                "roles": [role],
                "organisation": organisation,
            }
