"""Filtering audit events and exporting them as JSON Lines or CSV (exactly as hashed)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select

from sandbox.audit.chain import canonical_json, format_time
from sandbox.audit.models import AuditEventView
from sandbox.store.models import AuditEvent

CSV_FIELDS = (
    "seq",
    "type",
    "time",
    "actor",
    "via",
    "organisation",
    "dataset",
    "payload",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class EventFilter:
    """Which events to list: every given field must match; time is ``since <= time < until``."""

    actor: str | None = None
    organisation: str | None = None
    dataset: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def select(self, limit: int | None = None, *, after: int | None = None) -> Select[AuditEvent]:
        """The SELECT of matching events in chain order, after seq ``after`` when given."""
        statement = select(AuditEvent).order_by(AuditEvent.seq)
        if after is not None:
            statement = statement.where(AuditEvent.seq > after)
        if self.actor is not None:
            statement = statement.where(AuditEvent.actor == self.actor)
        if self.organisation is not None:
            statement = statement.where(AuditEvent.organisation == self.organisation)
        if self.dataset is not None:
            statement = statement.where(AuditEvent.dataset == self.dataset)
        if self.type is not None:
            statement = statement.where(AuditEvent.type == self.type)
        if self.since is not None:
            statement = statement.where(AuditEvent.time >= format_time(self.since))
        if self.until is not None:
            statement = statement.where(AuditEvent.time < format_time(self.until))
        return statement if limit is None else statement.limit(limit)

    def select_latest(self, limit: int) -> Select[AuditEvent]:
        """The SELECT of the newest ``limit`` matching events (newest first)."""
        return self.select().order_by(None).order_by(AuditEvent.seq.desc()).limit(limit)


def to_jsonl(events: Iterable[AuditEventView]) -> str:
    """One canonical JSON object per line; each line re-hashes to its ``hash`` field."""
    return "".join(canonical_json(_hashed(event)).decode("utf-8") + "\n" for event in events)


def _hashed(event: AuditEventView) -> dict[str, object]:
    """The event as hashed: ``via`` only when it has one."""
    return event.model_dump(mode="json", exclude={"via"} if event.via is None else set())


def to_csv(events: Iterable[AuditEventView]) -> str:
    """CSV with a header; ``payload`` is its canonical JSON text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for event in events:
        row = event.model_dump(mode="json")
        row["payload"] = canonical_json(event.payload).decode("utf-8")
        writer.writerow(["" if row[name] is None else row[name] for name in CSV_FIELDS])
    return buffer.getvalue()


def from_jsonl(text: str) -> list[AuditEventView]:
    """Events from a JSON Lines export (for offline verification)."""
    return [AuditEventView.model_validate(json.loads(line)) for line in text.splitlines() if line.strip()]
