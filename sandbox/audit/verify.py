"""Walk the audit chain and report the first broken or missing link."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.audit.chain import GENESIS_HASH, event_hash, view_of
from sandbox.audit.checkpoints import from_event, signature_valid
from sandbox.audit.models import AuditEventView, CheckpointView, EventType, VerifyProblem, VerifyReport
from sandbox.store.models import AuditEvent, AuditHead, PendingEvent

BATCH = 2000


@dataclass
class ChainWalk:
    """What a walk saw: events, the last link, the first problem and the checkpoint events met."""

    events: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    problem: VerifyProblem | None = None
    checkpoint_events: list[AuditEventView] = field(default_factory=list)


def walk(events: Iterable[AuditEventView | VerifyProblem]) -> ChainWalk:
    """Check seq continuity, prev links and hashes of events given in seq order.

    A ``VerifyProblem`` in the stream (an unreadable row) stops the walk as the problem found.
    """
    result = ChainWalk()
    for event in events:
        if isinstance(event, VerifyProblem):
            result.problem = event
            return result
        expected = result.last_seq + 1
        if event.seq != expected:
            reason = (
                f"event {expected} is missing (the next stored event is {event.seq})"
                if event.seq > expected
                else f"event {event.seq} appears out of order after event {result.last_seq}"
            )
            result.problem = VerifyProblem(seq=expected, reason=reason)
            return result
        if event_hash(event) != event.hash:
            result.problem = VerifyProblem(
                seq=event.seq, reason=f"event {event.seq} was altered: its content does not match its hash"
            )
            return result
        if event.prev_hash != result.last_hash:
            result.problem = VerifyProblem(
                seq=event.seq,
                reason=(
                    f"event {event.seq} does not link to event {result.last_seq}: prev_hash differs "
                    f"(event {result.last_seq} was replaced, or events were reordered)"
                ),
            )
            return result
        if event.type == EventType.AUDIT_CHECKPOINT.value:
            result.checkpoint_events.append(event)
        result.events += 1
        result.last_seq, result.last_hash = event.seq, event.hash
    return result


def stored_events(session: Session) -> Iterator[AuditEventView | VerifyProblem]:
    """The stored events in seq order, in batches; an unreadable row yields a ``VerifyProblem``."""
    after = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            try:
                yield view_of(row)
            except ValueError:
                yield VerifyProblem(seq=row.seq, reason=f"event {row.seq} was altered: unreadable payload")
                return
        after = rows[-1].seq


def pending_events(session: Session) -> Iterator[AuditEventView]:
    """Events committed but not yet linked into the chain, in the order they were written (as
    views with ``seq`` 0 and no hash): what the stored state includes beyond the chain."""
    for row in session.scalars(select(PendingEvent).order_by(PendingEvent.id)):
        payload = json.loads(row.payload)
        yield AuditEventView(
            seq=0,
            type=row.type,
            time=row.time,
            actor=row.actor,
            via=row.via,
            organisation=row.organisation,
            dataset=row.dataset,
            payload=payload if isinstance(payload, dict) else {},
            prev_hash="",
            hash="",
        )


def walk_store(
    session: Session, events: Iterable[AuditEventView | VerifyProblem] | None = None
) -> tuple[ChainWalk, AuditHead]:
    """Walk the stored chain and check it ends at the recorded chain head (use one snapshot).

    ``events`` is ``stored_events(session)``, possibly tapped by the caller (one pass serves both).
    """
    result = walk(events if events is not None else stored_events(session))
    head = session.get(AuditHead, 1)
    if head is None:
        raise RuntimeError("the audit chain head row is missing")
    if result.problem is None:
        if head.seq > result.last_seq:
            result.problem = VerifyProblem(
                seq=result.last_seq + 1,
                reason=(
                    f"event {result.last_seq + 1} is missing: the chain head records seq {head.seq} "
                    f"but the last stored event is {result.last_seq}"
                ),
            )
        elif head.seq < result.last_seq:
            result.problem = VerifyProblem(
                seq=head.seq + 1,
                reason=f"event {head.seq + 1} lies beyond the chain head: appended outside the control plane",
            )
        elif head.hash != result.last_hash:
            result.problem = VerifyProblem(
                seq=head.seq, reason=f"the chain head's hash does not match event {head.seq}"
            )
    return result, head


@dataclass
class CheckpointCheck:
    """Outcome of checking checkpoints against a walked chain."""

    found: int = 0
    verified: int = 0
    problem: VerifyProblem | None = None
    warnings: list[str] = field(default_factory=list)


def check_checkpoints(
    checkpoints: Iterable[CheckpointView],
    hash_at: Callable[[int], str | None],
    public_key: Ed25519PublicKey | None,
) -> CheckpointCheck:
    """Check every distinct checkpoint's signature and that the chain still has its hash at its seq.

    ``hash_at(seq)`` gives the stored hash of event ``seq`` (``None`` if there is none).
    """
    result = CheckpointCheck()
    distinct = {(c.seq, c.hash, c.signature): c for c in checkpoints}
    for checkpoint in sorted(distinct.values(), key=lambda c: c.seq):
        result.found += 1
        if public_key is not None and not signature_valid(checkpoint, public_key):
            result.problem = result.problem or VerifyProblem(
                seq=checkpoint.seq,
                reason=(
                    f"the checkpoint of seq {checkpoint.seq} is not validly signed by the operator key "
                    f"(key {checkpoint.key_id}): forged or altered"
                ),
            )
            continue
        stored = hash_at(checkpoint.seq)
        if stored is None:
            result.problem = result.problem or VerifyProblem(
                seq=checkpoint.seq,
                reason=f"event {checkpoint.seq}, signed in a checkpoint, is no longer in the chain",
            )
            continue
        if stored != checkpoint.hash:
            result.problem = result.problem or VerifyProblem(
                seq=checkpoint.seq,
                reason=(
                    f"event {checkpoint.seq} differs from the signed checkpoint "
                    f"of {checkpoint.time}: history was rewritten"
                ),
            )
            continue
        if public_key is not None:
            result.verified += 1
    if result.found and public_key is None:
        result.warnings.append(
            f"{result.found} checkpoint(s) found but no public key given: signatures not checked"
        )
    return result


def verify_export(
    events: list[AuditEventView],
    public_key: Ed25519PublicKey | None,
    extra_checkpoints: Iterable[CheckpointView] = (),
) -> VerifyReport:
    """Verify an exported chain offline: links and hashes, and every checkpoint in it or given."""
    walked = walk(events)
    hashes = {e.seq: e.hash for e in events}
    found = [from_event(e) for e in walked.checkpoint_events] + list(extra_checkpoints)
    checked = check_checkpoints(found, hashes.get, public_key)
    problem = walked.problem or checked.problem
    return VerifyReport(
        ok=problem is None,
        events=walked.events,
        head_seq=walked.last_seq,
        head_hash=walked.last_hash,
        first_error=problem,
        checkpoints=checked.found,
        checkpoints_verified=checked.verified,
        warnings=tuple(checked.warnings),
    )
