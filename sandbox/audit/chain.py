"""The append-only hash chain of audit events.

Each event's ``hash`` is the SHA-256 (hex) of the canonical JSON (sorted keys, no whitespace,
UTF-8) of ``{seq, type, time, actor, organisation, dataset, payload, prev_hash}``, plus ``via``
when the event has one (how the actor was verified, e.g. ``os:alice`` on the CLI); ``prev_hash`` is
the previous event's hash (64 zeros for the first event). Events are appended inside the write
transaction of the state change they record, so both commit or neither does.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from sandbox.audit.models import AuditEventView, EventType
from sandbox.principals import Principal
from sandbox.store.db import Runner
from sandbox.store.models import AuditEvent, AuditHead, Base

GENESIS_HASH = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_EVENTS = Base.metadata.tables[AuditEvent.__tablename__]
_HEAD = Base.metadata.tables[AuditHead.__tablename__]
# static statements: compiled once, cheap on the hot path
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)
_INSERT_EVENT = insert(_EVENTS)
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
    verified (a token's holder, the system).
    """
    head = session.execute(_READ_HEAD).one_or_none()
    if head is None:
        raise RuntimeError("the audit chain head row is missing: run `sandbox db upgrade`")
    content: dict[str, Any] = {
        "seq": head.seq + 1,
        "type": type.value,
        "time": format_time(now),
        "actor": actor.name if isinstance(actor, Principal) else actor,
        "organisation": organisation,
        "dataset": dataset,
        "payload": payload or {},
        "prev_hash": head.hash,
    }
    via = actor.via if isinstance(actor, Principal) else None
    if via is not None:
        content["via"] = via
    digest = _content_hash(content)
    row = {"via": None, **content, "payload": canonical_json(content["payload"]).decode(), "hash": digest}
    session.execute(_INSERT_EVENT, row)
    session.execute(_MOVE_HEAD, {"new_seq": content["seq"], "new_hash": digest})
    return AuditEventView(**content, hash=digest)
