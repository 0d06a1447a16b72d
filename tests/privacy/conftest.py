"""The neighbouring-dataset suite: no answer may depend on one person except through noise (issue 8).

What it checks. Each test registers D and D′ — the same table without and with one privacy unit —
in two catalogs under the same dataset name, runs the same queries on both through the library API
(``Engine.plan`` then ``Engine.execute``, as the gateway does) at a huge epsilon, and asserts what
docs/dp.md promises: the same outcome (answered, or the same error code and charge), the same
estimate (equal to the charge), the same released keys (public keys; with partition selection, D′
keeps D's keys and adds only keys its unit lifted over the threshold; HAVING, ORDER BY and LIMIT on
noisy values and ``min_group_size`` may differ only by what one unit's move across an edge
explains, with the same row count where no HAVING reads values), the same column names, types and
row counts, values apart by no more than one unit plus noise, the same published column types, and
no content digest in any answer. ``test_ledger`` does the same through ``QueryPipeline`` with a real
``ControlPlane`` on SQLite and compares the ledger.

Modules:

- ``privacy_data``: adversarial value pools, the metadata, writing CSV/Parquet sources, ``Pair``.
- ``privacy_pairs``: the hand-built adversarial pairs.
- ``privacy_shapes``: every accepted query shape (aggregate × grouping mode × WHERE family) and the
  settings around it (``Post``: HAVING/ORDER BY/LIMIT; ``min_group_size``; the Gaussian mechanism).
- ``privacy_values``: key identity, noise widths and one unit's reach of a released value.
- ``privacy_post``: which rows each side may release (keys, post-release clauses, suppression).
- ``privacy_compare``: running one query on a side, and ``compare`` (the invariant, one pair).
- ``privacy_check``: the pair check (catalogue view, every shape, digests).
- ``privacy_profile``: the Hypothesis profiles.
- ``test_neighbours``: the property (Hypothesis draws D, the added unit and the shapes with their
  settings).
- ``test_every_shape``: the full product of shapes on the hand-built adversarial pairs.
- ``test_settings``: post-release clauses, ``min_group_size``, Gaussian and estimate on those pairs.
- ``test_ledger``: the charge recorded by the real pipeline and ledger, on two of those pairs.
- ``test_regressions``: one test per bug of issue 8 (1, 2, 3, 4), each on D vs D′.
- ``privacy_joins``: datasets with ``people``, ``visits`` and a public lookup, and the join shapes
  (inner and left joins on the unit, the lookup join, with owner and analyst clamps).
- ``test_join_neighbours``: the property for joins (Hypothesis draws both tables and the added
  unit), and a fixed pair.
- ``test_issue12_shapes``: histogram bins and conditional aggregates on the hand-built pairs.

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
