"""Use case: the audit chain for operators. Read, page and export events; sign checkpoints; and
verify: walk the chain, check every checkpoint, and replay the chain to prove the stored state
(policies, lifetime ledgers and accounts, users), naming each divergence."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.audit import certificate as certificates
from sandbox.audit import chain, checkpoints
from sandbox.audit.export import EventFilter, to_csv, to_jsonl
from sandbox.audit.models import (
    AuditEventView,
    CheckpointView,
    EventType,
    StateDivergence,
    VerifyProblem,
    VerifyReport,
)
from sandbox.audit.replay import COUNTERS, Account, ReplayedState, apply
from sandbox.audit.verify import check_checkpoints, pending_events, stored_events, walk_store
from sandbox.control.base import Core, Page, decode_cursor, encode_cursor, page_size, require_operator
from sandbox.errors import InvalidRequest, NotFound
from sandbox.principals import Principal
from sandbox.store.models import AuditEvent, AuditHead, Ledger, LedgerAccount, Policy, User

OPERATOR_ACTOR = "operator"
_POLICY_FIELDS = (
    "status",
    "organisation",
    "dataset",
    "epsilon_granted",
    "delta_granted",
    "max_epsilon_per_query",
    "max_delta_per_query",
    "min_group_size",
    "columns",
    "aggregates",
    "valid_until",
    *COUNTERS,
)
_LEDGER_FIELDS = ("epsilon_cap", "delta_cap", "organisation_epsilon_cap", "organisation_delta_cap", *COUNTERS)
_ACCOUNT_FIELDS = ("epsilon_cap", "delta_cap", *COUNTERS)


def _stored_value(row: Any, name: str) -> Any:
    value = getattr(row, name)
    return value.isoformat() if isinstance(value, datetime) else value


def _compare(
    table: str, key: str, chained: Account | None, stored: Any | None, fields: Iterable[str]
) -> list[StateDivergence]:
    found: list[StateDivergence] = []
    for name in fields:
        proven = None if chained is None else chained.values.get(name, 0 if name in COUNTERS else None)
        actual = None if stored is None else _stored_value(stored, name)
        if chained is None and stored is not None and actual in (0, None):
            continue  # an empty row the chain has no event for (created on first use)
        if proven != actual:
            found.append(StateDivergence(table=table, row=key, field=name, chain=proven, stored=actual))
    return found


def state_divergences(session: Session, state: ReplayedState) -> list[StateDivergence]:
    """Every stored value of policies, ledgers, accounts and users the replayed chain does not prove."""
    found: list[StateDivergence] = []
    policies = {p.id: p for p in session.scalars(select(Policy))}
    for key in sorted(policies.keys() | state.policies.keys()):
        found += _compare("policies", key, state.policies.get(key), policies.get(key), _POLICY_FIELDS)
    ledgers = {row.id: row for row in session.scalars(select(Ledger))}
    for key in sorted(ledgers.keys() | state.ledgers.keys()):
        found += _compare("ledgers", key, state.ledgers.get(key), ledgers.get(key), _LEDGER_FIELDS)
    accounts = {(a.ledger_id, a.organisation): a for a in session.scalars(select(LedgerAccount))}
    for pair in sorted(accounts.keys() | state.accounts.keys()):
        found += _compare(
            "ledger_accounts", "/".join(pair), state.accounts.get(pair), accounts.get(pair), _ACCOUNT_FIELDS
        )
    for user in session.scalars(select(User)):
        proven = state.users.get(user.name)
        stored = {
            "roles": sorted(r for r in user.roles.split(",") if r),
            "organisation": user.organisation,
            "disabled": user.disabled_at is not None,
        }
        for name, actual in stored.items():
            value = None if proven is None else proven.get(name)
            if value != actual:
                found.append(
                    StateDivergence(table="users", row=user.name, field=name, chain=value, stored=actual)
                )
    return found


class Auditing(Core):
    """Reading, exporting, signing and verifying the audit chain (operators only)."""

    def audit_events(
        self,
        principal: Principal,
        *,
        actor: str | None = None,
        organisation: str | None = None,
        dataset: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int | None = None,
        limit: int = 1000,
    ) -> list[AuditEventView]:
        """Matching audit events in chain order (operator only).

        Without ``after`` the newest ``limit`` events; with it, the first ``limit`` events after that
        seq (page forward by passing the last seq seen).
        """
        require_operator(principal, "read the audit log")
        selection = EventFilter(actor, organisation, dataset, type, since, until)
        size = page_size(limit)
        self.seal_pending()
        with self._store.read() as session:
            if after is None:
                rows = list(session.scalars(selection.select_latest(size)))[::-1]
            else:
                rows = list(session.scalars(selection.select(size, after=after)))
            return [chain.view_of(r) for r in rows]

    def audit_page(
        self,
        principal: Principal,
        *,
        actor: str | None = None,
        organisation: str | None = None,
        dataset: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[AuditEventView]:
        """Matching events in chain order from the start (or the cursor), one page (operator only)."""
        after = decode_cursor(cursor, 1)
        if after is not None and not isinstance(after[0], int):
            raise InvalidRequest("the cursor is not one this service issued", code="request.invalid_cursor")
        events = self.audit_events(
            principal,
            actor=actor,
            organisation=organisation,
            dataset=dataset,
            type=type,
            since=since,
            until=until,
            after=0 if after is None else after[0],
            limit=limit,
        )
        full = len(events) == page_size(limit)
        return Page(events, encode_cursor(events[-1].seq) if full and events else None)

    def export_audit(
        self,
        principal: Principal,
        fmt: Literal["jsonl", "csv"],
        *,
        actor: str | None = None,
        organisation: str | None = None,
        dataset: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> str:
        """Every matching audit event as JSON Lines or CSV (operator only), exactly as hashed."""
        require_operator(principal, "export the audit log")
        if fmt not in {"jsonl", "csv"}:
            raise InvalidRequest("export format must be jsonl or csv", code="audit.invalid_format")
        selection = EventFilter(actor, organisation, dataset, type, since, until)
        self.seal_pending()
        with self._store.read() as session:
            events = [chain.view_of(r) for r in session.scalars(selection.select())]
        return to_jsonl(events) if fmt == "jsonl" else to_csv(events)

    def _public_key(self, path: Path | None) -> Ed25519PublicKey | None:
        chosen = path or self.settings.keys_dir / checkpoints.PUBLIC_KEY_FILE
        if path is None and not chosen.exists():
            return None
        return checkpoints.load_public_key(chosen)

    def verify_audit(
        self, public_key_path: Path | None = None, *, checkpoint_files: Iterable[Path] = ()
    ) -> VerifyReport:
        """Walk the chain, check every checkpoint, and prove the stored state by replaying the chain.

        Checkpoints come from the chain, the home's checkpoint log and ``checkpoint_files`` (the
        off-host copies). Without ``public_key_path`` the key in ``keys_dir`` is used if present;
        otherwise checkpoint signatures are not checked (a warning says so). ``divergences`` names
        every stored policy, ledger, account or user value the chain does not prove.
        """
        key = self._public_key(public_key_path)
        logged = checkpoints.read_log(self.checkpoint_log)
        for path in checkpoint_files:
            if not path.is_file():
                raise NotFound(f"no checkpoint file at {path}", code="audit.no_checkpoint_file")
            logged += checkpoints.read_log(path)
        divergences: list[StateDivergence] = []
        state = ReplayedState()
        self.seal_pending()

        with self._store.snapshot() as session:

            def replayed() -> Iterator[AuditEventView | VerifyProblem]:
                for item in stored_events(session):  # one pass: walked and replayed together
                    if isinstance(item, AuditEventView):
                        apply(state, item)
                    yield item

            walked, head = walk_store(session, replayed())

            def hash_at(seq: int) -> str | None:
                if seq > walked.last_seq:
                    return None
                row = session.get(AuditEvent, seq)
                return row.hash if row is not None else None

            found = [checkpoints.from_event(e) for e in walked.checkpoint_events] + logged
            checked = check_checkpoints(found, hash_at, key)
            if walked.problem is None:
                for event in pending_events(session):  # committed since the seal above
                    apply(state, event)
                divergences = state_divergences(session, state)
        problem = walked.problem or checked.problem
        return VerifyReport(
            ok=problem is None and not divergences,
            events=walked.events,
            head_seq=head.seq,
            head_hash=head.hash,
            first_error=problem,
            checkpoints=checked.found,
            checkpoints_verified=checked.verified,
            state_checked=walked.problem is None,
            divergences=tuple(divergences),
            warnings=tuple(checked.warnings),
        )

    def verify_certificate(
        self, certificate: dict[str, Any], public_key_path: Path | None = None
    ) -> VerifyReport:
        """Check a registration certificate against this chain (and the operator's public key)."""
        key = self._public_key(public_key_path)
        self.seal_pending()
        with self._store.snapshot() as session:
            return certificates.verify_certificate(certificate, stored_events(session), key)

    def generate_checkpoint_key(self, *, overwrite: bool = False) -> tuple[Path, Path]:
        """Create the operator's Ed25519 key pair in ``keys_dir``; (private, public) paths."""
        return checkpoints.generate_key(self.settings.keys_dir, overwrite=overwrite)

    def checkpoint(
        self, private_key_path: Path | None = None, *, actor: str | Principal = OPERATOR_ACTOR
    ) -> CheckpointView:
        """Sign the chain head with the operator's key (``audit.checkpoint``) and log it to a file."""
        path = private_key_path or self.settings.keys_dir / checkpoints.PRIVATE_KEY_FILE
        if not path.exists():
            raise NotFound(
                f"no audit signing key at {path}: create one with `sandbox audit keygen`", code="audit.no_key"
            )
        key = checkpoints.load_private_key(path)
        now = self._now()
        with self._store.write_transaction() as session:
            head = session.get_one(AuditHead, 1)
            signed = checkpoints.sign(key, head.seq, head.hash, now)
            event = chain.append(
                session,
                EventType.AUDIT_CHECKPOINT,
                actor=actor,
                now=now,
                payload=checkpoints.event_payload(signed),
            )
        recorded = signed.model_copy(update={"event_seq": event.seq})
        checkpoints.append_to_log(self.checkpoint_log, recorded)
        return recorded
