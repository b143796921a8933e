"""Whether a store's writes work: the last write that failed and the last that succeeded.

Each backend notes its writes here (SQLite: commits that changed something, once synced;
Redis: scripts that ran) and every failure to reach or change the store; ``/readyz`` reads it.
A store is failing from a failed write until a write begun after it succeeds. Writes are
ordered by the ticket each takes when it begins, not by when its outcome is known: the sync
of a commit made before the disk filled up must not make the store look healthy again.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class WriteFailure:
    """The last failed write: when (epoch seconds) and why."""

    at: float
    reason: str


class WriteHealth:
    """Notes of one store's write outcomes; safe to call from the store's writer thread too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets = 0
        self._failed = 0  # ticket of the last failed write
        self._succeeded = 0  # ticket of the last successful write
        self._failure: WriteFailure | None = None
        self._probed_at = -math.inf  # monotonic
        self.last_success_at: float | None = None

    def ticket(self) -> int:
        """Take a ticket for a write about to begin (its place in the order of writes)."""
        with self._lock:
            self._tickets += 1
            return self._tickets

    def succeeded(self, ticket: int | None = None) -> None:
        """The write that took ``ticket`` (by default: one begun now) is durable."""
        ticket = ticket or self.ticket()
        with self._lock:
            if ticket > self._succeeded:
                self._succeeded = ticket
                self.last_success_at = time.time()

    def failed(self, reason: str, ticket: int | None = None) -> None:
        """The write that took ``ticket`` (or the sync that makes it durable) failed, or the
        store could not be reached."""
        ticket = ticket or self.ticket()
        with self._lock:
            if ticket > self._failed:
                self._failed = ticket
                self._failure = WriteFailure(time.time(), reason)

    @property
    def failure(self) -> WriteFailure | None:
        """The last failure while no write begun after it has succeeded; None when healthy."""
        with self._lock:
            return self._failure if self._failed > self._succeeded else None

    def probe_due(self, every: float) -> bool:
        """Whether a probe write is due (none in the last ``every`` seconds); if so, it is
        counted as made now, so that readiness checks close together share one."""
        now = time.monotonic()
        with self._lock:
            if now - self._probed_at < every:
                return False
            self._probed_at = now
            return True

    def describe(self) -> str | None:
        """What ``/readyz`` says of a failing store, e.g. ``last write failed 3 s ago: ...``."""
        failure = self.failure
        if failure is None:
            return None
        ago = max(0.0, time.time() - failure.at)
        return f"last write failed {ago:.0f} s ago: {failure.reason}"
