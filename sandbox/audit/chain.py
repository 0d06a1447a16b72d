"""The append-only hash chain of audit events.

Each event's ``hash`` is the SHA-256 (hex) of the canonical JSON (sorted keys, no whitespace,
UTF-8) of ``{seq, type, time, actor, organisation, dataset, payload, prev_hash}``, plus ``via``
when the event has one (how the actor was verified, e.g. ``os:alice`` on the CLI); ``prev_hash`` is
the previous event's hash (64 zeros for the first event).

Every event is written inside the write transaction of the state change it records, so both commit
or neither does. Governance changes ``append`` to the chain directly (their transaction holds the
chain head). Queries, the hot path, ``defer`` their events to ``audit_pending`` instead, so
concurrent queries never wait on one row; ``seal`` then links pending events into the chain in id
order, many per transaction (on PostgreSQL moments later from each replica's sealer thread, and
before any governance event; on SQLite, whose writers hold the whole database, at once). Until
sealed, an event is stored and counted but not yet linked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from sandbox.audit.models import AuditEventView, EventType
from sandbox.principals import Principal
from sandbox.store.db import Runner
from sandbox.store.models import AuditEvent, AuditHead, Base, PendingEvent

GENESIS_HASH = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_EVENTS = Base.metadata.tables[AuditEvent.__tablename__]
_HEAD = Base.metadata.tables[AuditHead.__tablename__]
_PENDING = Base.metadata.tables[PendingEvent.__tablename__]
SEAL_BATCH = 2000  # pending events linked per sealing transaction
# static statements: compiled once, cheap on the hot path
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)
_INSERT_EVENT = insert(_EVENTS)
_INSERT_PENDING = insert(_PENDING)
_READ_PENDING = select(_PENDING).order_by(_PENDING.c.id).limit(bindparam("b_limit"))
_DELETE_PENDING = delete(_PENDING).where(_PENDING.c.id.in_(bindparam("b_ids", expanding=True)))
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def format_time(moment: datetime) -> str:
    """Fixed-width UTC ISO-8601 text with microseconds (sorts like the time it names)."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The aware UTC datetime of a stored audit time."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def event_hash(event: AuditEventView) -> str:
    """The SHA-256 an event must carry, computed from its content and ``prev_hash``."""
    return _content_hash(event.model_dump(exclude={"hash"} if event.via is not None else {"hash", "via"}))


def _content_hash(content: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of an event without its ``hash``."""
    return hashlib.sha256(canonical_json(content)).hexdigest()


def view_of(row: AuditEvent) -> AuditEventView:
    """The view of a stored event; ``ValueError`` if its payload is not a JSON object."""
    payload = json.loads(row.payload)
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    return AuditEventView(
        seq=row.seq,
        type=row.type,
        time=row.time,
        actor=row.actor,
        via=row.via,
        organisation=row.organisation,
        dataset=row.dataset,
        payload=payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def append(
    session: Runner,
    type: EventType,
    *,
    actor: str | Principal,
    now: datetime,
    organisation: str | None = None,
    dataset: str | None = None,
    payload: dict[str, Any] | None = None,
) -> AuditEventView:
    """Append one event after the chain head; call inside a write transaction.

    ``actor`` is a verified principal (its ``via`` is recorded too) or the name of one the caller
    verified (a token's holder, the system). Events still pending are linked first, so whatever
    committed before this change (a query charged under a policy being revoked, say) comes before
    it in the chain.
    """
    while seal(session) == SEAL_BATCH:
        pass
    row = pending_row(type, actor=actor, now=now, organisation=organisation, dataset=dataset, payload=payload)
    return _link(session, [row])[0]


def pending_row(
    type: EventType,
    *,
    actor: str | Principal,
    now: datetime,
    organisation: str | None = None,
    dataset: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``audit_pending`` row of one event (written by ``defer``)."""
    return {
        "type": type.value,
        "time": format_time(now),
        "actor": actor.name if isinstance(actor, Principal) else actor,
        "via": actor.via if isinstance(actor, Principal) else None,
        "organisation": organisation,
        "dataset": dataset,
        "payload": canonical_json(payload or {}).decode(),
    }


def defer(session: Runner, rows: list[dict[str, Any]]) -> None:
    """Write events (``pending_row``s) to ``audit_pending``, taking no chain-head lock; ``seal``
    links them later. On SQLite, whose write transactions hold the whole database, they are linked
    at once instead."""
    if not rows:
        return
    if _dialect(session) == "sqlite":
        _link(session, rows)
    else:
        session.execute(_INSERT_PENDING, rows)


def _dialect(session: Runner) -> str:
    return session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name


def seal(session: Runner, limit: int = SEAL_BATCH) -> int:
    """Link up to ``limit`` pending events into the chain, oldest first; how many were linked.

    Call inside a transaction that holds the chain head (a governance write transaction on
    PostgreSQL, any write transaction on SQLite).
    """
    pending = session.execute(_READ_PENDING, {"b_limit": limit}).mappings().all()
    if not pending:
        return 0
    _link(session, pending)
    session.execute(_DELETE_PENDING, {"b_ids": [event["id"] for event in pending]})
    return len(pending)


def _link(session: Runner, events: Sequence[Mapping[Any, Any]]) -> list[AuditEventView]:
    """Append events (``pending_row``s, or rows of ``audit_pending``) after the chain head, in
    order; the events as linked."""
    head = session.execute(_READ_HEAD).one_or_none()
    if head is None:
        raise RuntimeError("the audit chain head row is missing: run `sandbox db upgrade`")
    seq, prev_hash = head.seq, head.hash
    rows, linked = [], []
    for event in events:
        seq += 1
        content = _linked(event, seq, prev_hash)
        prev_hash = _content_hash(content)
        rows.append({"via": None, **content, "payload": event["payload"], "hash": prev_hash})
        linked.append(AuditEventView(**content, hash=prev_hash))
    session.execute(_INSERT_EVENT, rows)
    session.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev_hash})
    return linked


def _linked(event: Mapping[Any, Any], seq: int, prev_hash: str) -> dict[str, Any]:
    """The hashed content of an event placed at ``seq`` after ``prev_hash``."""
    content: dict[str, Any] = {
        "seq": seq,
        "type": event["type"],
        "time": event["time"],
        "actor": event["actor"],
        "organisation": event["organisation"],
        "dataset": event["dataset"],
        "payload": json.loads(event["payload"]),
        "prev_hash": prev_hash,
    }
    if event["via"] is not None:
        content["via"] = event["via"]
    return content
