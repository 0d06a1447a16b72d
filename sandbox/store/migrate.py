"""Alembic migrations of the state store, run programmatically (``sandbox db upgrade``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from sandbox.errors import SandboxError
from sandbox.store.db import IMMEDIATE_OPTION, make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x5A4D_0001  # advisory lock id serialising concurrent upgrades


class StoreOutdatedError(SandboxError):
    """The state store is not at the schema revision this code expects."""

    http_status = 503
    default_code = "store.outdated"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest schema revision."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    if revision is None:
        raise RuntimeError("no migrations found")
    return revision


def current(url: str) -> str | None:
    """The database's schema revision (``None`` for an empty database)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> str:
    """Upgrade the database to ``revision``; returns the revision reached."""
    with _migrating(url) as connection:
        command.upgrade(_config(connection), revision)
        return MigrationContext.configure(connection).get_current_revision() or ""


def downgrade(url: str, revision: str) -> str:
    """Downgrade the database to ``revision``; returns the revision reached."""
    with _migrating(url) as connection:
        command.downgrade(_config(connection), revision)
        return MigrationContext.configure(connection).get_current_revision() or ""


@contextmanager
def _migrating(url: str) -> Iterator[Connection]:
    """One migration transaction: serialised between processes, foreign keys re-checked on SQLite."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            driver = connection.connection.driver_connection
            if sqlite and driver is not None:
                # rebuilding a referenced table (SQLite's way to change constraints) needs foreign
                # keys off, which only takes effect outside a transaction; checked again below
                driver.execute("PRAGMA foreign_keys=OFF")
            with connection.execution_options(**{IMMEDIATE_OPTION: True}).begin():
                if not sqlite:
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
                yield connection
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the migration left rows whose foreign keys point nowhere")
    finally:
        engine.dispose()


def ensure_current(url: str) -> None:
    """Raise ``StoreOutdatedError`` unless the database is at head."""
    found, wanted = current(url), head()
    if found != wanted:
        state = "empty" if found is None else f"at revision {found}"
        raise StoreOutdatedError(
            f"the state store is {state} but this version needs {wanted}: run `sandbox db upgrade`"
        )
