"""Suite-wide fixtures.

- ``shared_data``: the public datasets the suite runs on: the extracts in the repository's ``data/``
  folder (same layout as the full shared data folder; ``data/README.md``). Never a folder outside
  the repository, so the suite runs from a clone alone.
- ``full_shared_data``: the full shared datasets from ``$SANDBOX_SHARED_DATA``, for the few tests that
  check the published reference values of the whole tables; skipped, saying so, when it is unset.
- ``postgres_url``: the PostgreSQL URL from ``$SANDBOX_TEST_POSTGRES_URL``; tests using it are
  skipped when it is unset.

A test that hangs fails by pytest-timeout; if something left behind (a child process, a thread)
keeps the interpreter from exiting after the summary, every thread's stack is printed and the run
exits with status 1 after ``EXIT_GRACE_S``, instead of holding CI until its own limit.
"""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REPOSITORY_DATA = REPO / "data"
EXIT_GRACE_S = 120
_WATCHDOG_STREAM: list[object] = []  # keeps the watchdog's stream open until the interpreter exits


def pytest_unconfigure(config: pytest.Config) -> None:
    """Arm the exit watchdog (on its own copy of stderr: pytest closes its streams)."""
    del config
    stream = os.fdopen(os.dup(2), "w")
    faulthandler.dump_traceback_later(EXIT_GRACE_S, exit=True, file=stream)
    _WATCHDOG_STREAM.append(stream)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The repository's extracts of the public datasets."""
    return REPOSITORY_DATA


@pytest.fixture(scope="session")
def full_shared_data() -> Path:
    """The full shared data folder named by ``SANDBOX_SHARED_DATA``."""
    value = os.environ.get("SANDBOX_SHARED_DATA")
    if not value:
        pytest.skip("needs the full public datasets: set SANDBOX_SHARED_DATA to the shared data folder")
    path = Path(value)
    if not (path / "SHA256SUMS").exists():
        pytest.fail(f"SANDBOX_SHARED_DATA={value} holds no SHA256SUMS: not the shared data folder")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL URL for the PostgreSQL half of the state-store tests."""
    url = os.environ.get("SANDBOX_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("SANDBOX_TEST_POSTGRES_URL is not set")
    return url
