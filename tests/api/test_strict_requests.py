"""Request bodies are read one way only: strict JSON, JSON numbers within sane ranges, nothing charged
for a refused request; record ids carry at least 128 random bits."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from gateway_support import World, assert_error

COUNT = "SELECT COUNT(*) AS n FROM people"


def remaining(client: httpx.Client) -> float:
    (budget,) = [b for b in client.get("/api/v1/budget").json() if b["dataset"] == "pums"]
    return float(budget["epsilon_remaining"])


def post_raw(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/api/v1/queries", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"dataset": "pums", "sql": "%s", "epsilon": 0.1, "epsilon": 5}', "request.json_duplicate_key"),
        (b'\xef\xbb\xbf{"dataset": "pums", "sql": "%s", "epsilon": 0.1}', "request.json_bom"),
        (b'{"dataset": "pums", "sql": "%s", "epsilon": NaN}', "request.json_invalid"),
        (b'{"dataset": "pums", "sql": "%s", "epsilon": Infinity}', "request.json_invalid"),
        (b'{"dataset": "pums", "sql": "%s", "epsilon": 0.1', "request.json_invalid"),
        (b'{"dataset": "pums", "sql": "%s", "epsilon": 0.1, "x": "\xff"}', "request.json_invalid"),
    ],
    ids=["duplicate-key", "bom", "nan", "infinity", "truncated", "not-utf8"],
)
def test_ambiguous_json_is_refused_and_nothing_is_charged(world: World, body: bytes, code: str) -> None:
    with world.client("alice") as client:
        before = remaining(client)
        error = assert_error(post_raw(client, body.replace(b"%s", COUNT.encode())), 422, code)
        assert error["rule"] == code
        assert remaining(client) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epsilon", "1"),
        ("epsilon", True),
        ("epsilon", 1e-320),
        ("epsilon", 0),
        ("epsilon", -1),
        ("epsilon", 1e7),
        ("delta", "0"),
        ("delta", 0.5),
        ("delta", -1e-9),
    ],
)
def test_numbers_must_be_json_numbers_in_range(world: World, field: str, value: object) -> None:
    body = {"dataset": "pums", "sql": COUNT, "epsilon": 0.1, field: value}
    with world.client("alice") as client:
        before = remaining(client)
        error = assert_error(post_raw(client, json.dumps(body).encode()), 422, "request.invalid")
        assert field in str(error["message"])
        assert remaining(client) == before


def test_integer_epsilon_is_a_json_number(world: World) -> None:
    with world.client("alice") as client:
        response = client.post(
            "/api/v1/queries/estimate", json={"dataset": "pums", "sql": COUNT, "epsilon": 1}
        )
    assert response.status_code == 200, response.text


def test_record_ids_carry_128_random_bits(world: World) -> None:
    with world.client("alice") as client:
        answer = client.post("/api/v1/queries", json={"dataset": "pums", "sql": COUNT, "epsilon": 0.01})
        assert answer.status_code == 200, answer.text
        policies = client.get("/api/v1/policies").json()
    ids = [answer.json()["query_id"], *(p["id"] for p in policies), *(p["request_id"] for p in policies)]
    for identifier in ids:
        assert re.fullmatch(r"[a-z]+_[0-9a-f]{32,}", identifier), identifier
