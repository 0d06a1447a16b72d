"""The state store: migrations match the models, outdated stores are refused, SQLite settings,
and the database's own constraints backing the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from control_support import ANALYST_A, ANALYST_B, Granter, libpq, make_dataset
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from sandbox.control import ControlPlane
from sandbox.settings import Settings
from sandbox.store import migrate
from sandbox.store.db import Store, make_engine, normalise_url
from sandbox.store.migrate import StoreOutdatedError
from sandbox.store.models import Base, User


def test_migrations_match_the_models(db_url: str) -> None:
    assert migrate.current(db_url) == migrate.head()
    engine = make_engine(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_outdated_store_is_refused_until_upgraded(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    with pytest.raises(StoreOutdatedError) as raised:
        ControlPlane(settings)
    assert "sandbox db upgrade" in raised.value.message and raised.value.code == "store.outdated"
    assert migrate.current(settings.state_db_url) is None
    ControlPlane(settings, create=True).close()
    assert migrate.current(settings.state_db_url) == migrate.head()
    assert migrate.upgrade(settings.state_db_url) == migrate.head()  # idempotent
    ControlPlane(settings).close()


@pytest.mark.postgres
def test_outdated_postgres_store_is_refused(postgres_url: str, tmp_path: Path) -> None:
    name = f"sbx_{uuid4().hex[:16]}"
    with psycopg.connect(libpq(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        settings = Settings(home=tmp_path, db_url=url)
        with pytest.raises(StoreOutdatedError):
            ControlPlane(settings)
        ControlPlane(settings, create=True).close()
        assert migrate.current(url) == migrate.head()
    finally:
        with psycopg.connect(libpq(postgres_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_default_store_is_sqlite_in_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "svc")
    ControlPlane(settings, create=True).close()
    assert (tmp_path / "svc" / "state.db").exists()


def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (connection.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 10_000
    engine.dispose()


def test_plain_postgresql_urls_use_psycopg() -> None:
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_times_are_aware_utc(db_url: str) -> None:
    store = Store(db_url)
    moment = datetime(2030, 6, 1, 12, 0, tzinfo=UTC) + timedelta(microseconds=7)
    with store.write_transaction() as session:
        session.add(User(name="u", roles="operator", organisation=None, created_at=moment))
    with store.read() as session:
        stored = session.get_one(User, "u").created_at
    assert stored == moment and stored.tzinfo is not None
    with pytest.raises(Exception, match="naive"), store.write_transaction() as session:
        session.add(User(name="v", roles="operator", organisation=None, created_at=datetime(2030, 1, 1)))
        session.flush()
    store.dispose()


def test_database_refuses_overspend_and_second_active_policy(
    cp: ControlPlane, grant: Granter, db_url: str
) -> None:
    dataset = make_dataset()
    granted = grant(ANALYST_A, dataset, epsilon=1.0)
    grant(ANALYST_B, dataset, epsilon=1.0)
    engine = make_engine(db_url)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text("UPDATE policies SET epsilon_spent = epsilon_granted + 1 WHERE id = :id"), {"id": granted.id}
        )
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text("UPDATE policies SET organisation = 'acme' WHERE id <> :id"), {"id": granted.id}
        )
    engine.dispose()
