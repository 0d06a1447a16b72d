"""Registration certificates (登记存证): proof that a dataset was registered with given fingerprints.

A certificate embeds the dataset's ``dataset.registered`` event exactly as hashed, the chain head
when it was issued and the latest signed checkpoint. Anyone holding the chain (the database or a
JSON Lines export) and the operator's public key can check it with ``verify_certificate``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sandbox.audit.chain import canonical_json, event_hash
from sandbox.audit.models import AuditEventView, CheckpointView, EventType, VerifyProblem, VerifyReport
from sandbox.audit.verify import check_checkpoints, walk
from sandbox.catalog.models import DatasetRecord

FORMAT = "sandbox.registration-certificate/1"
_COPIED = ("version", "registration_id", "owner", "classification", "metadata_sha256", "tables")


def metadata_digest(record: DatasetRecord) -> str:
    """SHA-256 of the canonical JSON of the dataset's metadata document."""
    return hashlib.sha256(canonical_json(record.metadata.model_dump(mode="json"))).hexdigest()


def registration_payload(record: DatasetRecord) -> dict[str, Any]:
    """The payload of a ``dataset.registered`` event: version, metadata digest and fingerprints."""
    return {
        "version": record.version,
        "registration_id": record.registration_id,
        "title": record.metadata.title,
        "owner": record.metadata.owner,
        "classification": record.metadata.classification.value,
        "metadata_sha256": metadata_digest(record),
        "registered_at": record.registered_at.isoformat(),
        "tables": [
            {"name": t.name, "source_sha256": t.source_sha256, "content_sha256": t.content_sha256}
            for t in record.tables
        ],
    }


def build(
    registration: AuditEventView,
    head_seq: int,
    head_hash: str,
    checkpoint: CheckpointView | None,
    issued_at: str,
) -> dict[str, Any]:
    """The certificate of one registration event."""
    payload = registration.payload
    certificate: dict[str, Any] = {"format": FORMAT, "dataset": registration.dataset}
    certificate.update({key: payload[key] for key in _COPIED})
    certificate.update(
        {
            "registration_event": registration.model_dump(mode="json"),
            "chain_head": {"seq": head_seq, "hash": head_hash},
            "checkpoint": None if checkpoint is None else checkpoint.model_dump(mode="json"),
            "issued_at": issued_at,
        }
    )
    return certificate


def _report(problem: VerifyProblem | None, events: int, seq: int, head: str, **extra: Any) -> VerifyReport:
    return VerifyReport(
        ok=problem is None, events=events, head_seq=seq, head_hash=head, first_error=problem, **extra
    )


def verify_certificate(
    certificate: dict[str, Any],
    chain: Iterable[AuditEventView | VerifyProblem],
    public_key: Ed25519PublicKey | None = None,
) -> VerifyReport:
    """Check a certificate: self-consistent, in the chain ``chain`` (in seq order), signed head."""
    try:
        if certificate.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} certificate")
        event = AuditEventView.model_validate(certificate["registration_event"])
        head_seq, head_hash = int(certificate["chain_head"]["seq"]), str(certificate["chain_head"]["hash"])
        checkpoint = (
            None
            if certificate.get("checkpoint") is None
            else CheckpointView.model_validate(certificate["checkpoint"])
        )
    except (KeyError, TypeError, ValueError) as error:
        return _report(VerifyProblem(seq=0, reason=f"malformed certificate: {error}"), 0, 0, "")
    own = _own_problem(certificate, event)
    if own is not None:
        return _report(own, 0, head_seq, head_hash)

    wanted = {event.seq, head_seq} | ({checkpoint.seq} if checkpoint else set())
    hashes: dict[int, str] = {}

    def tap() -> Iterator[AuditEventView | VerifyProblem]:
        for item in chain:
            if isinstance(item, AuditEventView) and item.seq in wanted:
                hashes[item.seq] = item.hash
            yield item

    walked = walk(tap())
    problem = walked.problem
    if problem is None and hashes.get(event.seq) != event.hash:
        problem = VerifyProblem(
            seq=event.seq, reason=f"the chain's event {event.seq} is not this certificate's registration"
        )
    if problem is None and hashes.get(head_seq) != head_hash:
        problem = VerifyProblem(
            seq=head_seq, reason=f"the chain's event {head_seq} is not the certified head"
        )
    checked = check_checkpoints([checkpoint] if checkpoint else [], hashes.get, public_key)
    problem = problem or checked.problem
    return _report(
        problem,
        walked.events,
        walked.last_seq,
        walked.last_hash,
        checkpoints=checked.found,
        checkpoints_verified=checked.verified,
        warnings=tuple(checked.warnings),
    )


def _own_problem(certificate: dict[str, Any], event: AuditEventView) -> VerifyProblem | None:
    if event.type != EventType.DATASET_REGISTERED.value or event.dataset != certificate.get("dataset"):
        return VerifyProblem(seq=event.seq, reason="the embedded event is not this dataset's registration")
    if event_hash(event) != event.hash:
        return VerifyProblem(seq=event.seq, reason="the embedded registration event does not match its hash")
    for key in _COPIED:
        if certificate.get(key) != event.payload.get(key):
            return VerifyProblem(
                seq=event.seq, reason=f"the certificate's field {key!r} differs from the registration event"
            )
    return None
