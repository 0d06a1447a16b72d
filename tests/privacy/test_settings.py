"""HAVING/ORDER BY/LIMIT, ``min_group_size``, the Gaussian mechanism and ``estimate`` on D vs D′.

``settings_shapes`` puts each post-release clause (on group keys, on noisy values, on an aggregate
released only to HAVING), two minimum group sizes (41: one more than D's large group, which the
added unit lifts over; 5: the group of NULLs) and the Gaussian mechanism on a count, a sum, a
variance and a median, in every grouping mode, on the adversarial pairs of ``privacy_pairs`` (a
third of the shapes on each pair, to keep the suite's time down). Every run also compares
``Engine.estimate`` on both sides with the plan's charge.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from privacy_check import check_pair
from privacy_pairs import PAIRS
from privacy_shapes import settings_shapes


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_settings_on_adversarial_neighbours(name: str, tmp_path: Path) -> None:
    """Post-release clauses, small-group suppression and the Gaussian mechanism answer alike."""
    pair = PAIRS[name][0]
    report = check_pair(pair, tmp_path, settings_shapes(sorted(PAIRS).index(name), len(PAIRS)))
    for side, label in ((pair.d, "D"), (pair.d_prime, "D′")):
        assert side.error is None, f"{label} was not registered: {side.error and side.error.details}"
    assert report.answered > report.ran * 3 // 4, f"only {report.answered} of {report.ran} shapes answered"
    assert not report.problems, report.message(pair)
