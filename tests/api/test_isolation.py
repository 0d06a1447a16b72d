"""Tenant isolation through HTTP: organisations and owners see and spend only what is theirs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from gateway_support import World, assert_error

from sandbox.control import ControlPlane

COUNT_BY_RACE = "SELECT race, COUNT(*) AS n FROM people GROUP BY race"


@pytest.fixture(scope="module")
def acme_query(world: World) -> str:
    """The id of a query alice (acme) ran on pums."""
    with world.client("alice") as alice:
        response = alice.post(
            "/api/v1/queries", json={"dataset": "pums", "sql": COUNT_BY_RACE, "epsilon": 0.25}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["query_id"])


def test_other_organisation_sees_nothing_of_acme(world: World, acme_query: str) -> None:
    policy = world.acme_policy
    with world.client("bob") as bob:
        assert policy.request_id not in {r["id"] for r in bob.get("/api/v1/access-requests").json()}
        assert policy.id not in {p["id"] for p in bob.get("/api/v1/policies").json()}
        assert acme_query not in {q["id"] for q in bob.get("/api/v1/queries").json()}
        assert all(b["organisation"] == "globex" for b in bob.get("/api/v1/budget").json())
        assert_error(bob.get(f"/api/v1/access-requests/{policy.request_id}"), 404)
        assert_error(bob.get(f"/api/v1/policies/{policy.id}"), 404)
        assert_error(bob.get(f"/api/v1/queries/{acme_query}"), 404)


def test_other_organisation_cannot_spend_acme_budget(
    world: World, control: ControlPlane, acme_query: str
) -> None:
    alice = control.get_principal("alice")
    before = {b.policy_id: b.epsilon_spent for b in control.budget(alice)}
    with world.client("bob") as bob:
        for epsilon in (0.1, 0.2):
            response = bob.post(
                "/api/v1/queries", json={"dataset": "pums", "sql": COUNT_BY_RACE, "epsilon": epsilon}
            )
            assert_error(response, 403)
        replay = bob.post("/api/v1/queries", json={"dataset": "pums", "sql": COUNT_BY_RACE, "epsilon": 0.25})
        assert_error(replay, 403)
    assert {b.policy_id: b.epsilon_spent for b in control.budget(alice)} == before


def test_analyst_cannot_decide_or_administer(world: World) -> None:
    with world.client("bob") as bob:
        approve = bob.post(
            f"/api/v1/access-requests/{world.acme_policy.request_id}/approve",
            json={"max_epsilon_per_query": 1.0},
        )
        assert_error(approve, 403, "auth.role_required")
        assert_error(
            bob.post(f"/api/v1/policies/{world.acme_policy.id}/revoke", json={"reason": "mine"}), 403
        )
        assert_error(bob.get("/api/v1/usage"), 403)
        assert_error(bob.get("/metrics"), 403)


def test_owner_cannot_decide_on_another_owners_dataset(world: World) -> None:
    with world.client("bob") as bob:
        created = bob.post(
            "/api/v1/access-requests",
            json={
                "dataset": "pums",
                "purpose": "Education statistics.",
                "columns": ["educ"],
                "epsilon": 0.5,
                "valid_until": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            },
        )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    with world.client("otto") as otto:
        assert request_id not in {r["id"] for r in otto.get("/api/v1/access-requests").json()}
        assert_error(
            otto.post(f"/api/v1/access-requests/{request_id}/approve", json={"max_epsilon_per_query": 0.5}),
            404,
        )
        assert_error(otto.post(f"/api/v1/access-requests/{request_id}/reject", json={"reason": "no"}), 404)
        assert_error(otto.post(f"/api/v1/policies/{world.acme_policy.id}/revoke", json={"reason": "no"}), 404)
        assert all(row["dataset"] == "pums_t" for row in otto.get("/api/v1/usage").json()["rows"])
    with world.client("olivia") as olivia:
        still = olivia.get(f"/api/v1/access-requests/{request_id}").json()
    assert still["status"] == "pending"


def test_core_dataset_visible_to_its_owner_and_operators_only(world: World) -> None:
    for user, visible in (("alice", False), ("otto", False), ("olivia", True), ("oscar", True)):
        with world.client(user) as client:
            names = {d["name"] for d in client.get("/api/v1/datasets").json()}
            assert ("pums_null" in names) is visible, user
            status = client.get("/api/v1/datasets/pums_null").status_code
            assert status == (200 if visible else 404), user
    with world.client("alice") as alice:
        response = alice.post(
            "/api/v1/queries",
            json={"dataset": "pums_null", "sql": "SELECT COUNT(*) AS n FROM people", "epsilon": 0.1},
        )
    assert_error(response, 404, "catalog.dataset_not_found")
