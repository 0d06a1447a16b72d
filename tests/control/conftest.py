"""Fixtures of the control-plane tests: a fresh state store per test on SQLite and on PostgreSQL.

PostgreSQL: one fresh database ``sbx_<random>`` per test module (dropped afterwards), emptied
before each test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from control_support import Clock, Granter, empty, libpq
from sqlalchemy.engine import make_url

from sandbox.control import ControlPlane
from sandbox.settings import Settings
from sandbox.store import migrate


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite state store migrated to head once; tests start from a copy."""
    path = tmp_path_factory.mktemp("template") / "state.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def pg_database(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database at head for this test module; dropped afterwards."""
    name = f"sbx_{uuid4().hex[:16]}"
    with psycopg.connect(libpq(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(libpq(postgres_url), autocommit=True) as admin:
        # test speed only: commits need not wait for the server's own WAL flush
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    migrate.upgrade(url)
    yield url
    with psycopg.connect(libpq(postgres_url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """State-store URL of a fresh store: SQLite file, or the module's emptied PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "state.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_database")
    empty(url)
    return url


@pytest.fixture
def clock() -> Clock:
    """The test's clock, starting at ``START``."""
    return Clock()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings with home in the test's temp folder and the backend's URL."""
    return Settings(home=tmp_path / "home", db_url=db_url)


@pytest.fixture
def cp(settings: Settings, clock: Clock) -> Iterator[ControlPlane]:
    """A control plane on a fresh store."""
    plane = ControlPlane(settings, clock=clock)
    yield plane
    plane.close()


@pytest.fixture
def grant(cp: ControlPlane, clock: Clock) -> Granter:
    """Grant a policy: the analyst requests, the owner approves."""
    return Granter(cp, clock)
