"""Governance over HTTP: operators see every budget, owners amend policies and set lifetime caps,
analysts withdraw requests, lists page with cursors, refusals are audit events, and Prometheus
scrapes with a metrics-only token. A world of its own (caps must not leak into other tests)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gateway_support import World, assert_error, build_world
from live_gateway import running_gateway

from sandbox.control import ControlPlane
from sandbox.principals import Role


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[World]:
    home = tmp_path_factory.mktemp("governance") / "home"
    built = build_world(home, shared_data, rate_limit_per_minute=100_000)
    with ControlPlane(built.settings) as control:
        control.add_user("prom", [Role.METRICS], None, actor="test-admin")
        built.tokens["prom"] = control.issue_token("prom", actor="test-admin").token
    with running_gateway(built.settings) as base_url:
        built.base_url = base_url
        yield built


def query(world: World, epsilon: float, sql: str, user: str = "alice") -> dict[str, object]:
    with world.client(user) as client:
        response = client.post("/api/v1/queries", json={"dataset": "pums", "sql": sql, "epsilon": epsilon})
    return {"status": response.status_code, **response.json()}


def test_operators_see_every_budget_and_owners_amend_and_cap(own: World) -> None:
    with own.client("oscar") as operator:
        budgets = operator.get("/api/v1/budget")
    assert budgets.status_code == 200, budgets.text
    [budget] = budgets.json()
    assert (budget["organisation"], budget["ledger"], budget["lifetime_epsilon_cap"]) == (
        "acme",
        "pums",
        None,
    )
    policy_id = own.acme_policy.id
    with own.client("olivia") as owner:
        capped = owner.put(
            "/api/v1/datasets/pums/caps",
            json={"scope": "organisation", "organisation": "acme", "epsilon": 0.3},
        )
        assert capped.status_code == 204, capped.text
        amended = owner.post(f"/api/v1/policies/{policy_id}/amend", json={"epsilon": 150.0, "reason": "more"})
        assert amended.status_code == 200 and amended.json()["epsilon"] == 150.0
        assert_error(owner.post(f"/api/v1/policies/{policy_id}/amend", json={"columns": ["ssn"]}), 422)
        for unnamed in (
            {"scope": "organisation", "epsilon": 1.0},
            {"scope": "dataset", "organisation": "acme"},
        ):
            assert_error(owner.put("/api/v1/datasets/pums/caps", json=unnamed), 422, "request.invalid")
    with own.client("otto") as other_owner:
        assert_error(other_owner.post(f"/api/v1/policies/{policy_id}/amend", json={"epsilon": 200.0}), 404)
    assert query(own, 0.2, "SELECT COUNT(*) AS n FROM people")["status"] == 200
    refused = query(own, 0.2, "SELECT AVG(age) AS mean_age FROM people")
    assert refused["status"] == 403 and refused["error"]["code"] == "budget.lifetime_cap_exhausted"  # type: ignore[index]
    with own.client("oscar") as operator:
        events = operator.get("/api/v1/audit", params={"type": "policy.amended"}).json()
    assert [e["payload"]["new"]["epsilon"] for e in events] == ["150"]


def test_withdraw_duplicate_and_cursor_pages(own: World) -> None:
    body = {
        "dataset": "pums",
        "purpose": "a second study",
        "columns": ["age"],
        "epsilon": 1.0,
        "valid_until": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
    }
    with own.client("bob") as bob:
        first = bob.post("/api/v1/access-requests", json=body).json()
        assert_error(bob.post("/api/v1/access-requests", json=body), 409, "request.duplicate_pending")
        withdrawn = bob.post(f"/api/v1/access-requests/{first['id']}/withdraw")
        assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
        for _ in range(2):
            made = bob.post("/api/v1/access-requests", json=body).json()
            assert bob.post(f"/api/v1/access-requests/{made['id']}/withdraw").status_code == 200
    with own.client("oscar") as operator:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = operator.get("/api/v1/access-requests", params=params)
            assert page.status_code == 200, page.text
            seen += [r["id"] for r in page.json()]
            cursor = page.headers.get("x-next-cursor")
            if cursor is None:
                break
        everything = [r["id"] for r in operator.get("/api/v1/access-requests", params={"limit": 1000}).json()]
        assert seen == everything and len(seen) == 4
        assert_error(
            operator.get("/api/v1/queries", params={"cursor": "not-a-cursor"}), 422, "request.invalid_cursor"
        )
        first_page = operator.get("/api/v1/audit", params={"after": 0, "limit": 3})
        assert [e["seq"] for e in first_page.json()] == [1, 2, 3]
        second = operator.get(
            "/api/v1/audit", params={"cursor": first_page.headers["x-next-cursor"], "limit": 3}
        )
        assert [e["seq"] for e in second.json()] == [4, 5, 6]


def test_refusals_are_audited_and_metrics_need_only_a_scrape_role(own: World) -> None:
    with own.client() as anonymous:
        for _ in range(3):
            assert_error(anonymous.get("/api/v1/budget", headers={"Authorization": "Bearer sbx_wrong"}), 401)
    with own.client("alice") as analyst:
        assert_error(analyst.get("/api/v1/audit"), 403, "auth.role_required")
    with own.client("prom") as scraper:
        scraped = scraper.get("/metrics")
        assert scraped.status_code == 200, scraped.text
        for path in ("/api/v1/budget", "/api/v1/audit", "/api/v1/datasets", "/api/v1/me", "/api/v1/policies"):
            assert_error(scraper.get(path), 403, "auth.scrape_only")
    text = scraped.text
    assert 'sandbox_budget_epsilon_remaining{dataset="pums",organisation="acme"' in text
    assert 'sandbox_lifetime_epsilon_used{ledger="pums",organisation="acme"}' in text
    with own.client("oscar") as operator:
        failed = operator.get("/api/v1/audit", params={"type": "auth.failed"}).json()
        refused = operator.get("/api/v1/audit", params={"type": "auth.refused"}).json()
    assert len(failed) >= 3 and all(e["actor"].startswith("anonymous@") for e in failed)
    assert {(e["actor"], e["payload"]["action"]) for e in refused} >= {("alice", "GET /api/v1/audit")}


def test_the_client_pages_and_amends(own: World) -> None:
    from sandbox.client import Client

    with Client(own.base_url, own.tokens["oscar"]) as operator:
        first = operator.audit(after=0, limit=2)
        assert list(first["seq"]) == [1, 2] and first.attrs["next_cursor"]
        second = operator.audit(cursor=first.attrs["next_cursor"], limit=2)
        assert list(second["seq"]) == [3, 4]
        budgets = operator.budget()
        assert {"ledger", "lifetime_epsilon_used", "lifetime_epsilon_cap"} <= set(budgets.columns)
        requests = operator.access_requests(limit=1)
        assert len(requests) == 1 and requests.attrs["next_cursor"]
    with Client(own.base_url, own.tokens["olivia"]) as owner:
        amended = owner.amend_policy(own.acme_policy.id, epsilon=160.0, reason="client")
        assert amended["epsilon"] == 160.0
        owner.set_cap("pums", scope="per_organisation", epsilon=50.0)


def test_verify_over_http_names_a_tampered_policy(own: World) -> None:
    from sqlalchemy import update

    from sandbox.store.db import make_engine
    from sandbox.store.models import Policy

    with own.client("oscar") as operator:
        assert operator.get("/api/v1/audit/verify").json()["ok"] is True
        engine = make_engine(own.settings.state_db_url)
        with engine.begin() as connection:
            connection.execute(update(Policy).where(Policy.id == own.acme_policy.id).values(status="revoked"))
        engine.dispose()
        report = operator.get("/api/v1/audit/verify").json()
    assert report["ok"] is False and report["first_error"] is None and report["state_checked"] is True
    assert report["divergences"] == [
        {
            "table": "policies",
            "row": own.acme_policy.id,
            "field": "status",
            "chain": "active",
            "stored": "revoked",
        }
    ]
