"""The client against a real gateway: discovery, access requests, estimates, queries, budget, history."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from workspace_support import Gateway

from sandbox.client import Client, DPFrame

GROUPED = (
    "SELECT district_code, COUNT(*) AS residents, AVG(income) AS mean_income "
    "FROM residents GROUP BY district_code"
)


def cell(frame: pd.DataFrame, row: str, column: str) -> Any:
    """One value of a frame indexed by name."""
    return frame.loc[row, column]


@pytest.fixture
def alice(gateway: Gateway) -> Client:
    return Client(gateway.url, gateway.tokens["alice"])


def test_client_reads_url_and_token_from_the_environment(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_GATEWAY_URL", gateway.url + "/")
    monkeypatch.delenv("SANDBOX_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", gateway.tokens["bob"])
    assert Client().me() == {"name": "bob", "roles": ["analyst"], "organisation": "acme"}
    monkeypatch.setenv("SANDBOX_TOKEN", gateway.tokens["alice"])  # an explicit sandbox token wins
    assert Client().me()["name"] == "alice"


def test_datasets_and_describe_show_metadata_only(alice: Client) -> None:
    datasets = alice.datasets()
    assert {"residents", "adult", "medical_visits", "bus_trips"} <= set(datasets["name"])
    residents = datasets.set_index("name").loc["residents"]
    assert (residents["owner"], residents["classification"], residents["tables"]) == (
        "civil-affairs",
        "general",
        "residents",
    )
    schema = alice.describe("residents").set_index("column")
    assert list(schema.columns) == ["table", "role", "type", "lower", "upper", "keys", "description"]
    assert cell(schema, "person_id", "role") == "privacy_unit"
    assert (
        cell(schema, "income", "role"),
        cell(schema, "income", "lower"),
        cell(schema, "income", "upper"),
    ) == (
        "measure",
        0,
        500_000,
    )
    assert len(cell(schema, "district_code", "keys")) == 12
    assert cell(schema, "sex", "keys") == ["M", "F"]


def test_estimate_costs_nothing(alice: Client) -> None:
    before = cell(alice.budget().set_index("dataset"), "residents", "epsilon_spent")
    estimate = alice.estimate(GROUPED, dataset="residents", epsilon=0.3)
    assert (estimate.epsilon, estimate.delta, estimate.groups) == (0.3, 0.0, 12)
    assert list(estimate.accuracy["column"]) == ["residents", "mean_income"]
    assert cell(estimate.accuracy.set_index("column"), "residents", "ci95") > 0
    assert estimate.budget_after["epsilon_remaining"] == pytest.approx(10.0 - before - 0.3)
    assert cell(alice.budget().set_index("dataset"), "residents", "epsilon_spent") == before
    assert "Estimate: ε 0.3" in repr(estimate) and "<b>Estimate</b>" in estimate._repr_html_()


def test_preview_is_synthetic_and_free(alice: Client) -> None:
    before = cell(alice.budget().set_index("dataset"), "residents", "epsilon_spent")
    rows = alice.preview("residents", n=200)
    assert len(rows) == 200 and rows.attrs["synthetic"] is True and "SYNTHETIC" in rows.attrs["notice"]
    assert set(rows["district_code"]) <= set(
        cell(alice.describe("residents").set_index("column"), "district_code", "keys")
    )
    assert cell(alice.budget().set_index("dataset"), "residents", "epsilon_spent") == before


def test_accuracy_first_query_and_estimate_before_access(alice: Client) -> None:
    answer = alice.query("SELECT COUNT(*) AS n FROM residents", dataset="residents", ci=100)
    assert answer.attrs["ci_target"] == 100 and 0 < answer.attrs["epsilon_spent"] < 1
    assert answer.ci95("n")[0] <= 100
    planned = alice.estimate("SELECT COUNT(*) FROM bus_trips", dataset="bus_trips", epsilon=0.2)
    assert planned.access["granted"] is False and planned.policy_needed["max_epsilon_per_query"] == 0.2
    assert "no access yet" in repr(planned)


def test_query_returns_a_dpframe_with_cost_intervals_and_budget(alice: Client) -> None:
    before = cell(alice.budget().set_index("dataset"), "residents", "epsilon_remaining")
    answer = alice.query(GROUPED, dataset="residents", epsilon=0.25)
    assert isinstance(answer, DPFrame)
    assert list(answer.columns) == ["district_code", "residents", "mean_income"]
    assert len(answer) == 12
    attrs = answer.attrs
    assert attrs["query_id"].startswith("q_") and attrs["cached"] is False
    assert (attrs["epsilon_spent"], attrs["delta_spent"], attrs["dataset"]) == (0.25, 0.0, "residents")
    assert set(attrs["ci95"]) == {"residents", "mean_income"}
    assert len(attrs["ci95"]["residents"]) == 12 and all(w > 0 for w in attrs["ci95"]["residents"])
    assert attrs["budget"]["epsilon_remaining"] == pytest.approx(before - 0.25)
    html = answer._repr_html_() or ""
    assert "±" in html and attrs["query_id"] in html

    replay = alice.query(GROUPED, dataset="residents", epsilon=0.25)
    assert replay.attrs["cached"] is True and replay.attrs["epsilon_spent"] == 0.0
    pd.testing.assert_frame_equal(pd.DataFrame(replay), pd.DataFrame(answer))

    history = alice.history(dataset="residents")
    assert attrs["query_id"] in set(history["id"])
    assert history["created_at"].dt.tz is not None


def test_access_request_is_pending_and_listed(alice: Client, gateway: Gateway) -> None:
    request = alice.request_access("bus_trips", "commuting study", ["card_type", "fare"], 1.5)
    assert (request["status"], request["organisation"], request["dataset_owner"]) == (
        "pending",
        "acme",
        "transport-bureau",
    )
    listed = alice.access_requests(status="pending").set_index("id")
    assert listed.loc[request["id"], "purpose"] == "commuting study"
    owner = Client(gateway.url, gateway.tokens["transport"])
    assert request["id"] in set(owner.access_requests(status="pending")["id"])


def test_empty_listings_keep_their_columns(gateway: Gateway) -> None:
    owner = Client(gateway.url, gateway.tokens["environment"])
    history = owner.history()
    assert history.empty and {"id", "principal", "epsilon", "status", "created_at"} <= set(history.columns)
    usage = owner.usage(dataset="beijing_air")
    assert usage.empty and "epsilon_spent" in usage.columns


def test_owner_approves_and_the_analyst_can_query(gateway: Gateway) -> None:
    bob = Client(gateway.url, gateway.tokens["bob"])
    census = Client(gateway.url, gateway.tokens["census"])
    pending = census.access_requests(status="pending")
    request_id = pending[pending["dataset"] == "adult"]["id"].iloc[0]
    policy = census.approve(request_id, epsilon=2.0, max_epsilon_per_query=0.5, min_group_size=5)
    assert (policy["status"], policy["dataset"], policy["min_group_size"]) == ("active", "adult", 5)
    answer = bob.query("SELECT sex, COUNT(*) AS n FROM people GROUP BY sex", dataset="adult", epsilon=0.5)
    assert sorted(answer["sex"]) == ["Female", "Male"]
    usage = census.usage(dataset="adult").set_index("organisation")
    assert cell(usage, "acme", "queries_answered") >= 1


def test_operator_reads_audit_verifies_and_exports(gateway: Gateway) -> None:
    oscar = Client(gateway.url, gateway.tokens["oscar"])
    events = oscar.audit(type="user.added")
    assert {u for u in events["actor"]} == {"demo-setup", "test"}
    assert len(events) >= 8 and events["seq"].is_monotonic_increasing
    report = oscar.verify_audit()
    assert report["ok"] is True and report["events"] >= len(events)
    csv_text = oscar.export_audit("csv", type="user.added")
    assert csv_text.splitlines()[0].startswith("seq,") and len(csv_text.splitlines()) == len(events) + 1
