"""Failed authentications and authorisation refusals as audit events, counted and rate-limited.

Every refusal is counted (``counts``, exported by ``/metrics``); at most ``limit`` per minute per
(event type, who, what) reach the audit chain, and the next recorded event carries how many were
left out (``suppressed``), so a flood of bad tokens cannot bloat the chain yet nothing goes unseen.
The limit is per process: several gateway processes each record up to ``limit``.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

from sandbox.audit.models import EventType

WINDOW = timedelta(minutes=1)
DEFAULT_LIMIT = 20


class RefusalLimiter:
    """Which refusals to record: ``admit`` says whether (and with how many suppressed before it)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self._windows: dict[tuple[str, str, str], tuple[datetime, int]] = {}
        self._suppressed: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def admit(self, type: EventType, who: str, what: str, now: datetime) -> int | None:
        """Count a refusal; the number suppressed since the last recorded one, or ``None`` to drop it."""
        key = (type.value, who, what)
        with self._lock:
            self.counts[type.value] += 1
            start, seen = self._windows.get(key, (now, 0))
            if now - start >= WINDOW:
                start, seen = now, 0
            self._windows[key] = (start, seen + 1)
            if seen >= self.limit:
                self._suppressed[key] += 1
                return None
            if len(self._windows) > 10_000:  # bounded memory under a flood of distinct keys
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < WINDOW}
            return self._suppressed.pop(key, 0)
