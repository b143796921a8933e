"""Deliveries accepted per destination per wall-clock minute, for the last few minutes.

The playground's "Deliveries" view draws this against the rate limit. It counts what this
replica delivered, as the ``aep_relay_deliveries_delivered`` counter does (and the limiter's
``current_rate_per_minute`` it is drawn against is this replica's view as well); the Grafana
dashboard sums the counter over replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MINUTES = 15


class DeliveredMinutes:
    """A ring of per-minute counts per destination; old minutes drop out as time moves on."""

    def __init__(self, minutes: int = MINUTES, clock: Callable[[], float] = time.time) -> None:
        self.minutes = minutes
        self._clock = clock
        self._counts: dict[str, dict[int, int]] = {}  # destination -> minute number -> count

    def delivered(self, destination: str) -> None:
        """Count one delivery the destination accepted, now."""
        minute = int(self._clock() // 60)
        counts = self._counts.setdefault(destination, {})
        counts[minute] = counts.get(minute, 0) + 1
        if len(counts) > self.minutes:
            for old in [m for m in counts if m <= minute - self.minutes]:
                del counts[old]

    def series(self, destination: str) -> list[int]:
        """The last ``minutes`` counts, oldest first; the last is the minute under way."""
        now = int(self._clock() // 60)
        counts = self._counts.get(destination, {})
        return [counts.get(minute, 0) for minute in range(now - self.minutes + 1, now + 1)]
