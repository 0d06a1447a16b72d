"""Who is acting: users with roles, analysts belonging to an organisation."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Roles a user can hold (several at once)."""

    ANALYST = "analyst"  # member of an authorised organisation; queries
    OWNER = "owner"  # data owner: registers datasets, decides access to their own datasets
    OPERATOR = "operator"  # runs the service: audit, usage, everything read-only
    METRICS = "metrics"  # scrape-only: reads /metrics and nothing else (Prometheus)


@dataclass(frozen=True)
class Principal:
    """An authenticated user as the product sees it.

    ``organisation`` is the analyst's company (budgets are shared per organisation); for an owner it is
    the owning body named in dataset metadata (``owner:``). ``via`` says how the system verified
    who acts when it is not a token: ``os:<user>`` for the operating-system user running the CLI.
    """

    name: str
    roles: frozenset[Role]
    organisation: str | None = None
    via: str | None = None

    def has(self, role: Role) -> bool:
        """Whether the principal holds ``role``."""
        return role in self.roles
