"""The Hypothesis settings of the neighbouring-dataset suite: a fixed budget in CI, a long one on demand.

``ci`` is derandomised (the same examples on every run, so CI is reproducible and its time is
fixed); ``slow`` explores (random seeds, many more examples). ``SANDBOX_PRIVACY_PROFILE`` picks
one (``--slow`` sets it, see ``conftest.py``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

PROFILES = {
    "ci": settings(
        max_examples=40,
        derandomize=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    ),
    "slow": settings(
        max_examples=2_000,
        derandomize=False,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    ),
}


def profile_name() -> str:
    """The selected profile: ``ci`` unless ``SANDBOX_PRIVACY_PROFILE`` names another."""
    name = os.environ.get("SANDBOX_PRIVACY_PROFILE", "ci")
    if name not in PROFILES:
        raise ValueError(f"SANDBOX_PRIVACY_PROFILE must be one of {sorted(PROFILES)}, not {name!r}")
    return name


def chosen(scale: float = 1.0) -> settings:
    """The selected profile, its example budget scaled by ``scale`` (for costlier properties)."""
    base = PROFILES[profile_name()]
    return settings(base, max_examples=max(1, int(base.max_examples * scale)))
