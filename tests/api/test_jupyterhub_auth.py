"""JupyterHub mode against a real HTTP server on 127.0.0.1 playing the hub's ``/hub/api/user``.

The stand-in answers like JupyterHub 6: the caller's token in ``Authorization: token <t>``, a
user model (name, kind, groups, scopes, ...) for known tokens, 403 for unknown ones.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from gateway_support import World, assert_error
from live_gateway import running_gateway

from sandbox.control import ControlPlane
from sandbox.principals import Role
from sandbox.settings import Settings

GATEWAY_SCOPE = "access:services!service=sandbox-gateway"
PREFIX = "/services/sandbox-gateway"


def hub_model(
    name: str, groups: list[str], scopes: list[str] | None = None, kind: str = "user"
) -> dict[str, Any]:
    """A user model shaped like JupyterHub 6's ``GET /hub/api/user`` answer."""
    return {
        "kind": kind,
        "name": name,
        "admin": False,
        "groups": groups,
        "scopes": [GATEWAY_SCOPE, "custom:sandbox:query"] if scopes is None else scopes,
        "token_id": "a1",
        "session_id": None,
        "last_activity": "2025-01-01T00:00:00.000000Z",
        "user_info": None,
    }


@dataclass
class FakeHub:
    """Tokens the stand-in hub knows, and how often it was asked about each."""

    models: dict[str, dict[str, Any]]
    broken: set[str] = field(default_factory=set)
    hits: dict[str, int] = field(default_factory=dict)
    url: str = ""


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            hub.hits[token] = hub.hits.get(token, 0) + 1
            if self.path != "/hub/api/user" or scheme != "token":
                self._reply(404, {"status": 404, "message": "Not Found"})
            elif token in hub.broken:
                self._reply(500, {"status": 500, "message": "Internal Server Error"})
            elif token in hub.models:
                self._reply(200, hub.models[token])
            else:
                self._reply(403, {"status": 403, "message": "Missing or invalid credentials."})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    return Handler


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    """The stand-in hub, serving on a free loopback port."""
    state = FakeHub(
        models={
            "hub-alice": hub_model("alice", ["analysts-acme"]),
            "hub-alice-no-group": hub_model("alice", []),
            "hub-alice-wrong-org": hub_model("alice", ["analysts-globex"]),
            "hub-alice-no-scope": hub_model(
                "alice", ["analysts-acme"], scopes=["read:users:name!user=alice"]
            ),
            "hub-olivia": hub_model("olivia", ["owners"]),
            "hub-oscar": hub_model("oscar", ["operators"]),
            "hub-mallory": hub_model("mallory", ["analysts-acme"]),
            "hub-dora": hub_model("dora", ["analysts-acme"]),
            "hub-service": hub_model("sandbox-gateway", [], kind="service"),
        },
        broken={"hub-broken"},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hub/api"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hub_gateway(world: World, hub: FakeHub) -> Iterator[str]:
    """A gateway in JupyterHub mode on the tests' home, answering under the service prefix too."""
    settings = Settings(
        home=world.settings.home,
        auth_mode="jupyterhub",
        hub_api_url=hub.url,
        auth_cache_seconds=30,
        service_prefix=PREFIX + "/",
        rate_limit_per_minute=100_000,
    )
    with running_gateway(settings) as base_url:
        yield base_url


def get(base_url: str, path: str, token: str, scheme: str = "token") -> httpx.Response:
    """``GET`` with a hub-style authorization header."""
    return httpx.get(base_url + path, headers={"Authorization": f"{scheme} {token}"}, timeout=30)


def test_hub_user_gets_registry_role_and_organisation(hub_gateway: str) -> None:
    for path in ("/api/v1/me", f"{PREFIX}/api/v1/me"):
        response = get(hub_gateway, path, "hub-alice")
        assert response.json() == {"name": "alice", "roles": ["analyst"], "organisation": "acme"}
    bearer = get(hub_gateway, "/api/v1/me", "hub-olivia", scheme="Bearer")
    assert bearer.json() == {"name": "olivia", "roles": ["owner"], "organisation": "census-bureau"}


def test_hub_answers_are_cached_by_token(hub_gateway: str, hub: FakeHub) -> None:
    for _ in range(5):
        assert get(hub_gateway, "/api/v1/me", "hub-oscar").status_code == 200
    assert hub.hits["hub-oscar"] == 1
    for _ in range(3):
        assert_error(get(hub_gateway, "/api/v1/me", "hub-unknown"), 401, "auth.hub_token_invalid")
    assert hub.hits["hub-unknown"] == 1


def test_hub_user_can_query(hub_gateway: str) -> None:
    response = httpx.post(
        f"{hub_gateway}{PREFIX}/api/v1/queries",
        headers={"Authorization": "token hub-alice"},
        json={"dataset": "pums", "sql": "SELECT COUNT(*) AS n FROM people WHERE sex = 1", "epsilon": 0.2},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["columns"] == ["n"]


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        ("hub-mallory", 403, "auth.not_registered"),
        ("hub-alice-no-group", 403, "auth.hub_groups_mismatch"),
        ("hub-alice-wrong-org", 403, "auth.hub_groups_mismatch"),
        ("hub-alice-no-scope", 403, "auth.hub_scope_missing"),
        ("hub-service", 403, "auth.hub_not_a_user"),
        ("hub-broken", 503, "auth.hub_unavailable"),
    ],
)
def test_hub_refusals(hub_gateway: str, token: str, status: int, code: str) -> None:
    response = get(hub_gateway, "/api/v1/me", token)
    assert_error(response, status, code)
    assert token not in response.text


def test_a_disabled_user_is_refused_through_the_hub(hub_gateway: str, world: World) -> None:
    with ControlPlane(world.settings) as control:
        control.add_user("dora", [Role.ANALYST], "acme", actor="test-admin")
        control.disable_user("dora", actor="test-admin")
    assert_error(get(hub_gateway, "/api/v1/me", "hub-dora"), 401, "auth.user_disabled")


def test_operator_from_hub_reads_metrics(hub_gateway: str) -> None:
    assert get(hub_gateway, "/metrics", "hub-oscar").status_code == 200
    assert_error(get(hub_gateway, "/metrics", "hub-alice"), 403)


def test_api_tokens_are_not_hub_tokens(hub_gateway: str, world: World) -> None:
    assert_error(get(hub_gateway, "/api/v1/me", world.tokens["alice"], scheme="Bearer"), 401)
