"""Gateway errors arrive as typed exceptions with the server's code, rule, message and status,
and show as one line in IPython."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from workspace_support import Gateway

from sandbox.client import Client
from sandbox.client import errors as e
from sandbox.demo.hub import free_port


@pytest.fixture
def alice(gateway: Gateway) -> Client:
    return Client(gateway.url, gateway.tokens["alice"])


def test_sql_outside_the_whitelist_is_query_rejected(alice: Client) -> None:
    with pytest.raises(e.QueryRejected) as caught:
        alice.query("SELECT * FROM residents", dataset="residents", epsilon=0.1)
    error = caught.value
    assert (error.code, error.rule, error.status) == ("sql.select_star", "sql.select_star", 400)
    assert "aggregates" in error.message
    assert str(error) == f"[sql.select_star] {error.message}"


def test_no_policy_is_policy_denied(alice: Client) -> None:
    with pytest.raises(e.PolicyDenied) as caught:
        alice.query("SELECT COUNT(*) AS n FROM bus_trips", dataset="bus_trips", epsilon=0.1)
    assert (caught.value.code, caught.value.status) == ("policy.no_active_policy", 403)
    assert not isinstance(caught.value, e.BudgetExhausted)


def test_per_query_cap_is_policy_denied_with_its_rule(alice: Client) -> None:
    with pytest.raises(e.PolicyDenied) as caught:
        alice.query("SELECT COUNT(*) AS n FROM residents", dataset="residents", epsilon=2.0)
    assert caught.value.rule == "policy.epsilon_per_query_cap"


def test_spent_budget_is_budget_exhausted(gateway: Gateway) -> None:
    tina = Client(gateway.url, gateway.tokens["tina"])
    tina.query("SELECT COUNT(*) AS n FROM residents", dataset="residents", epsilon=0.2)
    with pytest.raises(e.BudgetExhausted) as caught:
        tina.query("SELECT COUNT(*) AS n FROM residents WHERE age > 30", dataset="residents", epsilon=0.2)
    assert caught.value.code.startswith("budget.") and caught.value.status == 403
    assert isinstance(caught.value, e.PolicyDenied)


def test_bad_token_is_authentication_error(gateway: Gateway) -> None:
    with pytest.raises(e.AuthenticationError) as caught:
        Client(gateway.url, "not-a-token").me()
    assert caught.value.status == 401 and "not-a-token" not in caught.value.message


def test_wrong_role_is_permission_denied(alice: Client) -> None:
    with pytest.raises(e.PermissionDenied) as caught:
        alice.audit()
    assert caught.value.status == 403 and caught.value.code.startswith("auth.")


def test_unknown_dataset_is_not_found(alice: Client) -> None:
    with pytest.raises(e.NotFound) as caught:
        alice.describe("no_such_dataset")
    assert caught.value.status == 404


def test_malformed_request_is_invalid_request(alice: Client) -> None:
    with pytest.raises(e.InvalidRequest) as caught:
        alice.query("SELECT COUNT(*) AS n FROM residents", dataset="residents", epsilon=-1)
    assert caught.value.status == 422


def test_decided_request_is_conflict(gateway: Gateway) -> None:
    civil = Client(gateway.url, gateway.tokens["civil"])
    decided = civil.access_requests(status="approved")
    with pytest.raises(e.Conflict) as caught:
        civil.reject(decided["id"].iloc[0], reason="too late")
    assert caught.value.status == 409


def test_unreachable_gateway_is_gateway_unavailable() -> None:
    with pytest.raises(e.GatewayUnavailable) as caught:
        Client(f"http://127.0.0.1:{free_port()}", "token").me()
    assert caught.value.code == "client.unreachable" and caught.value.status == 0


def test_missing_configuration_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SANDBOX_GATEWAY_URL", "SANDBOX_TOKEN", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(e.GatewayUnavailable, match="SANDBOX_GATEWAY_URL"):
        Client()
    with pytest.raises(e.GatewayUnavailable, match="SANDBOX_TOKEN"):
        Client(url="http://127.0.0.1:1")


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "sql.join_not_allowed", e.QueryRejected),
        (403, "budget.epsilon_exhausted", e.BudgetExhausted),
        (403, "policy.expired", e.PolicyDenied),
        (403, "auth.forbidden", e.PermissionDenied),
        (413, "request.too_large", e.RequestTooLarge),
        (429, "request.rate_limited", e.RateLimited),
        (503, "query.failed", e.QueryFailed),
        (500, "internal", e.ServerError),
    ],
)
def test_error_classes_follow_status_and_code(
    status: int, code: str, kind: type[e.SandboxClientError]
) -> None:
    error = e.error_from_response(
        status, {"error": {"code": code, "message": "m", "rule": None, "details": {"x": 1}}}
    )
    assert type(error) is kind and (error.code, error.status, error.details) == (code, status, {"x": 1})


def test_an_answer_without_the_error_shape_is_a_server_error() -> None:
    error = e.error_from_response(502, "<html>Bad Gateway</html>")
    assert isinstance(error, e.ServerError) and error.code == "http.502"


def test_ipython_shows_a_denial_as_one_line(alice: Client) -> None:
    shell: Any = InteractiveShell.instance()
    shell.user_ns["client"] = alice
    with capture_output() as captured:
        shell.run_cell('client.query("SELECT * FROM residents", dataset="residents", epsilon=0.1)')
    lines = [line for line in captured.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "QueryRejected" in lines[0] and "[sql.select_star]" in lines[0]
    assert "Traceback" not in captured.stdout + captured.stderr
