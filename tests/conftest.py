"""Suite-wide fixtures.

- ``shared_data``: the read-only folder of real public datasets (``$SANDBOX_SHARED_DATA`` or
  ``<repo>/../shared/data``).
- ``postgres_url``: the PostgreSQL URL from ``$SANDBOX_TEST_POSTGRES_URL``; tests using it are
  skipped when it is unset.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder."""
    path = Path(os.environ.get("SANDBOX_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "README.md").exists():
        pytest.fail(f"shared data folder not found at {path}; set SANDBOX_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL URL for the PostgreSQL half of the state-store tests."""
    url = os.environ.get("SANDBOX_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("SANDBOX_TEST_POSTGRES_URL is not set")
    return url
