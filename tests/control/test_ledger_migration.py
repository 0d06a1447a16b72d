"""Migration 0002 moves each dataset's counters and cap to a ledger of its name and sums each
organisation's policies into its lifetime account; 0003 folds what was reserved into what was
spent (charges are made at admission) — on SQLite and PostgreSQL, with the downgrades."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from control_support import libpq
from sqlalchemy import text
from sqlalchemy.engine import make_url

from sandbox.store import migrate
from sandbox.store.db import make_engine

NOW = datetime(2030, 1, 1, tzinfo=UTC).replace(tzinfo=None).isoformat(sep=" ")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    name = f"sbx_{uuid4().hex[:16]}"
    with psycopg.connect(libpq(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq(postgres_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _policy(pid: str, request_id: str, status: str, spent: int, reserved: int) -> str:
    return (
        "INSERT INTO policies (id, request_id, organisation, dataset, dataset_owner, columns, aggregates, "
        "epsilon_granted, delta_granted, epsilon_spent, epsilon_reserved, delta_spent, delta_reserved, "
        "max_epsilon_per_query, max_delta_per_query, min_group_size, valid_from, valid_until, status, "
        f"approved_by, approved_at) VALUES ('{pid}', '{request_id}', 'acme', 'residents', 'city', '[]', "
        f"'[]', 3000000000, 0, {spent}, {reserved}, 0, 0, 1000000000, 0, 0, '{NOW}', '{NOW}', '{status}', "
        f"'o', '{NOW}')"
    )


def _request(rid: str) -> str:
    return (
        "INSERT INTO access_requests (id, organisation, dataset, dataset_owner, requested_by, purpose, "
        "columns, epsilon, delta, valid_from, valid_until, status, created_at) VALUES "
        f"('{rid}', 'acme', 'residents', 'city', 'alice', 'p', '[]', 3000000000, 0, '{NOW}', '{NOW}', "
        f"'approved', '{NOW}')"
    )


def test_counters_move_to_ledgers_and_lifetime_accounts(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, "0001")
    engine = make_engine(fresh_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO datasets (name, owner, classification, version, epsilon_cap, delta_cap, "
                "epsilon_spent, epsilon_reserved, delta_spent, delta_reserved) VALUES "
                "('residents', 'city', 'general', 'v1', 9000000000, NULL, 3350000000, 100000000, 0, 0)"
            )
        )
        for statement in (
            _request("req_1"),
            _request("req_2"),
            _policy("pol_1", "req_1", "revoked", 3000000000, 0),
            _policy("pol_2", "req_2", "active", 350000000, 100000000),
        ):
            connection.execute(text(statement))
    assert migrate.upgrade(fresh_url, "0002") == "0002"
    with engine.connect() as connection:
        ledger = connection.execute(text("SELECT * FROM ledgers")).mappings().one()
        account = connection.execute(text("SELECT * FROM ledger_accounts")).mappings().one()
        dataset = connection.execute(text("SELECT ledger_id, new_version_budget FROM datasets")).one()
    engine.dispose()
    assert (ledger["id"], ledger["epsilon_cap"], ledger["epsilon_spent"], ledger["epsilon_reserved"]) == (
        "residents",
        9_000_000_000,
        3_350_000_000,
        100_000_000,
    )
    assert (account["ledger_id"], account["organisation"]) == ("residents", "acme")
    assert (account["epsilon_spent"], account["epsilon_reserved"], account["epsilon_cap"]) == (
        3_350_000_000,
        100_000_000,
        None,
    )
    assert tuple(dataset) == ("residents", "carry")


def test_the_downgrade_puts_the_counters_back_on_the_datasets(fresh_url: str) -> None:
    from alembic import command

    from sandbox.store.migrate import _config  # the same configuration `upgrade` uses

    migrate.upgrade(fresh_url, "0002")
    engine = make_engine(fresh_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ledgers (id, epsilon_cap, epsilon_spent, epsilon_reserved, delta_spent, "
                "delta_reserved) VALUES ('residents', 5, 7, 1, 0, 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO datasets (name, owner, classification, version, ledger_id) "
                "VALUES ('residents', 'city', 'general', 'v1', 'residents')"
            )
        )
        command.downgrade(_config(connection), "0001")
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT epsilon_cap, epsilon_spent, epsilon_reserved FROM datasets")
        ).one()
    engine.dispose()
    assert tuple(row) == (5, 7, 1)
    assert migrate.current(fresh_url) == "0001"


def test_charges_at_admission_fold_reserved_into_spent_and_back(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, "0002")
    engine = make_engine(fresh_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ledgers (id, epsilon_spent, epsilon_reserved, delta_spent, delta_reserved) "
                "VALUES ('residents', 7, 2, 5, 1)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO ledger_accounts (ledger_id, organisation, epsilon_spent, epsilon_reserved, "
                "delta_spent, delta_reserved) VALUES ('residents', 'acme', 7, 2, 5, 1)"
            )
        )
        for statement in (_request("req_1"), _policy("pol_1", "req_1", "active", 7, 2)):
            connection.execute(text(statement))
        connection.execute(
            text(
                "INSERT INTO queries (id, principal, organisation, dataset, sql, epsilon, delta, status, "
                f"policy_id, created_at) VALUES ('q_1', 'alice', 'acme', 'residents', 's', 2, 0, "
                f"'reserved', 'pol_1', '{NOW}')"
            )
        )
    assert migrate.upgrade(fresh_url) == migrate.head()
    with engine.connect() as connection:
        ledger = connection.execute(text("SELECT * FROM ledgers")).mappings().one()
        account = connection.execute(text("SELECT * FROM ledger_accounts")).mappings().one()
        policy = connection.execute(text("SELECT * FROM policies")).mappings().one()
        pending = connection.execute(text("SELECT COUNT(*) FROM audit_pending")).scalar_one()
    assert (ledger["epsilon_spent"], ledger["delta_spent"], "epsilon_reserved" in ledger) == (9, 6, False)
    assert (account["epsilon_spent"], account["delta_spent"], "delta_reserved" in account) == (9, 6, False)
    assert (policy["epsilon_spent"], policy["revision"], "epsilon_reserved" in policy) == (9, 0, False)
    assert pending == 0
    assert migrate.downgrade(fresh_url, "0002") == "0002"
    with engine.connect() as connection:
        row = connection.execute(text("SELECT epsilon_spent, epsilon_reserved FROM policies")).one()
    engine.dispose()
    assert tuple(row) == (9, 0)  # the charge stays spent: it is never refunded
