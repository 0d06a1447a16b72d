"""Access lifecycle on a real store: request, approve (narrowing, limits), reject, revoke, expiry,
classification rules, who may decide, and what each tenant sees."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from control_support import (
    ANALYST_A,
    ANALYST_A2,
    ANALYST_B,
    OPERATOR,
    OTHER_OWNER,
    OWNER,
    Clock,
    Granter,
    make_dataset,
    make_summary,
)

from sandbox.catalog.models import Classification, DatasetRecord
from sandbox.control import ControlPlane
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound, PolicyDenied
from sandbox.policies.models import AccessRequestView, PolicyStatus, RequestStatus
from sandbox.principals import Principal
from sandbox.query.summary import AggregateKind

DATASET = make_dataset()


def request(
    cp: ControlPlane,
    clock: Clock,
    analyst: Principal = ANALYST_A,
    dataset: DatasetRecord = DATASET,
    **changes: Any,
) -> AccessRequestView:
    arguments: dict[str, Any] = {
        "purpose": "commuting study",
        "columns": ["age", "district", "people.income"],
        "epsilon": 2.0,
        "delta": 1e-6,
        "valid_until": clock.now + timedelta(days=30),
    }
    arguments.update(changes)
    return cp.request_access(analyst, dataset, **arguments)


def events(cp: ControlPlane, type: str) -> list[dict[str, Any]]:
    return [e.payload for e in cp.audit_events(OPERATOR, type=type)]


def test_request_is_pending_with_canonical_columns_and_recorded(cp: ControlPlane, clock: Clock) -> None:
    made = request(cp, clock, columns=["AGE", "District", "PEOPLE.income", "age"])
    assert made.status == RequestStatus.PENDING
    assert made.columns == ("age", "district", "people.income")
    assert (made.organisation, made.dataset_owner, made.requested_by) == ("acme", "city_stats", "alice")
    assert made.epsilon == 2.0 and made.delta == 1e-6
    [payload] = events(cp, "access.requested")
    assert payload["request_id"] == made.id and payload["epsilon"] == "2"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"purpose": "   "}, "request.purpose_required"),
        ({"columns": ["age", "shoe_size"]}, "request.unknown_column"),
        ({"columns": []}, "request.no_columns"),
        ({"epsilon": 0.0}, "request.invalid_epsilon"),
        ({"epsilon": float("nan")}, "request.invalid_epsilon"),
        ({"epsilon": 2e6}, "request.invalid_epsilon"),
        ({"delta": 1.0}, "request.invalid_delta"),
        ({"delta": -1e-9}, "request.invalid_delta"),
    ],
)
def test_invalid_requests_are_refused(
    cp: ControlPlane, clock: Clock, changes: dict[str, Any], code: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        request(cp, clock, **changes)
    assert raised.value.code == code
    assert cp.list_requests(OPERATOR) == []


def test_validity_must_be_in_the_future(cp: ControlPlane, clock: Clock) -> None:
    with pytest.raises(InvalidRequest) as raised:
        request(cp, clock, valid_until=clock.now - timedelta(days=1))
    assert raised.value.code == "request.invalid_validity"


def test_only_analysts_request(cp: ControlPlane, clock: Clock) -> None:
    with pytest.raises(Forbidden) as raised:
        request(cp, clock, analyst=OWNER)
    assert raised.value.rule == "policy.not_analyst"


def test_core_datasets_cannot_be_requested(cp: ControlPlane, clock: Clock) -> None:
    core = make_dataset("census_core", classification=Classification.CORE)
    with pytest.raises(PolicyDenied) as raised:
        request(cp, clock, dataset=core)
    assert raised.value.rule == "policy.core_dataset"


def test_approve_narrows_and_sets_limits(cp: ControlPlane, clock: Clock) -> None:
    made = request(cp, clock)
    until = clock.now + timedelta(days=10)
    approved = cp.approve(
        OWNER,
        made.id,
        DATASET,
        columns=["age", "district"],
        epsilon=1.5,
        delta=5e-7,
        valid_until=until,
        max_epsilon_per_query=0.25,
        max_delta_per_query=1e-7,
        min_group_size=7,
        aggregates=[AggregateKind.COUNT, AggregateKind.AVG],
    )
    assert approved.status == PolicyStatus.ACTIVE
    assert approved.columns == ("age", "district")
    assert (approved.epsilon, approved.delta, approved.valid_until) == (1.5, 5e-7, until)
    assert (approved.max_epsilon_per_query, approved.max_delta_per_query, approved.min_group_size) == (
        0.25,
        1e-7,
        7,
    )
    assert approved.aggregates == (AggregateKind.AVG, AggregateKind.COUNT)
    decided = cp.get_request(ANALYST_A, made.id)
    assert decided.status == RequestStatus.APPROVED and decided.policy_id == approved.id
    assert decided.decided_by == "otto"
    [payload] = events(cp, "access.approved")
    assert payload["policy_id"] == approved.id and payload["max_epsilon_per_query"] == "0.25"


def test_approve_defaults_to_the_request_and_all_aggregates(cp: ControlPlane, clock: Clock) -> None:
    made = request(cp, clock)
    approved = cp.approve(OWNER, made.id, DATASET, max_epsilon_per_query=0.5)
    assert approved.columns == made.columns and approved.epsilon == 2.0
    assert set(approved.aggregates) == set(AggregateKind)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"columns": ["age", "ssn"]}, "approval.widens_request"),
        ({"epsilon": 2.5}, "approval.widens_request"),
        ({"delta": 1e-5}, "approval.widens_request"),
        ({"valid_until_days": 60}, "approval.widens_request"),
        ({"max_epsilon_per_query": 3.0}, "approval.invalid_epsilon_cap"),
        ({"max_epsilon_per_query": 0.0}, "approval.invalid_epsilon_cap"),
        ({"max_delta_per_query": 1e-5}, "approval.invalid_delta_cap"),
        ({"min_group_size": -1}, "approval.invalid_min_group_size"),
        ({"aggregates": []}, "approval.no_aggregates"),
    ],
)
def test_approval_may_only_narrow(cp: ControlPlane, clock: Clock, changes: dict[str, Any], code: str) -> None:
    made = request(cp, clock)
    arguments: dict[str, Any] = {"max_epsilon_per_query": 0.5}
    if "valid_until_days" in changes:
        changes["valid_until"] = clock.now + timedelta(days=changes.pop("valid_until_days"))
    arguments.update(changes)
    with pytest.raises(InvalidRequest) as raised:
        cp.approve(OWNER, made.id, DATASET, **arguments)
    assert raised.value.code == code
    assert cp.get_request(OWNER, made.id).status == RequestStatus.PENDING


def test_service_ceiling_bounds_the_per_query_cap(cp: ControlPlane, clock: Clock) -> None:
    made = request(cp, clock, epsilon=50.0)
    with pytest.raises(InvalidRequest) as raised:
        cp.approve(OWNER, made.id, DATASET, max_epsilon_per_query=cp.settings.max_epsilon_per_query + 1)
    assert raised.value.code == "approval.invalid_epsilon_cap"


def test_important_dataset_limits_are_checked_at_approval(cp: ControlPlane, clock: Clock) -> None:
    important = make_dataset("tax_records", classification=Classification.IMPORTANT)
    limits = cp.settings
    made = request(cp, clock, dataset=important)
    with pytest.raises(InvalidRequest) as raised:
        cp.approve(
            OWNER,
            made.id,
            important,
            max_epsilon_per_query=limits.important_max_epsilon_per_query,
            min_group_size=limits.important_min_group_size - 1,
        )
    assert raised.value.code == "policy.important_min_group_size"
    assert str(limits.important_min_group_size) in raised.value.message
    with pytest.raises(InvalidRequest) as raised:
        cp.approve(
            OWNER,
            made.id,
            important,
            max_epsilon_per_query=limits.important_max_epsilon_per_query * 1.5,
            min_group_size=limits.important_min_group_size,
        )
    assert raised.value.code == "policy.important_epsilon_cap"
    assert raised.value.http_status == 422
    approved = cp.approve(
        OWNER,
        made.id,
        important,
        max_epsilon_per_query=limits.important_max_epsilon_per_query,
        min_group_size=limits.important_min_group_size,
    )
    assert approved.status == PolicyStatus.ACTIVE


def test_only_the_datasets_owner_decides(cp: ControlPlane, clock: Clock) -> None:
    made = request(cp, clock)
    for intruder in (OTHER_OWNER, ANALYST_A, OPERATOR):
        with pytest.raises(Forbidden) as raised:
            cp.approve(intruder, made.id, DATASET, max_epsilon_per_query=0.5)
        assert raised.value.code == "policy.not_owner"
        with pytest.raises(Forbidden):
            cp.reject(intruder, made.id, DATASET, reason="no")
    # claiming the request belongs to the other owner's own dataset does not help either
    theirs = make_dataset("clinics", owner="health_bureau")
    with pytest.raises(NotFound):
        cp.approve(OTHER_OWNER, made.id, theirs, max_epsilon_per_query=0.5)
    with pytest.raises(NotFound):
        cp.get_request(OTHER_OWNER, made.id)
    assert cp.get_request(OWNER, made.id).status == RequestStatus.PENDING


def test_request_dataset_must_match(cp: ControlPlane, clock: Clock) -> None:
    made = request(cp, clock)
    with pytest.raises(InvalidRequest) as raised:
        cp.approve(OWNER, made.id, make_dataset("another"), max_epsilon_per_query=0.5)
    assert raised.value.code == "request.dataset_mismatch"


def test_reject_needs_a_reason_and_is_final(cp: ControlPlane, clock: Clock) -> None:
    made = request(cp, clock)
    with pytest.raises(InvalidRequest):
        cp.reject(OWNER, made.id, DATASET, reason=" ")
    rejected = cp.reject(OWNER, made.id, DATASET, reason="purpose too vague")
    assert rejected.status == RequestStatus.REJECTED and rejected.reason == "purpose too vague"
    with pytest.raises(Conflict) as raised:
        cp.approve(OWNER, made.id, DATASET, max_epsilon_per_query=0.5)
    assert raised.value.code == "request.already_decided"
    assert events(cp, "access.rejected") == [{"request_id": made.id, "reason": "purpose too vague"}]


def test_one_active_policy_per_organisation_and_dataset(
    cp: ControlPlane, clock: Clock, grant: Granter
) -> None:
    grant(ANALYST_A, DATASET)
    second = request(cp, clock, analyst=ANALYST_A2)
    with pytest.raises(Conflict) as raised:
        cp.approve(OWNER, second.id, DATASET, max_epsilon_per_query=0.5)
    assert raised.value.code == "policy.already_active"
    # another organisation is independent
    assert grant(ANALYST_B, DATASET).organisation == "globex"


def test_revoke_stops_queries_at_once(cp: ControlPlane, clock: Clock, grant: Granter) -> None:
    granted = grant(ANALYST_A, DATASET)
    with pytest.raises(Forbidden):
        cp.revoke_policy(OTHER_OWNER, granted.id, DATASET, reason="x")
    revoked = cp.revoke_policy(OWNER, granted.id, DATASET, reason="contract ended")
    assert revoked.status == PolicyStatus.REVOKED and revoked.ended_by == "otto"
    with pytest.raises(PolicyDenied) as raised:
        cp.active_policy(ANALYST_A, DATASET)
    assert raised.value.rule == "policy.revoked"
    with pytest.raises(PolicyDenied) as raised:
        cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET), sql="SELECT COUNT(*) FROM people")
    assert raised.value.rule == "policy.revoked"
    with pytest.raises(Conflict):
        cp.revoke_policy(OWNER, granted.id, DATASET, reason="again")
    # after revocation a new request can be approved
    assert grant(ANALYST_A, DATASET).status == PolicyStatus.ACTIVE


def test_expiry_is_noticed_once_and_swept(cp: ControlPlane, clock: Clock, grant: Granter) -> None:
    first = grant(ANALYST_A, DATASET, days=1)
    grant(ANALYST_B, DATASET, days=1)
    other = grant(ANALYST_A, make_dataset("transit"), days=5)
    clock.advance(days=2)
    with pytest.raises(PolicyDenied) as raised:
        cp.active_policy(ANALYST_A, DATASET)
    assert raised.value.rule == "policy.expired"
    with pytest.raises(PolicyDenied) as raised:
        cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET), sql="SELECT 1")
    assert raised.value.rule == "policy.expired"
    expired = events(cp, "policy.expired")
    assert [e["policy_id"] for e in expired] == [first.id]
    assert cp.expire_policies() == 1  # globex's, not yet noticed
    assert cp.expire_policies() == 0
    assert len(events(cp, "policy.expired")) == 2
    assert cp.get_policy(OPERATOR, other.id).status == PolicyStatus.ACTIVE
    assert cp.expire_policies(clock.now + timedelta(days=10)) == 1


def test_not_yet_valid(cp: ControlPlane, clock: Clock) -> None:
    made = request(cp, clock, valid_from=clock.now + timedelta(days=1))
    cp.approve(OWNER, made.id, DATASET, max_epsilon_per_query=0.5)
    with pytest.raises(PolicyDenied) as raised:
        cp.active_policy(ANALYST_A, DATASET)
    assert raised.value.rule == "policy.not_yet_valid"
    clock.advance(days=1)
    assert cp.active_policy(ANALYST_A, DATASET).status == PolicyStatus.ACTIVE


def test_active_policy_rules(cp: ControlPlane, clock: Clock, grant: Granter) -> None:
    with pytest.raises(PolicyDenied) as raised:
        cp.active_policy(ANALYST_A, DATASET)
    assert raised.value.rule == "policy.no_active_policy"
    with pytest.raises(PolicyDenied) as raised:
        cp.active_policy(OWNER, DATASET)
    assert raised.value.rule == "policy.not_analyst"
    with pytest.raises(PolicyDenied) as raised:
        cp.active_policy(ANALYST_A, make_dataset("vault", classification=Classification.CORE))
    assert raised.value.rule == "policy.core_dataset"
    granted = grant(ANALYST_A, DATASET)
    assert cp.active_policy(ANALYST_A2, DATASET).id == granted.id  # colleagues share it


def test_tenants_see_only_their_own(cp: ControlPlane, clock: Clock, grant: Granter) -> None:
    clinics = make_dataset("clinics", owner="health_bureau")
    a = grant(ANALYST_A, DATASET)
    b = grant(ANALYST_B, clinics, owner=OTHER_OWNER)
    pending = request(cp, clock, analyst=ANALYST_B, dataset=DATASET)
    assert {p.id for p in cp.list_policies(ANALYST_A)} == {a.id}
    assert {p.id for p in cp.list_policies(ANALYST_A2)} == {a.id}
    assert {p.id for p in cp.list_policies(ANALYST_B)} == {b.id}
    assert {p.id for p in cp.list_policies(OWNER)} == {a.id}
    assert {p.id for p in cp.list_policies(OTHER_OWNER)} == {b.id}
    assert {p.id for p in cp.list_policies(OPERATOR)} == {a.id, b.id}
    with pytest.raises(NotFound):
        cp.get_policy(ANALYST_B, a.id)
    with pytest.raises(NotFound):
        cp.get_policy(OTHER_OWNER, a.id)
    assert {r.organisation for r in cp.list_requests(ANALYST_A)} == {"acme"}
    assert {r.id for r in cp.list_requests(OWNER, status="pending")} == {pending.id}
    assert len(cp.list_requests(OPERATOR)) == 3
    with pytest.raises(NotFound):
        cp.get_request(ANALYST_A, pending.id)
    assert {b.policy_id for b in cp.budget(ANALYST_A)} == {a.id}
    assert {b.policy_id for b in cp.budget(ANALYST_B)} == {b.id}
    assert {b.policy_id for b in cp.budget(OWNER)} == {a.id}
