"""Fixtures of the command-line tests: a runner bound to a fresh home per module.

- ``home``: an initialised service home (``sandbox init``) for the test module.
- ``sandbox``: run ``sandbox <args>`` in-process against ``home``; returns the click result.
- ``os_user``: the operating-system user running the tests (the CLI's actor without ``--as``).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sandbox.cli import app

Run = Callable[..., Result]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh service home, initialised."""
    path = tmp_path_factory.mktemp("cli") / "home"
    result = CliRunner().invoke(app, ["--home", str(path), "init"])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def sandbox(home: Path) -> Run:
    """``sandbox --home <home> [--as ACTOR] <args>`` in-process (default: the OS user acts)."""
    runner = CliRunner()

    def run(*args: str, actor: str | None = None) -> Result:
        acting = ["--as", actor] if actor else []
        return runner.invoke(app, ["--home", str(home), *acting, *args])

    return run


@pytest.fixture(scope="session")
def os_user() -> str:
    """The OS user running the tests."""
    return getpass.getuser()
