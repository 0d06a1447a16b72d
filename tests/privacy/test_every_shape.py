"""Every accepted query shape on hand-built adversarial neighbours (no randomness in the data).

``covering_shapes`` crosses each aggregate with each grouping mode and each WHERE family of the
whitelist (about 1,100 queries) on the adversarial pairs of ``privacy_pairs``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from privacy_check import check_pair
from privacy_pairs import PAIRS
from privacy_shapes import covering_shapes


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_every_shape_on_adversarial_neighbours(name: str, tmp_path: Path) -> None:
    """Each aggregate × grouping mode × WHERE family answers alike on D and D′."""
    pair, part, parts = PAIRS[name]
    report = check_pair(pair, tmp_path, covering_shapes(part, parts))
    for side, label in ((pair.d, "D"), (pair.d_prime, "D′")):
        assert side.error is None, f"{label} was not registered: {side.error and side.error.details}"
    assert report.answered > report.ran // 2, f"only {report.answered} of {report.ran} shapes answered"
    assert not report.problems, report.message(pair)
