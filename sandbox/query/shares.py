"""How a query's (epsilon, delta) is shared among its noisy quantities (plan.py), and the check
that the calibrated losses, read from OpenDP's maps, fit it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sandbox.errors import InvalidRequest
from sandbox.query import mechanisms
from sandbox.query.mechanisms import Calibration


@dataclass(frozen=True)
class Shares:
    """How a query's (epsilon, delta) is shared among its quantities.

    Laplace (pure DP): every quantity gets epsilon / n. Gaussian: partition selection keeps its
    pure share and half of delta; the other quantities share equally the zCDP budget ``rho_total``
    that OpenDP's conversion maps to the remaining (epsilon, delta).
    """

    epsilon: float
    share: float
    selection_delta: float
    rho_total: float | None
    rho_share: float | None

    @classmethod
    def split(cls, mechanism: str, epsilon: float, delta: float, n: int, threshold: bool) -> Shares:
        share = epsilon / n
        if mechanism == "laplace":
            return cls(epsilon, share, delta, None, None)
        if delta <= 0:
            raise InvalidRequest("The Gaussian mechanism needs delta > 0 (e.g. 1e-7).", code="request.delta")
        selection_delta = delta / 2 if threshold else 0.0
        rest = n - 1 if threshold else n
        if rest == 0:
            return cls(epsilon, share, selection_delta, None, None)
        rho = mechanisms.rho_for(epsilon - share if threshold else epsilon, delta - selection_delta)
        return cls(epsilon, share, selection_delta, rho, rho / rest)

    @property
    def selection_epsilon(self) -> float:
        """Pure epsilon of partition selection."""
        return self.share

    def pure_epsilon(self, touched: int) -> float:
        """Epsilon of one pure-DP run (a quantile in one group) when it touches ``touched`` groups."""
        if self.rho_share is None:
            return self.share / touched
        return math.sqrt(2 * self.rho_share / touched)

    def additive(self, sensitivity: int) -> Calibration:
        """The additive-noise calibration of one integer quantity."""
        if self.rho_share is None:
            return mechanisms.integer_laplace(sensitivity, self.share)
        return mechanisms.integer_gaussian(sensitivity, self.rho_share)

    def check(self, planned: list[tuple[Calibration, int]], selection: Calibration | None) -> None:
        """Assert that the calibrated losses (from OpenDP's maps) fit the budget; ``planned``: each
        quantity's calibration and its runs per unit (the groups a quantile's unit can touch)."""
        pure = selection.epsilon or 0.0 if selection is not None else 0.0
        rho = 0.0
        for calibration, runs in planned:
            if calibration is selection:
                continue
            epsilon = calibration.epsilon or 0.0
            if self.rho_total is None:
                pure += runs * epsilon
            else:
                rho += calibration.rho or runs * epsilon**2 / 2
        if pure > (self.epsilon if self.rho_total is None else self.share) * (1 + 1e-9):
            raise AssertionError("plan exceeds its epsilon")  # pragma: no cover
        if self.rho_total is not None and rho > self.rho_total * (1 + 1e-9):
            raise AssertionError("plan exceeds its zCDP budget")  # pragma: no cover
