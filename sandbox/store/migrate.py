"""Alembic migrations of the state store, run programmatically (``sandbox db upgrade``)."""

from __future__ import annotations

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
    engine = make_engine(url)
    try:
        with engine.execution_options(**{IMMEDIATE_OPTION: True}).begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
            command.upgrade(_config(connection), revision)
            reached = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return reached or ""


def ensure_current(url: str) -> None:
    """Raise ``StoreOutdatedError`` unless the database is at head."""
    found, wanted = current(url), head()
    if found != wanted:
        state = "empty" if found is None else f"at revision {found}"
        raise StoreOutdatedError(
            f"the state store is {state} but this version needs {wanted}: run `sandbox db upgrade`"
        )
