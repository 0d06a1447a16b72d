"""Fixtures and Hypothesis profiles of the neighbouring-dataset (privacy) suite.

Profiles (``privacy_profile.PROFILES``): ``ci`` by default, a fixed, derandomised example budget
that keeps this folder well under a minute; ``slow`` for long runs, chosen with
``pytest tests/privacy --slow`` or ``SANDBOX_PRIVACY_PROFILE=slow`` (the variable also works when
the whole suite runs, e.g. ``SANDBOX_PRIVACY_PROFILE=slow make test``).
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--slow``: the long Hypothesis profile of the neighbouring-dataset suite."""
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="run the neighbouring-dataset (privacy) suite with its long Hypothesis profile",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Select the profile before the test modules (which read it at import) are collected."""
    if config.getoption("--slow", default=False):
        os.environ["SANDBOX_PRIVACY_PROFILE"] = "slow"
