"""Noise scale by statistical tests that cannot flake.

OpenDP cannot be seeded, so every check is a bound with a documented false-failure probability:

- distribution: the Dvoretzky-Kiefer-Wolfowitz inequality, P(sup |F_n - F| > e) <= 2 exp(-2 n e^2),
  is exact for any n; with e chosen for ALPHA = 1e-9 the check fails by chance with probability
  below 1e-9 (a Kolmogorov-Smirnov test against the exact CDF, conservative for discrete laws);
- coverage and selection frequencies: Hoeffding's inequality, same form and same 1e-9;
- variance: the mean of squared noise (the mean is known to be 0) has variance (m4 - m2^2) / n
  exactly; it must lie within 7 of its standard deviations of the exact variance. Under the normal
  approximation (n >= 6,000 here) this fails with probability about 2.6e-12.

Bulk samples come from the calibrated OpenDP measurements directly (one call, many values); the
engine-level test reads 6,000 noisy cells of one GROUP BY release.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import duckdb
import pytest
from query_support import Registrar

from sandbox.catalog import Catalog
from sandbox.query import Engine, mechanisms
from sandbox.query.execute import lockdown_config
from sandbox.query.plan import Quantity
from sandbox.settings import Settings

ALPHA = 1e-9
SIGMAS = 7.0
DISCRETE_SAMPLES = 40_000


def deviation_bound(n: int) -> float:
    """DKW/Hoeffding half-width at confidence 1 - ALPHA for n samples."""
    return math.sqrt(math.log(2 / ALPHA) / (2 * n))


# -- the exact laws -----------------------------------------------------------------------------


def discrete_laplace_pmf(scale: float) -> Callable[[int], float]:
    """P(X = x) = (1 - p) / (1 + p) * p^|x| with p = exp(-1/scale) (OpenDP's discrete Laplace)."""
    p = math.exp(-1 / scale)
    return lambda x: (1 - p) / (1 + p) * p ** abs(x)


def discrete_laplace_variance(scale: float) -> float:
    """Var X = 2p / (1 - p)^2 (slightly below the continuous 2 * scale^2)."""
    p = math.exp(-1 / scale)
    return 2 * p / (1 - p) ** 2


def discrete_laplace_moment(scale: float, power: int) -> float:
    """E[X^power], summed until the tail is negligible."""
    pmf = discrete_laplace_pmf(scale)
    limit = int(80 * scale) + 10
    return sum(x**power * pmf(x) for x in range(-limit, limit + 1))


def discrete_laplace_cdf(scale: float) -> Callable[[int], float]:
    """P(X <= x) in closed form: the geometric tails of the pmf."""
    p = math.exp(-1 / scale)

    def cdf(x: int) -> float:
        if x < 0:
            return p ** (-x) / (1 + p)
        return 1 - p ** (x + 1) / (1 + p)

    return cdf


def assert_discrete_law(noise: Sequence[int], scale: float) -> None:
    """DKW distance to the exact CDF, and the variance within 7 standard deviations."""
    n = len(noise)
    cdf = discrete_laplace_cdf(scale)
    counts: dict[int, int] = {}
    for value in noise:
        counts[value] = counts.get(value, 0) + 1
    seen = 0
    distance = 0.0
    for value in sorted(counts):
        distance = max(distance, abs(seen / n - cdf(value - 1)))
        seen += counts[value]
        distance = max(distance, abs(seen / n - cdf(value)))
    assert distance <= deviation_bound(n), f"KS distance {distance:.4f} to discrete Laplace({scale})"

    variance = discrete_laplace_variance(scale)
    spread = math.sqrt((discrete_laplace_moment(scale, 4) - variance**2) / n)
    observed = sum(v * v for v in noise) / n
    assert abs(observed - variance) <= SIGMAS * spread, (observed, variance, spread)


def assert_discrete_coverage(noise: Sequence[int], scale: float, ci95: float) -> None:
    """About 95% of |noise| is within the reported half-width: the exact rate, +- Hoeffding."""
    pmf = discrete_laplace_pmf(scale)
    width = math.floor(ci95)
    exact = sum(pmf(x) for x in range(-width, width + 1))
    assert exact >= 0.95  # OpenDP's half-width covers at least 95% ...
    assert sum(pmf(x) for x in range(-width + 1, width)) < 0.95  # ... and is the smallest that does
    covered = sum(abs(v) <= ci95 for v in noise) / len(noise)
    assert abs(covered - exact) <= deviation_bound(len(noise))


@pytest.mark.parametrize(("sensitivity", "epsilon"), [(1, 0.5), (3, 1.0), (1, 2.0)])
def test_discrete_laplace_scale(sensitivity: int, epsilon: float) -> None:
    """Counts and sums get discrete Laplace noise of scale sensitivity / epsilon."""
    calibration = mechanisms.integer_laplace(sensitivity, epsilon)
    assert calibration.scale == pytest.approx(sensitivity / epsilon, rel=1e-9)
    noise = mechanisms.release_integers(calibration, [0] * DISCRETE_SAMPLES)
    assert_discrete_law(noise, calibration.scale)
    ci95 = calibration.ci95()
    assert ci95 is not None
    assert_discrete_coverage(noise, calibration.scale, ci95)


def test_release_adds_noise_to_the_exact_value() -> None:
    """Released integers are the exact values plus centred noise (not noise alone, not shifted)."""
    calibration = mechanisms.integer_laplace(1, 1.0)
    values = mechanisms.release_integers(calibration, [1_000_000] * 10_000)
    mean = sum(values) / len(values)
    spread = math.sqrt(discrete_laplace_variance(calibration.scale) / len(values))
    assert abs(mean - 1_000_000) <= SIGMAS * spread


def test_vectors_sharing_a_calibration_get_independent_noise_of_their_own_law() -> None:
    """Vectors joined into one OpenDP invocation come back in order, each element with its own
    calibration's noise: the shared-calibration vectors' noise follows that law, the other's too."""
    shared = mechanisms.integer_laplace(1, 1.0)
    other = mechanisms.integer_laplace(3, 0.5)
    half = DISCRETE_SAMPLES // 2
    first, wide, second, empty = mechanisms.release_integer_vectors(
        [(shared, [0] * half), (other, [1_000_000] * half), (shared, [5] * half), (shared, [])]
    )
    assert (len(first), len(wide), len(second), empty) == (half, half, half, [])
    assert_discrete_law(first + [v - 5 for v in second], shared.scale)
    assert_discrete_law([v - 1_000_000 for v in wide], other.scale)


def test_partition_selection_noise_and_threshold() -> None:
    """Kept keys carry discrete Laplace noise; a key a single unit creates is almost never kept."""
    calibration = mechanisms.laplace_threshold(1, 1.0, 1e-6)
    assert calibration.threshold is not None
    big = {f"k{i}": 1_000_000 for i in range(20_000)}
    released = mechanisms.release_thresholded(calibration, big)
    assert set(released) == set(big)
    assert_discrete_law([v - 1_000_000 for v in released.values()], calibration.scale)
    # a key holding one unit's row is kept with probability P(1 + noise >= threshold) <= delta
    lonely = mechanisms.release_thresholded(calibration, {f"u{i}": 1 for i in range(20_000)})
    assert len(lonely) <= 4  # expected 20,000 * 1.6e-6 = 0.03; P(more than 4) < 1e-9


def test_noisy_max_selection_probability() -> None:
    """Quantile selection (permute-and-flip = noisy max with exponential noise): of two candidates
    whose scores differ by d, the worse one wins with probability exp(-d / scale) / 2.
    """
    calibration = mechanisms.noisy_max(1, 1.0)
    gap = 2
    trials = 3_000
    worse = sum(mechanisms.release_argmin(calibration, [0, gap]) == 1 for _ in range(trials))
    expected = 0.5 * math.exp(-gap / calibration.scale)
    assert abs(worse / trials - expected) <= deviation_bound(trials)
    clear = [mechanisms.release_argmin(calibration, [40, 0, 40]) for _ in range(200)]
    assert clear.count(1) >= 190  # each miss has probability exp(-20) / 2 at most


def test_engine_release_noise(catalog: Catalog, shared: Registrar) -> None:
    """6,000 noisy sums of one GROUP BY over public keys: noise = released - exact follows the plan's
    discrete Laplace, and the reported ci95 covers it at the exact rate.
    """
    shared("diabetes_130")
    engine = Engine(catalog, Settings())
    sql = (
        "SELECT admission_type_id, discharge_disposition_id, admission_source_id, "
        "SUM(time_in_hospital) AS days FROM encounters "
        "GROUP BY admission_type_id, discharge_disposition_id, admission_source_id"
    )
    plan = engine.plan("diabetes_130", sql, 1.0)
    (planned,) = plan.quantities
    assert planned.quantity is Quantity.SUM
    assert planned.calibration.sensitivity == 5 * 14
    result = engine.execute(plan)
    assert len(result.rows) == 8 * 30 * 25

    settings = Settings()
    path = catalog.database_path("diabetes_130")
    config = lockdown_config(settings.duckdb_memory_limit, settings.duckdb_threads)
    with duckdb.connect(str(path), read_only=True, config=config) as connection:
        exact = {
            (a, b, c): int(total)
            for a, b, c, total in connection.execute(
                "SELECT admission_type_id, discharge_disposition_id, admission_source_id, "
                'sum("time_in_hospital__clamped") FROM encounters GROUP BY ALL'
            ).fetchall()
        }
    noise = [int(days) - exact.get((a, b, c), 0) for a, b, c, days in result.rows]
    assert_discrete_law(noise, planned.calibration.scale)
    (accuracy,) = result.accuracy
    ci95 = accuracy.ci95[0]
    assert ci95 is not None
    assert set(accuracy.ci95) == {ci95}
    assert ci95 == pytest.approx(planned.calibration.ci95())
    assert_discrete_coverage(noise, planned.calibration.scale, ci95)
