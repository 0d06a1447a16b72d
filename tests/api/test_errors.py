"""Every error status through the real server, each with the one error body."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from gateway_support import World, assert_error
from live_gateway import running_gateway

from sandbox.settings import Settings

COUNT_BY_SEX = "SELECT sex, COUNT(*) AS n FROM people GROUP BY sex"


def test_400_query_not_accepted_names_the_rule(world: World) -> None:
    with world.client("alice") as client:
        response = client.post(
            "/api/v1/queries", json={"dataset": "pums", "sql": "SELECT * FROM people", "epsilon": 0.1}
        )
    error = assert_error(response, 400)
    assert str(error["code"]).startswith("sql.")
    assert error["rule"] == error["code"]


def test_401_without_token_asks_for_bearer(world: World) -> None:
    with world.client() as client:
        response = client.get("/api/v1/me")
    assert_error(response, 401, "auth.missing_token")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer sbx_not-a-real-token", "Bearer nonsense", "Basic YWxpY2U6eA=="])
def test_401_for_bad_tokens_never_echoes_them(world: World, header: str) -> None:
    with world.client() as client:
        response = client.get("/api/v1/me", headers={"Authorization": header})
    assert_error(response, 401)
    assert header.split(" ", 1)[1] not in response.text
    assert "WWW-Authenticate".lower() in response.headers


def test_403_role_and_policy_denials(world: World) -> None:
    with world.client("alice") as alice:
        assert_error(alice.get("/api/v1/audit"), 403, "auth.role_required")
    with world.client("bob") as bob:
        denied = assert_error(
            bob.post("/api/v1/queries", json={"dataset": "pums", "sql": COUNT_BY_SEX, "epsilon": 0.1}), 403
        )
    assert denied["rule"] is not None


def test_404_unknown_route_dataset_and_objects(world: World) -> None:
    with world.client("alice") as client:
        assert_error(client.get("/api/v1/nothing-here"), 404, "route.not_found")
        assert_error(client.get("/api/v1/datasets/no_such_dataset"), 404, "catalog.dataset_not_found")
        assert_error(client.get("/api/v1/queries/q_0000"), 404)
        assert_error(client.get("/api/v1/access-requests/req_0000"), 404)
        assert_error(client.get("/api/v1/policies/pol_0000"), 404)


def test_405_wrong_method(world: World) -> None:
    with world.client("alice") as client:
        response = client.delete("/api/v1/me")
    assert_error(response, 405, "route.method_not_allowed")
    assert "GET" in response.headers["allow"]


def test_409_deciding_twice(world: World) -> None:
    with world.client("olivia") as client:
        response = client.post(
            f"/api/v1/access-requests/{world.acme_policy.request_id}/approve",
            json={"max_epsilon_per_query": 1.0},
        )
    assert_error(response, 409, "request.already_decided")


def test_413_body_too_large_by_length_and_by_stream(world: World) -> None:
    big = "x" * (world.settings.max_body_bytes + 1)
    with world.client("alice") as client:
        declared = client.post("/api/v1/queries", json={"dataset": "pums", "sql": big, "epsilon": 0.1})
        assert_error(declared, 413, "request.too_large")

        def chunks() -> Iterator[bytes]:
            yield b'{"dataset": "pums", "epsilon": 0.1, "sql": "'
            for _ in range(world.settings.max_body_bytes // 1024 + 2):
                yield b"x" * 1024
            yield b'"}'

        streamed = client.post(
            "/api/v1/queries", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert_error(streamed, 413, "request.too_large")


def test_413_sql_too_long_is_refused_and_recorded(world: World) -> None:
    sql = "SELECT COUNT(*) AS n FROM people WHERE " + " OR ".join(["age = 1"] * 1200)
    assert world.settings.max_sql_length < len(sql) < world.settings.max_body_bytes
    with world.client("alice") as client:
        response = client.post("/api/v1/queries", json={"dataset": "pums", "sql": sql, "epsilon": 0.1})
        assert_error(response, 413, "request.sql_too_long")
        history = client.get("/api/v1/queries", params={"limit": 5}).json()
    assert any(q["error_code"] == "request.sql_too_long" for q in history)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"dataset": "pums", "sql": "SELECT COUNT(*) FROM people", "epsilon": -1}', "epsilon"),
        (b'{"dataset": "pums", "epsilon": 0.1}', "sql"),
        (b'{"dataset": "secret-value-42!", "sql": "x", "epsilon": 0.1}', "dataset"),
    ],
)
def test_422_malformed_requests_name_the_field_not_the_value(
    world: World, content: bytes, field: str
) -> None:
    with world.client("alice") as client:
        response = client.post(
            "/api/v1/queries", content=content, headers={"Content-Type": "application/json"}
        )
    error = assert_error(response, 422, "request.invalid")
    assert field in str(error["message"])
    assert "secret-value-42" not in response.text


def test_422_bad_query_parameters(world: World) -> None:
    with world.client("alice") as client:
        assert_error(client.get("/api/v1/queries", params={"limit": 0}), 422, "request.invalid")
    with world.client("oscar") as client:
        assert_error(client.get("/api/v1/audit/export", params={"format": "xml"}), 422)
        assert_error(client.get("/api/v1/audit", params={"since": "yesterday"}), 422)


@pytest.fixture
def strict_gateway(world: World) -> Iterator[str]:
    """A second gateway on the same home allowing 3 requests per minute per principal."""
    settings = Settings(
        home=world.settings.home, import_dir=world.settings.import_dir, rate_limit_per_minute=3
    )
    with running_gateway(settings) as base_url:
        yield base_url


def test_429_rate_limit_per_principal(world: World, strict_gateway: str) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['alice']}"}
    with httpx.Client(base_url=strict_gateway, headers=headers) as client:
        statuses = [client.get("/api/v1/me").status_code for _ in range(3)]
        limited = client.get("/api/v1/me")
    assert statuses == [200, 200, 200]
    assert_error(limited, 429, "request.rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    other = {"Authorization": f"Bearer {world.tokens['bob']}"}
    with httpx.Client(base_url=strict_gateway, headers=other) as client:
        assert client.get("/api/v1/me").status_code == 200


def test_422_undecodable_body(world: World) -> None:
    with world.client("alice") as client:
        response = client.post(
            "/api/v1/queries", content=b"\xff\xfe\x00garbage", headers={"Content-Type": "application/json"}
        )
    assert_error(response, 422, "request.json_invalid")


def test_422_for_cursors_no_store_can_compare(world: World) -> None:
    """A seq past 64 bits, or a forged cursor holding one, is a 4xx, not a 500 from the store
    (found by schemathesis: ``after=6854522767870852933403803648``)."""
    forged = base64.urlsafe_b64encode(json.dumps([2**70]).encode()).decode().rstrip("=")
    with world.client("oscar") as client:
        assert_error(client.get("/api/v1/audit", params={"after": 2**70}), 422, "request.invalid")
        assert_error(client.get("/api/v1/audit", params={"cursor": forged}), 422, "request.invalid_cursor")
        assert client.get("/api/v1/audit", params={"after": 2**63 - 1}).status_code == 200
