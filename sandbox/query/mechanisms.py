"""The only module that imports OpenDP: calibrate, account and sample every noisy release.

Each calibration builds the OpenDP measurement for a sensitivity and a scale and takes the privacy
loss from the measurement's own privacy map (``map(d_in)``); the scale is widened until the map
is within the epsilon share. Noise is drawn by OpenDP only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from opendp import accuracy, combinators, domains, measurements, measures, metrics
from opendp.mod import Measurement, OpenDPException, enable_features

from sandbox.errors import InvalidRequest

enable_features("contrib")

INT64_LIMIT = 2**62
CONFIDENCE_ALPHA = 0.05


@dataclass(frozen=True)
class Calibration:
    """A calibrated mechanism: what it is, its input sensitivity, its scale and its privacy loss."""

    mechanism: str
    sensitivity: float
    scale: float
    epsilon: float | None
    delta: float = 0.0
    threshold: int | None = None
    rho: float | None = None
    measurement: Measurement = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def ci95(self) -> float | None:
        """Half-width of the 95% confidence interval of one noisy value (None if not additive)."""
        return _ci95(self.mechanism, self.scale)

    def public(self) -> dict[str, Any]:
        """JSON-ready description (no measurement object)."""
        return {
            "mechanism": self.mechanism,
            "sensitivity": self.sensitivity,
            "scale": self.scale,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "threshold": self.threshold,
            "rho": self.rho,
        }


@lru_cache(maxsize=4096)
def _ci95(mechanism: str, scale: float) -> float | None:
    """OpenDP's 95% accuracy of an additive mechanism at ``scale``."""
    if mechanism in ("discrete_laplace", "laplace_threshold"):
        # OpenDP returns -inf when the noise is almost surely 0 (tiny scales): the CI is then 0.
        return max(0.0, float(accuracy.discrete_laplacian_scale_to_accuracy(scale, CONFIDENCE_ALPHA)))
    if mechanism == "discrete_gaussian":
        return float(accuracy.discrete_gaussian_scale_to_accuracy(scale, CONFIDENCE_ALPHA))
    return None


def _widen_until(make: Any, d_in: Any, scale: float, fits: Any) -> tuple[Measurement, float]:
    """Build ``make(scale)``; widen the scale by tiny steps until ``fits(map(d_in))``."""
    for _ in range(64):
        measurement = make(scale)
        if fits(measurement.map(d_in)):
            return measurement, scale
        scale = math.nextafter(scale, math.inf) * (1 + 1e-12)
    raise AssertionError("calibration did not converge")  # pragma: no cover


@lru_cache(maxsize=4096)
def integer_laplace(sensitivity: int, epsilon: float) -> Calibration:
    """Discrete Laplace on a vector of integers with the given L1 sensitivity."""
    domain = domains.vector_domain(domains.atom_domain(T="i64"))
    metric = metrics.l1_distance(T="i64")

    def make(scale: float) -> Measurement:
        return measurements.make_laplace(domain, metric, scale=scale)

    measurement, scale = _widen_until(make, sensitivity, sensitivity / epsilon, lambda eps: eps <= epsilon)
    return Calibration(
        "discrete_laplace", sensitivity, scale, float(measurement.map(sensitivity)), measurement=measurement
    )


@lru_cache(maxsize=1024)
def laplace_threshold(max_rows: int, epsilon: float, delta: float) -> Calibration:
    """Laplace noise on per-key counts plus a threshold: releases only keys that clear it.

    A unit changes at most ``max_rows`` keys (l0), by at most ``max_rows`` in all (l1) and in any
    one key (linf). The scale is widened until the map's epsilon fits (as for the other
    mechanisms); the threshold is then the smallest one whose privacy map meets ``delta``.
    """
    domain = domains.map_domain(domains.atom_domain(T=str), domains.atom_domain(T="i64"))
    metric = metrics.l01inf_distance(metrics.absolute_distance(T="i64"))
    d_in = (max_rows, max_rows, max_rows)

    def make_with(threshold: int, scale: float) -> Measurement:
        return measurements.make_laplace_threshold(domain, metric, scale=scale, threshold=threshold)

    _, scale = _widen_until(
        lambda s: make_with(max_rows, s), d_in, max_rows / epsilon, lambda loss: loss[0] <= epsilon
    )

    def make(threshold: int) -> Measurement:
        return make_with(threshold, scale)

    def fits(threshold: int) -> bool:
        eps, dlt = make(threshold).map(d_in)
        return bool(eps <= epsilon and dlt <= delta)

    low, high = max_rows, max_rows * 2
    while not fits(high):
        if high > INT64_LIMIT // 4:
            raise InvalidRequest(
                f"delta {delta:g} is too small to select groups privately; pass a larger delta (e.g. 1e-6).",
                code="request.delta",
            )
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    measurement = make(high)
    eps, dlt = measurement.map(d_in)
    return Calibration(
        "laplace_threshold", max_rows, scale, float(eps), float(dlt), threshold=high, measurement=measurement
    )


@lru_cache(maxsize=1024)
def noisy_max(sensitivity: int, epsilon: float) -> Calibration:
    """Report-noisy-max (exponential mechanism) over integer scores, lowest score wins."""
    domain = domains.vector_domain(domains.atom_domain(T="u64"))
    metric = metrics.linf_distance(T="u64")

    def make(scale: float) -> Measurement:
        return measurements.make_noisy_max(
            domain, metric, measures.max_divergence(), scale=scale, negate=True
        )

    measurement, scale = _widen_until(
        make, sensitivity, 2 * sensitivity / epsilon, lambda eps: eps <= epsilon
    )
    return Calibration(
        "noisy_max", sensitivity, scale, float(measurement.map(sensitivity)), measurement=measurement
    )


@lru_cache(maxsize=4096)
def integer_gaussian(sensitivity: int, rho: float) -> Calibration:
    """Discrete Gaussian on a vector of integers with the given L2 sensitivity (zCDP ``rho``)."""
    domain = domains.vector_domain(domains.atom_domain(T="i64"))
    metric = metrics.l2_distance(T="i64")

    def make(scale: float) -> Measurement:
        return measurements.make_gaussian(domain, metric, scale=scale)

    measurement, scale = _widen_until(
        make, sensitivity, sensitivity / math.sqrt(2 * rho), lambda loss: loss <= rho
    )
    return Calibration(
        "discrete_gaussian",
        sensitivity,
        scale,
        None,
        rho=float(measurement.map(sensitivity)),
        measurement=measurement,
    )


def epsilon_of_rho(rho: float, delta: float) -> float:
    """(epsilon, delta)-DP epsilon of a rho-zCDP release, by OpenDP's own conversion."""
    proxy = measurements.make_gaussian(
        domains.atom_domain(T=float, nan=False),
        metrics.absolute_distance(T=float),
        scale=1 / math.sqrt(2 * rho),
    )
    converted = combinators.make_fix_delta(combinators.make_zCDP_to_approxDP(proxy), delta)
    return float(converted.map(1.0)[0])


@lru_cache(maxsize=1024)
def rho_for(epsilon: float, delta: float) -> float:
    """The largest zCDP rho whose (epsilon, delta) conversion stays within ``epsilon``.

    OpenDP's conversion overflows for very large epsilon (about 1e5 and up): that is refused as a
    request error, the same for any data, rather than failing as an internal error.
    """
    low, high = 0.0, epsilon
    try:
        while epsilon_of_rho(high, delta) <= epsilon:
            low, high = high, high * 2
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if epsilon_of_rho(middle, delta) <= epsilon else (low, middle)
    except OpenDPException:
        raise InvalidRequest(
            f"epsilon {epsilon:g} is too large for the Gaussian mechanism; ask for less.",
            code="request.epsilon",
        ) from None
    return low


def release_integers(calibration: Calibration, values: Sequence[int]) -> list[int]:
    """Noisy copies of exact integer aggregates (saturated to the int64 range first)."""
    return release_integer_vectors([(calibration, values)])[0]


def release_integer_vectors(requests: Sequence[tuple[Calibration, Sequence[int]]]) -> list[list[int]]:
    """Noisy copies of several vectors: one OpenDP invocation per distinct calibration.

    Each element gets independent noise from its vector's measurement, so joining the vectors
    that share a calibration into one invocation releases exactly what separate invocations
    would (each vector's privacy loss is accounted by the plan); it saves OpenDP's per-call cost.
    """
    joined: dict[Calibration, list[int]] = {}
    for calibration, values in requests:
        joined.setdefault(calibration, []).extend(max(-INT64_LIMIT, min(INT64_LIMIT, int(v))) for v in values)
    noisy = {calibration: iter(calibration.measurement(values)) for calibration, values in joined.items()}
    return [[int(next(noisy[calibration])) for _ in values] for calibration, values in requests]


def release_thresholded(calibration: Calibration, counts: dict[str, int]) -> dict[str, int]:
    """Noisy counts of the keys that clear the threshold; the others are dropped."""
    return {str(k): int(v) for k, v in calibration.measurement(counts).items()}


def release_argmin(calibration: Calibration, scores: Sequence[int]) -> int:
    """Index of the (noisily) lowest score."""
    return int(calibration.measurement([int(s) for s in scores]))
