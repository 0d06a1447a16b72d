"""The neighbouring-dataset suite: no answer may depend on one person except through noise (issue 8).

What it checks. Each test registers D and D′ — the same table without and with one privacy unit —
in two catalogs under the same dataset name, runs the same queries on both through the library API
(``Engine.plan`` then ``Engine.execute``, as the gateway does) at a huge epsilon, and asserts what
docs/dp.md promises: the same outcome (answered, or the same error code and charge), the same
released keys (public keys; with partition selection, D′ keeps D's keys and adds only keys its unit
lifted over the threshold), the same column names, types and row counts, values apart by no more
than one unit plus noise, the same published column types, and no content digest in any answer.

Modules:

- ``privacy_data``: adversarial value pools, the metadata, writing CSV/Parquet sources, ``Pair``.
- ``privacy_shapes``: every accepted query shape (aggregate × grouping mode × WHERE family).
- ``privacy_compare``: running one query on a side, and ``compare`` (the invariant, one pair).
- ``privacy_check``: the pair check (catalogue view, every shape, digests).
- ``privacy_profile``: the Hypothesis profiles.
- ``test_neighbours``: the property (Hypothesis draws D, the added unit and the shapes).
- ``test_every_shape``: the full product of shapes on hand-built adversarial pairs.
- ``test_regressions``: one test per bug of issue 8 (1, 2, 3, 4), each on D vs D′.

Running it. ``make test`` runs it with the ``ci`` profile: a fixed, derandomised example budget
(the same examples every run). For long runs use the ``slow`` profile (random, 2,000 examples)::

    .venv/bin/pytest tests/privacy --slow
    SANDBOX_PRIVACY_PROFILE=slow make test      # the variable works for the whole suite

A failure prints the profile, D's distinct rows with their counts, the added unit's rows, each
query that differs and how, and Hypothesis's ``@reproduce_failure`` blob.
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
