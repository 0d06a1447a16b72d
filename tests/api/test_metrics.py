"""``/healthz`` is public; ``/metrics`` is for operators and counts queries, refusals, latency, epsilon."""

from __future__ import annotations

from gateway_support import World, assert_error


def test_healthz_is_public(world: World) -> None:
    with world.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_metrics_for_operators_only(world: World) -> None:
    with world.client() as anonymous:
        assert_error(anonymous.get("/metrics"), 401)
    with world.client("alice") as alice:
        assert_error(alice.get("/metrics"), 403)
        alice.post(
            "/api/v1/queries",
            json={
                "dataset": "pums",
                "sql": "SELECT COUNT(*) AS n FROM people WHERE age > 33",
                "epsilon": 0.1,
            },
        )
        alice.post(
            "/api/v1/queries", json={"dataset": "pums", "sql": "SELECT pid FROM people", "epsilon": 0.1}
        )
    with world.client("oscar") as oscar:
        response = oscar.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'sandbox_queries_total{kind="query",outcome="answered"}' in text
    assert 'sandbox_queries_total{kind="query",outcome="rejected"}' in text
    assert "sandbox_rejections_total{rule=" in text
    assert "sandbox_query_latency_seconds_bucket" in text
    assert 'sandbox_epsilon_spent_total{dataset="pums"}' in text
