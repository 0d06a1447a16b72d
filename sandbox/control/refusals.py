"""Failed authentications and authorisation refusals as audit events, counted and rate-limited.

Every refusal is counted (``counts``, exported by ``/metrics``); at most ``limit`` per minute per
(event type, who) and ``10 * limit`` per minute per event type reach the audit chain, and the next
recorded event of that caller carries how many were left out (``suppressed``), so a flood of bad
tokens cannot bloat the chain yet its size is seen. The limits are per process: several gateway
processes each record up to them.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

from sandbox.audit.models import EventType

WINDOW = timedelta(minutes=1)
DEFAULT_LIMIT = 20
MAX_KEYS = 10_000


class RefusalLimiter:
    """Which refusals to record: ``admit`` says whether (and with how many suppressed before it)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self._windows: dict[tuple[str, str], tuple[datetime, int]] = {}
        self._suppressed: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def admit(self, type: EventType, who: str, now: datetime) -> int | None:
        """Count a refusal; the number suppressed since the last recorded one, or ``None`` to drop it."""
        key = (type.value, who)
        with self._lock:
            self.counts[type.value] += 1
            if len(self._windows) > MAX_KEYS:  # bounded memory under a flood of distinct callers
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < WINDOW}
                if len(self._suppressed) > MAX_KEYS:
                    self._suppressed.clear()  # the totals stay in ``counts``
            if not self._within(key, self.limit, now) or not self._within(
                (type.value, ""), 10 * self.limit, now
            ):
                self._suppressed[key] += 1
                return None
            return self._suppressed.pop(key, 0)

    def _within(self, key: tuple[str, str], limit: int, now: datetime) -> bool:
        start, seen = self._windows.get(key, (now, 0))
        if now - start >= WINDOW:
            start, seen = now, 0
        self._windows[key] = (start, seen + 1)
        return seen < limit
