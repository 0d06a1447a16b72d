"""The audit chain: events in the same transaction as their state change, tamper detection naming
the seq (alter, delete, reorder, truncate, consistent rewrite caught by checkpoints), export and
offline verification, registration certificates."""

from __future__ import annotations

import itertools
import json
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_support import (
    ANALYST_A,
    OPERATOR,
    OTHER_OWNER,
    OWNER,
    Clock,
    Granter,
    make_dataset,
    make_summary,
)
from sqlalchemy import Engine, text

from sandbox.audit.chain import GENESIS_HASH, canonical_json, event_hash
from sandbox.audit.checkpoints import generate_key
from sandbox.audit.export import from_jsonl
from sandbox.audit.models import AuditEventView, VerifyProblem, VerifyReport
from sandbox.audit.verify import walk
from sandbox.control import ControlPlane, QueryTicket
from sandbox.errors import Conflict, Forbidden
from sandbox.principals import Role
from sandbox.store.db import make_engine

DATASET = make_dataset()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A direct connection to the store, as a database administrator has."""
    direct = make_engine(db_url)
    yield direct
    direct.dispose()


@pytest.fixture
def busy(cp: ControlPlane, grant: Granter) -> ControlPlane:
    """A store with a dozen events of many kinds."""
    cp.add_user("alice", [Role.ANALYST], "acme", actor="olga")
    cp.issue_token("alice", actor="olga")
    cp.record_registration(OWNER, DATASET)
    grant(ANALYST_A, DATASET)
    for _ in range(3):
        ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET), sql="SELECT COUNT(*) FROM people")
        assert isinstance(ticket, QueryTicket)
        cp.complete_query(ticket, {"columns": ["n"], "rows": [[42.5]]})
    cp.seal_pending()  # the tests below tamper with the linked chain
    return cp


def first_error(report: VerifyReport) -> VerifyProblem:
    """The report's first problem (the report must have one)."""
    assert report.first_error is not None and not report.ok
    return report.first_error


def execute(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as connection:
        connection.execute(text(sql), params)


def rewrite_from(engine: Engine, seq: int) -> None:
    """Recompute every hash from ``seq`` on, and the head: a consistent rewrite by an informed DBA."""
    with engine.begin() as connection:
        rows = connection.execute(text("SELECT * FROM audit_events ORDER BY seq")).mappings().all()
        previous = GENESIS_HASH
        for row in rows:
            event = AuditEventView.model_validate(
                {**row, "payload": json.loads(row["payload"]), "prev_hash": previous}
            )
            if row["seq"] >= seq:
                new_hash = event_hash(event)
                connection.execute(
                    text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s"),
                    {"p": previous, "h": new_hash, "s": row["seq"]},
                )
                previous = new_hash
            else:
                previous = row["hash"]
        connection.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": previous})


def test_chain_links_and_verifies(busy: ControlPlane) -> None:
    events = busy.audit_events(OPERATOR)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert all(event_hash(e) == e.hash for e in events)
    assert {e.type for e in events} >= {
        "user.added",
        "token.issued",
        "dataset.registered",
        "access.requested",
        "access.approved",
        "query.reserved",
        "query.answered",
    }
    report = busy.verify_audit()
    assert report.ok and report.events == len(events) and report.head_seq == len(events)
    assert report.head_hash == events[-1].hash


def test_event_and_state_change_commit_together(cp: ControlPlane, engine: Engine, db_url: str) -> None:
    if db_url.startswith("sqlite"):
        execute(
            engine, "CREATE TRIGGER refuse BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    else:
        execute(
            engine,
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no'; END $$"
            " LANGUAGE plpgsql",
        )
        execute(
            engine,
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
    with pytest.raises(Exception, match="no"):
        cp.add_user("alice", [Role.ANALYST], "acme", actor="olga")
    assert cp.list_users() == []  # the user was not added without its event
    execute(engine, "DROP TRIGGER refuse" + ("" if db_url.startswith("sqlite") else " ON audit_events"))
    if not db_url.startswith("sqlite"):
        execute(engine, "DROP FUNCTION refuse()")
    cp.add_user("alice", [Role.ANALYST], "acme", actor="olga")
    assert cp.verify_audit().ok


def test_altered_row_is_named(busy: ControlPlane, engine: Engine) -> None:
    execute(engine, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 5")
    report = busy.verify_audit()
    assert not report.ok and report.first_error is not None
    assert report.first_error.seq == 5 and "altered" in report.first_error.reason


def test_altered_payload_is_named(busy: ControlPlane, engine: Engine) -> None:
    execute(engine, "UPDATE audit_events SET payload = REPLACE(payload, '0.1', '0.01') WHERE seq = 9")
    assert first_error(busy.verify_audit()).seq == 9
    execute(engine, "UPDATE audit_events SET payload = 'not json' WHERE seq = 7")
    report = busy.verify_audit()
    assert report.first_error is not None and report.first_error.seq == 7


def test_deleted_row_is_named(busy: ControlPlane, engine: Engine) -> None:
    execute(engine, "DELETE FROM audit_events WHERE seq = 6")
    report = busy.verify_audit()
    assert report.first_error is not None and report.first_error.seq == 6
    assert "missing" in report.first_error.reason


def test_deleted_last_row_is_named(busy: ControlPlane, engine: Engine) -> None:
    last = busy.verify_audit().head_seq
    execute(engine, "DELETE FROM audit_events WHERE seq = :s", s=last)
    report = busy.verify_audit()
    assert report.first_error is not None and report.first_error.seq == last
    assert "missing" in report.first_error.reason


def test_reordered_rows_are_named(busy: ControlPlane, engine: Engine) -> None:
    execute(engine, "UPDATE audit_events SET seq = -1 WHERE seq = 4")
    execute(engine, "UPDATE audit_events SET seq = 4 WHERE seq = 8")
    execute(engine, "UPDATE audit_events SET seq = 8 WHERE seq = -1")
    report = busy.verify_audit()
    assert report.first_error is not None and report.first_error.seq == 4


def test_altered_and_rehashed_row_breaks_the_next_link(busy: ControlPlane, engine: Engine) -> None:
    with engine.begin() as connection:
        row = connection.execute(text("SELECT * FROM audit_events WHERE seq = 5")).mappings().one()
        event = AuditEventView.model_validate(
            {**row, "payload": json.loads(row["payload"]), "actor": "mallory"}
        )
        connection.execute(
            text("UPDATE audit_events SET actor = 'mallory', hash = :h WHERE seq = 5"),
            {"h": event_hash(event)},
        )
    report = busy.verify_audit()
    assert report.first_error is not None and report.first_error.seq == 6
    assert "event 5" in report.first_error.reason


def test_consistent_rewrite_is_caught_by_a_checkpoint(
    busy: ControlPlane, engine: Engine, clock: Clock
) -> None:
    private, public = busy.generate_checkpoint_key()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    head = busy.verify_audit().head_seq
    signed = busy.checkpoint()
    assert (signed.seq, signed.event_seq) == (head, head + 1)
    clock.advance(minutes=5)
    busy.add_user("bob", [Role.ANALYST], "globex", actor="olga")
    second = busy.checkpoint()
    report = busy.verify_audit()
    assert report.ok and (report.checkpoints, report.checkpoints_verified) == (2, 2)

    execute(engine, "UPDATE audit_events SET organisation = 'acne' WHERE seq = 4")
    rewrite_from(engine, 4)
    walked = walk(from_jsonl(busy.export_audit(OPERATOR, "jsonl")))
    assert walked.problem is None  # the rewritten chain is self-consistent...
    report = busy.verify_audit(public)
    assert not report.ok and report.first_error is not None  # ...but contradicts the signed heads
    assert report.first_error.seq == signed.seq and "rewritten" in report.first_error.reason
    assert second.seq > signed.seq


def test_rewrite_that_drops_checkpoint_events_is_caught_by_the_log(
    busy: ControlPlane, engine: Engine
) -> None:
    busy.generate_checkpoint_key()
    signed = busy.checkpoint()
    assert busy.checkpoint_log.exists()
    execute(engine, "DELETE FROM audit_events WHERE seq = :s", s=signed.event_seq)
    execute(engine, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    rewrite_from(engine, 3)
    execute(engine, "UPDATE audit_head SET seq = seq - 1 WHERE id = 1")
    report = busy.verify_audit()
    assert report.first_error is not None and report.first_error.seq == signed.seq


def test_a_rewrite_of_chain_and_local_log_is_caught_by_the_off_host_copy(
    busy: ControlPlane, engine: Engine, tmp_path: Path
) -> None:
    busy.generate_checkpoint_key()
    signed = busy.checkpoint()
    off_host = tmp_path / "off-host.jsonl"
    shutil.copyfile(busy.checkpoint_log, off_host)
    execute(engine, "DELETE FROM audit_events WHERE seq = :s", s=signed.event_seq)
    execute(engine, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    rewrite_from(engine, 3)
    execute(engine, "UPDATE audit_head SET seq = seq - 1 WHERE id = 1")
    busy.checkpoint_log.unlink()  # the intruder also removed the local checkpoint log
    assert busy.verify_audit().ok  # nothing left on this host contradicts the rewrite...
    report = busy.verify_audit(checkpoint_files=[off_host])  # ...but the off-host copy does
    assert report.first_error is not None and report.first_error.seq == signed.seq


def test_forged_checkpoint_is_refused(busy: ControlPlane, tmp_path: Path) -> None:
    _, public = busy.generate_checkpoint_key()
    forger_private, _ = generate_key(tmp_path / "forger")
    forged = busy.checkpoint(forger_private)
    report = busy.verify_audit(public)
    assert not report.ok and report.first_error is not None
    assert report.first_error.seq == forged.seq and "not validly signed" in report.first_error.reason


def test_checkpoints_without_a_public_key_are_reported_unchecked(busy: ControlPlane, tmp_path: Path) -> None:
    private, _ = generate_key(tmp_path / "elsewhere")
    busy.checkpoint(private)
    report = busy.verify_audit()
    assert report.ok and (report.checkpoints, report.checkpoints_verified) == (1, 0)
    assert "no public key" in report.warnings[0]


def test_checkpoint_needs_a_key(busy: ControlPlane) -> None:
    with pytest.raises(Exception, match="sandbox audit keygen"):
        busy.checkpoint()
    busy.generate_checkpoint_key()
    with pytest.raises(FileExistsError):
        busy.generate_checkpoint_key()


def test_filters_and_operator_only(busy: ControlPlane, clock: Clock) -> None:
    clock.advance(days=1)
    later = clock.now
    busy.add_user("bob", [Role.ANALYST], "globex", actor="root")
    assert [e.type for e in busy.audit_events(OPERATOR, actor="root")] == ["user.added"]
    assert {e.organisation for e in busy.audit_events(OPERATOR, organisation="acme")} == {"acme"}
    assert {e.dataset for e in busy.audit_events(OPERATOR, dataset="residents")} == {"residents"}
    assert len(busy.audit_events(OPERATOR, type="query.answered")) == 3
    assert [e.actor for e in busy.audit_events(OPERATOR, since=later)] == ["root"]
    assert "root" not in {e.actor for e in busy.audit_events(OPERATOR, until=later)}
    head = busy.verify_audit().head_seq
    assert [e.seq for e in busy.audit_events(OPERATOR, limit=2)] == [head - 1, head]  # newest, in order
    assert [e.seq for e in busy.audit_events(OPERATOR, after=3, limit=2)] == [4, 5]  # paging forward
    for outsider in (OWNER, ANALYST_A):
        with pytest.raises(Forbidden):
            busy.audit_events(outsider)
        with pytest.raises(Forbidden):
            busy.export_audit(outsider, "jsonl")


def test_exports_reproduce_the_chain(busy: ControlPlane) -> None:
    jsonl = busy.export_audit(OPERATOR, "jsonl")
    events = from_jsonl(jsonl)
    walked = walk(events)
    assert walked.problem is None and walked.last_hash == busy.verify_audit().head_hash
    first = events[0].model_dump(mode="json", exclude={"via"})  # hashed without via when it has none
    assert jsonl.splitlines()[0] == canonical_json(first).decode()
    csv_text = busy.export_audit(OPERATOR, "csv", type="query.answered")
    header, *rows = csv_text.splitlines()
    assert header == "seq,type,time,actor,via,organisation,dataset,payload,prev_hash,hash"
    assert len(rows) == 3 and all(",query.answered," in r for r in rows)
    assert "42.5" not in jsonl  # released values are never in the chain
    assert "sbx_" not in jsonl  # nor tokens


def test_registration_certificate(busy: ControlPlane, engine: Engine, clock: Clock) -> None:
    _, public = busy.generate_checkpoint_key()
    busy.checkpoint()
    certificate = busy.certificate("residents")
    assert certificate["version"] == DATASET.version
    assert certificate["tables"][0]["content_sha256"] == DATASET.tables[0].content_sha256
    assert certificate["registration_event"]["type"] == "dataset.registered"
    assert certificate["checkpoint"]["seq"] >= certificate["registration_event"]["seq"]
    report = busy.verify_certificate(certificate, public)
    assert report.ok and report.checkpoints_verified == 1

    # anyone can check it against an export, offline
    from sandbox.audit.certificate import verify_certificate
    from sandbox.audit.checkpoints import load_public_key

    offline = verify_certificate(
        certificate, from_jsonl(busy.export_audit(OPERATOR, "jsonl")), load_public_key(public)
    )
    assert offline.ok

    forged = json.loads(json.dumps(certificate))
    forged["tables"][0]["content_sha256"] = "0" * 64
    assert "'tables' differs" in first_error(busy.verify_certificate(forged)).reason
    forged = json.loads(json.dumps(certificate))
    forged["registration_event"]["payload"]["tables"][0]["content_sha256"] = "0" * 64
    forged["tables"] = forged["registration_event"]["payload"]["tables"]
    assert "does not match its hash" in first_error(busy.verify_certificate(forged)).reason

    seq = certificate["registration_event"]["seq"]
    execute(
        engine,
        "UPDATE audit_events SET payload = REPLACE(payload, :v, :w) WHERE seq = :s",
        v=DATASET.version,
        w="f" * 64,
        s=seq,
    )
    rewrite_from(engine, seq)
    report = busy.verify_certificate(certificate, public)
    assert not report.ok and report.first_error is not None and report.first_error.seq == seq


def test_registration_rules_and_versions(cp: ControlPlane) -> None:
    with pytest.raises(Forbidden):
        cp.record_registration(OTHER_OWNER, DATASET)
    with pytest.raises(Forbidden):
        cp.record_registration(ANALYST_A, DATASET)
    cp.record_registration(OWNER, DATASET)
    with pytest.raises(Conflict):
        cp.record_registration(OWNER, DATASET)
    newer = make_dataset(version="e" * 64)
    cp.record_registration(OPERATOR, newer)
    assert cp.certificate("residents")["version"] == "e" * 64
    assert cp.certificate("residents", DATASET.version)["version"] == DATASET.version
    assert cp.certificate("residents")["checkpoint"] is None
    payload = cp.audit_events(OPERATOR, type="dataset.registered")[0].payload
    assert payload["metadata_sha256"] and payload["owner"] == "city_stats"
    with pytest.raises(Exception, match="no registration"):
        cp.certificate("unknown")


def test_verify_walks_in_batches(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sandbox.audit.verify.BATCH", 7)
    for index in range(30):
        cp.add_user(f"user{index}", [Role.OPERATOR], None, actor="olga")
    assert cp.verify_audit().events == 30


def test_event_appended_behind_the_heads_back_is_named(busy: ControlPlane, engine: Engine) -> None:
    head = busy.verify_audit().head_seq
    with engine.begin() as connection:
        last = (
            connection.execute(text("SELECT * FROM audit_events WHERE seq = :s"), {"s": head})
            .mappings()
            .one()
        )
        forged = AuditEventView.model_validate(
            {**last, "seq": head + 1, "payload": {}, "prev_hash": last["hash"], "hash": ""}
        )
        connection.execute(
            text(
                "INSERT INTO audit_events (seq, type, time, actor, organisation, dataset, payload, prev_hash,"
                " hash) VALUES (:seq, :type, :time, :actor, :organisation, :dataset, '{}', :prev_hash, :hash)"
            ),
            {**forged.model_dump(exclude={"payload"}), "hash": event_hash(forged)},
        )
    report = busy.verify_audit()
    assert first_error(report).seq == head + 1 and "beyond the chain head" in first_error(report).reason


def test_verification_is_consistent_while_events_are_appended(busy: ControlPlane) -> None:
    done = threading.Event()

    def append() -> None:
        index = 0
        while not done.is_set():
            busy.add_user(f"user{index}", [Role.OPERATOR], None, actor="olga")
            index += 1

    writer = threading.Thread(target=append)
    writer.start()
    try:
        reports = [busy.verify_audit() for _ in range(15)]
    finally:
        done.set()
        writer.join()
    assert all(r.ok for r in reports), [r.first_error for r in reports if not r.ok]
    assert reports[-1].head_seq > reports[0].head_seq
