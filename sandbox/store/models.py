"""SQLAlchemy 2 models of the state store.

Amounts are exact integers (epsilon in 1e-9, delta in 1e-15: see ``sandbox.budget``); times are
timezone-aware UTC. The audit chain's event time is stored as the exact ISO text that was hashed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC datetimes."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable migration names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class User(Base):
    """A registered user: roles (comma-separated, sorted) and organisation."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    roles: Mapped[str] = mapped_column(String(64))
    organisation: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class ApiToken(Base):
    """An API token, stored as the SHA-256 of the secret only."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    note: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Dataset(Base):
    """A dataset as the control plane knows it, and the lifetime ledger its queries are charged to."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    classification: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(64))
    registration_seq: Mapped[int | None] = mapped_column(BigInteger)
    ledger_id: Mapped[str] = mapped_column(String(80), index=True)
    new_version_budget: Mapped[str] = mapped_column(String(8), server_default="carry")


_AMOUNTS_NONNEGATIVE = "epsilon_spent >= 0 AND delta_spent >= 0"


class Ledger(Base):
    """A lifetime ledger: the privacy loss of all organisations on one body of data, and its caps.

    Datasets registered from identical content share one ledger, and so does a new version of a
    dataset whose owner chose to carry its budget over. ``epsilon_cap``/``delta_cap`` bound all
    organisations together; ``organisation_*_cap`` is the default lifetime cap of each one.
    """

    __tablename__ = "ledgers"
    __table_args__ = (CheckConstraint(_AMOUNTS_NONNEGATIVE, name="amounts_nonnegative"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    epsilon_cap: Mapped[int | None] = mapped_column(BigInteger)
    delta_cap: Mapped[int | None] = mapped_column(BigInteger)
    organisation_epsilon_cap: Mapped[int | None] = mapped_column(BigInteger)
    organisation_delta_cap: Mapped[int | None] = mapped_column(BigInteger)
    epsilon_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_spent: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerAccount(Base):
    """One organisation's lifetime loss on a ledger, across all its policies past and present."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (CheckConstraint(_AMOUNTS_NONNEGATIVE, name="amounts_nonnegative"),)

    ledger_id: Mapped[str] = mapped_column(ForeignKey("ledgers.id"), primary_key=True)
    organisation: Mapped[str] = mapped_column(String(128), primary_key=True)
    epsilon_cap: Mapped[int | None] = mapped_column(BigInteger)
    delta_cap: Mapped[int | None] = mapped_column(BigInteger)
    epsilon_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_spent: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerContent(Base):
    """Which ledger a body of content is charged to (SHA-256 over its tables' content digests)."""

    __tablename__ = "ledger_contents"

    content_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    ledger_id: Mapped[str] = mapped_column(ForeignKey("ledgers.id"))


class AccessRequest(Base):
    """An organisation's access request and its decision."""

    __tablename__ = "access_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organisation: Mapped[str] = mapped_column(String(128), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    dataset_owner: Mapped[str] = mapped_column(String(128), index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(Text)
    columns: Mapped[list[str]]
    epsilon: Mapped[int] = mapped_column(BigInteger)
    delta: Mapped[int] = mapped_column(BigInteger)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)


class Policy(Base):
    """An approved policy with its budget counters; one active per (organisation, dataset).

    ``*_spent`` counts every charge made under the policy, queries still running included (a
    charge is made when the query is admitted, before any data is read, and never refunded).
    ``revision`` goes up with every change the ORM makes to the policy (its terms, its status):
    a query admitted without locking the row charges it only if the revision it decided on is
    still the stored one.
    """

    __tablename__ = "policies"
    __table_args__ = (
        CheckConstraint("epsilon_spent <= epsilon_granted", name="epsilon_within_grant"),
        CheckConstraint("delta_spent <= delta_granted", name="delta_within_grant"),
        CheckConstraint(_AMOUNTS_NONNEGATIVE, name="amounts_nonnegative"),
        Index(
            "uq_policies_one_active",
            "organisation",
            "dataset",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("access_requests.id"), unique=True)
    organisation: Mapped[str] = mapped_column(String(128), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    dataset_owner: Mapped[str] = mapped_column(String(128), index=True)
    columns: Mapped[list[str]]
    aggregates: Mapped[list[str]]
    epsilon_granted: Mapped[int] = mapped_column(BigInteger)
    delta_granted: Mapped[int] = mapped_column(BigInteger)
    epsilon_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    max_epsilon_per_query: Mapped[int] = mapped_column(BigInteger)
    max_delta_per_query: Mapped[int] = mapped_column(BigInteger)
    min_group_size: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    approved_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[datetime]
    ended_by: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, server_default="0")

    __mapper_args__ = {"version_id_col": revision}  # noqa: RUF012


class Query(Base):
    """One query as recorded: cost, outcome, result shape; never result values."""

    __tablename__ = "queries"
    __table_args__ = (
        Index("ix_queries_organisation_created", "organisation", "created_at"),
        Index("ix_queries_dataset_created", "dataset", "created_at"),
        Index("ix_queries_owner_created", "dataset_owner", "created_at"),
        Index(  # the few queries still running: budget views and the abandoned-query sweep
            "ix_queries_running",
            "policy_id",
            sqlite_where=text("status = 'reserved'"),
            postgresql_where=text("status = 'reserved'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    principal: Mapped[str] = mapped_column(String(64))
    organisation: Mapped[str | None] = mapped_column(String(128))
    dataset: Mapped[str] = mapped_column(String(64))
    dataset_owner: Mapped[str | None] = mapped_column(String(128))
    dataset_version: Mapped[str | None] = mapped_column(String(64))
    ledger_id: Mapped[str | None] = mapped_column(String(80))
    policy_id: Mapped[str | None] = mapped_column(ForeignKey("policies.id"))
    sql: Mapped[str] = mapped_column(Text)
    normalized_sql: Mapped[str | None] = mapped_column(Text)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    epsilon: Mapped[int] = mapped_column(BigInteger, default=0)
    delta: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))
    replay_of: Mapped[str | None] = mapped_column(String(40))
    rule: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64))
    result_shape: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    holder: Mapped[str | None] = mapped_column(String(64))  # the replica running it (see Replica)


class ReplayEntry(Base):
    """The released noisy answer of a query, replayed for identical queries of the same organisation."""

    __tablename__ = "replay_cache"

    organisation: Mapped[str] = mapped_column(String(128), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    query_id: Mapped[str] = mapped_column(ForeignKey("queries.id"))
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class AuditEvent(Base):
    """One event of the hash chain (append-only)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_type_dataset", "type", "dataset"),
        Index("ix_audit_events_time", "time"),
        Index("ix_audit_events_organisation", "organisation"),
        Index("ix_audit_events_actor", "actor"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(32))
    time: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    via: Mapped[str | None] = mapped_column(String(80))
    organisation: Mapped[str | None] = mapped_column(String(128))
    dataset: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class PendingEvent(Base):
    """An event committed with its state change but not yet linked into the chain.

    The hot paths (queries) append here, so concurrent transactions never wait on the chain head;
    the sealer moves pending events into ``audit_events`` in id order, in batches, within moments.
    """

    __tablename__ = "audit_pending"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    time: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    via: Mapped[str | None] = mapped_column(String(80))
    organisation: Mapped[str | None] = mapped_column(String(128))
    dataset: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)


class Replica(Base):
    """A running control plane (one per gateway process) and when it last said it was alive.

    A query reserved by a replica whose heartbeat stopped is abandoned; one whose replica is alive
    is still running, however long it takes.
    """

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    last_seen: Mapped[datetime]


class AuditHead(Base):
    """The single chain-head row (id 1): last seq and hash. The sealer and governance writers lock it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
