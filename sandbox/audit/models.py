"""Audit event types and the frozen views of events, verification reports and checkpoints."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventType(StrEnum):
    """Every audit event type (stable strings)."""

    USER_ADDED = "user.added"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_ROLES_CHANGED = "user.roles_changed"
    TOKEN_ISSUED = "token.issued"
    TOKEN_REVOKED = "token.revoked"
    DATASET_REGISTERED = "dataset.registered"
    ACCESS_REQUESTED = "access.requested"
    ACCESS_APPROVED = "access.approved"
    ACCESS_REJECTED = "access.rejected"
    ACCESS_WITHDRAWN = "access.withdrawn"
    ACCESS_EXPIRED = "access.expired"
    POLICY_AMENDED = "policy.amended"
    POLICY_REVOKED = "policy.revoked"
    POLICY_EXPIRED = "policy.expired"
    BUDGET_CAP_SET = "budget.cap_set"
    QUERY_RESERVED = "query.reserved"
    QUERY_ANSWERED = "query.answered"
    QUERY_REPLAYED = "query.replayed"
    QUERY_REJECTED = "query.rejected"
    QUERY_FAILED = "query.failed"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    AUTH_FAILED = "auth.failed"  # a token or a CLI identity that did not authenticate
    AUTH_REFUSED = "auth.refused"  # an authenticated actor refused an action its roles do not allow


class AuditEventView(BaseModel):
    """One event of the chain exactly as hashed (``time`` is the stored UTC ISO-8601 text)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    type: str
    time: str
    actor: str
    via: str | None = None
    organisation: str | None
    dataset: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyProblem(BaseModel):
    """The first broken or missing link found: the event ``seq`` and what is wrong."""

    model_config = ConfigDict(frozen=True)

    seq: int
    reason: str


class StateDivergence(BaseModel):
    """A stored value the audit chain does not prove: which row, which field, chain vs stored."""

    model_config = ConfigDict(frozen=True)

    table: str
    row: str
    field: str
    chain: Any = Field(description="The value replaying the chain gives (null: no such row).")
    stored: Any = Field(description="The value in the state store (null: no such row).")


class VerifyReport(BaseModel):
    """Result of walking the chain and checking every checkpoint."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    events: int = Field(description="Events walked.")
    head_seq: int = Field(description="Sequence number of the chain head.")
    head_hash: str
    first_error: VerifyProblem | None = None
    checkpoints: int = Field(
        default=0, description="Checkpoints found (in the chain and the checkpoint log)."
    )
    checkpoints_verified: int = Field(default=0, description="Checkpoints whose signature and head matched.")
    state_checked: bool = Field(
        default=False, description="Whether the stored state was compared with the chain's replay."
    )
    divergences: tuple[StateDivergence, ...] = Field(
        default=(), description="Every stored value the chain does not prove (state tampering)."
    )
    warnings: tuple[str, ...] = ()


class CheckpointView(BaseModel):
    """A signed statement "the chain head was (seq, hash) at time", made with the operator's key."""

    model_config = ConfigDict(frozen=True)

    seq: int
    hash: str
    time: str = Field(description="UTC ISO-8601 text as signed.")
    key_id: str
    signature: str = Field(description="Ed25519 signature (hex) of the canonical JSON of the head.")
    event_seq: int | None = Field(default=None, description="Seq of the audit.checkpoint event recording it.")
