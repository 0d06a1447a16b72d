"""Use case: datasets and their budgets. One registration flow (API, CLI, demo and bench), the
registration certificate, the lifetime ledger a dataset is charged to and the owner's caps.

Which ledger a registration is charged to: content already registered (under any name) keeps
its ledger, so re-registering the same data never mints budget; a new version of a dataset
carries its ledger over unless the owner chose ``renew`` at registration; anything else gets a
fresh ledger. The choice and the ledger are recorded in the ``dataset.registered`` event.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.audit import certificate as certificates
from sandbox.audit import chain, checkpoints
from sandbox.audit.models import CheckpointView, EventType
from sandbox.budget import (
    MAX_EPSILON,
    NewVersionBudget,
    delta_units,
    epsilon_units,
    optional_delta_text,
    optional_epsilon_text,
)
from sandbox.catalog.models import DatasetRecord
from sandbox.catalog.registry import Catalog
from sandbox.catalog.validate import load_metadata
from sandbox.control.base import Core, account_row, dataset_row, ledger_row
from sandbox.errors import Conflict, Forbidden, InternalError, InvalidRequest, MetadataInvalid, NotFound
from sandbox.policies import checks
from sandbox.principals import Principal, Role
from sandbox.store.models import AuditEvent, AuditHead, Dataset, Ledger, LedgerAccount, LedgerContent


def content_digest(record: DatasetRecord) -> str:
    """SHA-256 over the sorted content digests of the dataset's tables (names and metadata aside)."""
    digests = sorted(t.content_sha256 for t in record.tables)
    return hashlib.sha256(",".join(digests).encode()).hexdigest()


def _cap(value: float | None, *, delta: bool) -> int | None:
    if value is None:
        return None
    if delta:
        if not math.isfinite(value) or value < 0 or value >= 1:
            raise InvalidRequest("a delta cap must be at least 0 and below 1", code="cap.invalid")
        return delta_units(value, up=False)
    if not math.isfinite(value) or value < 0 or value > MAX_EPSILON:
        raise InvalidRequest(f"an epsilon cap must be between 0 and {MAX_EPSILON:g}", code="cap.invalid")
    return epsilon_units(value, up=False)


def _loosens(old: tuple[int | None, int | None], new: tuple[int | None, int | None]) -> bool:
    """Whether any new cap is looser than the old one (``None``: no cap)."""
    return any(o is not None and (n is None or n > o) for o, n in zip(old, new, strict=True))


def _shared_with_others(session: Session, ledger_id: str, dataset: DatasetRecord) -> bool:
    """Whether a dataset of another owning body is charged to the same ledger."""
    other = session.scalar(
        select(Dataset.name)
        .where(Dataset.ledger_id == ledger_id, Dataset.owner != dataset.metadata.owner)
        .limit(1)
    )
    return other is not None


class Registrations(Core):
    """Registering datasets, their certificates, and the caps of their lifetime ledgers."""

    def register_dataset(
        self,
        actor: Principal,
        catalog: Catalog,
        metadata_path: Path,
        *,
        source_root: Path | None = None,
        replace: bool = False,
        new_version_budget: NewVersionBudget = NewVersionBudget.CARRY,
        progress: Any = None,
    ) -> DatasetRecord:
        """Check the actor may register it, load the dataset into the catalogue and record it.

        The actor must be an operator, or an owner of the owning body the metadata names (and of
        the dataset already registered under that name, if any).
        """
        metadata, problems = load_metadata(metadata_path)
        if metadata is None:
            raise MetadataInvalid(
                f"the metadata has {len(problems)} problem(s)", details={"problems": problems}
            )
        if not actor.has(Role.OPERATOR):
            if not checks.is_owner(actor, metadata.owner):
                raise Forbidden(
                    f"the metadata names owner {metadata.owner!r} but you register for "
                    f"{actor.organisation!r}; owners register only their own datasets",
                    code="dataset.owner_mismatch",
                )
            with self._store.read() as session:
                known = session.get(Dataset, metadata.dataset)
            if known is not None and known.owner != actor.organisation:
                raise Forbidden(
                    f"dataset {metadata.dataset!r} is registered by another owner; choose another name",
                    code="dataset.not_owner",
                )
        record = catalog.register(metadata_path, source_root=source_root, replace=replace, progress=progress)
        self.record_registration(actor, record, new_version_budget=new_version_budget)
        return record

    def record_registration(
        self,
        actor: Principal,
        record: DatasetRecord,
        *,
        new_version_budget: NewVersionBudget = NewVersionBudget.CARRY,
    ) -> None:
        """Record a dataset registration with its fingerprints and ledger (``dataset.registered``).

        The actor must be an operator or an owner of the dataset's owning body.
        """
        choice = NewVersionBudget(new_version_budget)
        if not (actor.has(Role.OPERATOR) or checks.is_owner(actor, record.metadata.owner)):
            raise Forbidden(
                f"only an operator or an owner of {record.metadata.owner!r} may register {record.name!r}",
                code="dataset.not_owner",
            )
        now = self._now()
        digest = content_digest(record)
        with self._store.write_transaction() as session:
            row = session.get(Dataset, record.name, with_for_update=True)
            if row is not None and row.owner != record.metadata.owner and not actor.has(Role.OPERATOR):
                raise Forbidden(f"dataset {record.name!r} belongs to {row.owner!r}", code="dataset.not_owner")
            if row is not None and row.version == record.version and row.registration_seq is not None:
                raise Conflict(
                    f"version {record.version[:12]} of {record.name!r} is already registered",
                    code="dataset.already_registered",
                )
            ledger_id = self._ledger_for(session, row, record, digest, choice)
            ledger_row(session, ledger_id)
            if row is None:
                row = Dataset(
                    name=record.name,
                    owner=record.metadata.owner,
                    classification=record.metadata.classification.value,
                    version=record.version,
                    ledger_id=ledger_id,
                    new_version_budget=choice.value,
                )
                session.add(row)
            if session.get(LedgerContent, digest) is None:
                session.add(LedgerContent(content_sha256=digest, ledger_id=ledger_id))
            event = chain.append(
                session,
                EventType.DATASET_REGISTERED,
                actor=actor,
                now=now,
                organisation=record.metadata.owner,
                dataset=record.name,
                payload={
                    **certificates.registration_payload(record),
                    "content_sha256": digest,
                    "ledger": ledger_id,
                    "new_version_budget": choice.value,
                },
            )
            row.owner = record.metadata.owner
            row.classification = record.metadata.classification.value
            row.version = record.version
            row.registration_seq = event.seq
            row.ledger_id = ledger_id
            row.new_version_budget = choice.value

    @staticmethod
    def _ledger_for(
        session: Session,
        row: Dataset | None,
        record: DatasetRecord,
        digest: str,
        choice: NewVersionBudget,
    ) -> str:
        known = session.get(LedgerContent, digest)
        if known is not None:
            return known.ledger_id
        if row is None:
            return record.name
        if choice == NewVersionBudget.CARRY:
            return row.ledger_id
        return f"{record.name}@{record.version[:12]}"

    def certificate(self, dataset: str, version: str | None = None) -> dict[str, Any]:
        """The registration certificate (登记存证) of a dataset's latest (or given) registration."""
        with self._store.read() as session:
            rows = session.scalars(
                select(AuditEvent)
                .where(AuditEvent.type == EventType.DATASET_REGISTERED.value, AuditEvent.dataset == dataset)
                .order_by(AuditEvent.seq.desc())
            )
            registration = next(
                (
                    event
                    for event in map(chain.view_of, rows)
                    if version is None or event.payload.get("version") == version
                ),
                None,
            )
            if registration is None:
                raise NotFound(
                    f"no registration of dataset {dataset!r}" + (f" at version {version}" if version else ""),
                    code="dataset.not_registered",
                )
            head = session.get(AuditHead, 1)
            if head is None:
                raise InternalError("the audit chain head row is missing")
            latest = self._latest_checkpoint(session)
        covering = latest if latest is not None and latest.seq >= registration.seq else None
        return certificates.build(registration, head.seq, head.hash, covering, chain.format_time(self._now()))

    def _latest_checkpoint(self, session: Session) -> CheckpointView | None:
        row = session.scalar(
            select(AuditEvent)
            .where(AuditEvent.type == EventType.AUDIT_CHECKPOINT.value)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
        candidates = checkpoints.read_log(self.checkpoint_log)
        if row is not None:
            candidates.append(checkpoints.from_event(chain.view_of(row)))
        return max(candidates, key=lambda c: c.seq, default=None)

    def set_dataset_cap(
        self,
        actor: Principal,
        dataset: DatasetRecord,
        epsilon: float | None,
        delta: float | None,
        *,
        organisation: str | None = None,
        per_organisation: bool = False,
    ) -> None:
        """Set a lifetime cap on the dataset's ledger (``budget.cap_set``); ``None`` removes it.

        Without ``organisation``: the dataset-wide cap over all organisations together, or with
        ``per_organisation`` the default lifetime cap of each organisation. With it: that
        organisation's own lifetime cap (overrides the default). Only the dataset's owner may; on a
        ledger shared with another owning body's dataset (identical content), caps may only be
        tightened (``cap.shared_ledger``): no owner loosens what protects the other's data too.
        """
        checks.ensure_owner(actor, dataset)
        if organisation is not None and per_organisation:
            raise InvalidRequest(
                "a cap is either one organisation's or every organisation's default, not both",
                code="cap.invalid",
            )
        epsilon_cap, delta_cap = _cap(epsilon, delta=False), _cap(delta, delta=True)
        with self._store.write_transaction() as session:
            ledger = ledger_row(session, dataset_row(session, dataset).ledger_id)
            target: Ledger | LedgerAccount = ledger
            names = ("epsilon_cap", "delta_cap")
            scope = "dataset"
            if organisation is not None:
                target, scope = account_row(session, ledger.id, organisation), "organisation"
            elif per_organisation:
                names, scope = ("organisation_epsilon_cap", "organisation_delta_cap"), "per_organisation"
            old = (getattr(target, names[0]), getattr(target, names[1]))
            if _loosens(old, (epsilon_cap, delta_cap)) and _shared_with_others(session, ledger.id, dataset):
                raise Forbidden(
                    f"the ledger of {dataset.name!r} is shared with another owning body's dataset of "
                    "identical content: its caps may only be lowered",
                    code="cap.shared_ledger",
                )
            setattr(target, names[0], epsilon_cap)
            setattr(target, names[1], delta_cap)
            chain.append(
                session,
                EventType.BUDGET_CAP_SET,
                actor=actor,
                now=self._now(),
                organisation=organisation or dataset.metadata.owner,
                dataset=dataset.name,
                payload={
                    "scope": scope,
                    "ledger": ledger.id,
                    "target_organisation": organisation,
                    "epsilon": optional_epsilon_text(epsilon_cap),
                    "delta": optional_delta_text(delta_cap),
                },
            )
