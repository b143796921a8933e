"""A destination's circuit breaker: during an outage, one probe per interval instead of the backlog.

``closed`` (sending as the rate limit allows) → ``open`` after ``failures`` outage answers in a
row (timeouts, connection errors, ``5xx``); while open nothing is sent until the probe time,
then one delivery goes out as a probe (``half_open``); its success closes the circuit, its
failure opens it again for another interval. A probe that never answers (given back unsent, or
a crashed send) does not wedge it: another is let through one interval later.

Throttling (``429``) is the rate limiter's business and moves nothing here; any other answer,
a ``4xx`` rejection included, shows the destination is up and counts as a success. Each process
keeps its own breakers: with replicas, each one finds out about an outage by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("app.delivery")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)
OUTAGE_CODES = frozenset({"timeout", "destination_unavailable"})
"""Problem codes that count as failures: the destination could not be reached or is down."""
THROTTLED = "rate_limited"


class CircuitBreaker:
    """One destination's breaker (see the module docstring); ``failures=0`` keeps it closed.

    The dispatcher asks :meth:`wait` and :meth:`allowed` before it leases, tells :meth:`leased`
    how many it leased, and :meth:`record` after every send. ``clock`` is monotonic (timing),
    ``wall`` gives the epoch times reported in ``since``.
    """

    def __init__(
        self,
        destination: str,
        failures: int,
        probe_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if failures < 0:
            raise ValueError("failures must not be negative")
        if not probe_seconds > 0.0:
            raise ValueError("probe_seconds must be positive")
        self.destination = destination
        self._threshold = failures
        self._probe_seconds = probe_seconds
        self._clock = clock
        self._wall = wall
        self._state = CLOSED
        self._failures = 0  # outage answers in a row
        self._next_probe = 0.0  # monotonic time the next probe may go (open / half-open)
        self._since = wall()

    @property
    def state(self) -> str:
        return self._state

    @property
    def since(self) -> float:
        """Epoch time the circuit opened (its probes do not move it), or last closed."""
        return self._since

    def wait(self) -> float:
        """Seconds until a send may go: 0 when closed or when a probe is due."""
        if self._state == CLOSED:
            return 0.0
        return max(0.0, self._next_probe - self._clock())

    def allowed(self, wanted: int) -> int:
        """How many deliveries to lease now: ``wanted`` when closed, one when a probe is due, else 0."""
        if self._state == CLOSED:
            return wanted
        return 1 if self.wait() == 0.0 else 0

    def leased(self, count: int) -> None:
        """``count`` deliveries were leased to send: while not closed, the first is the probe."""
        if self._state == CLOSED or count <= 0:
            return
        self._state = HALF_OPEN
        self._next_probe = self._clock() + self._probe_seconds

    def record(self, code: str | None) -> None:
        """A send's outcome: ``None`` when delivered, else its problem code."""
        if code == THROTTLED:
            return
        if code in OUTAGE_CODES:
            self._failed(code)
        else:
            self._answered()

    def snapshot(self) -> dict[str, str | float]:
        """What ``/readyz`` and the admin API show: ``state`` and ``since`` (epoch seconds)."""
        return {"state": self._state, "since": self._since}

    def _failed(self, code: str) -> None:
        self._failures += 1
        if self._threshold == 0:
            return
        if self._state == HALF_OPEN:  # the probe failed
            self._state = OPEN
            self._next_probe = self._clock() + self._probe_seconds
        elif self._state == CLOSED and self._failures >= self._threshold:
            self._state = OPEN
            self._next_probe = self._clock() + self._probe_seconds
            self._since = self._wall()
            log.warning(
                "circuit_opened",
                destination=self.destination,
                failures=self._failures,
                code=code,
                probe_seconds=self._probe_seconds,
            )

    def _answered(self) -> None:
        self._failures = 0
        if self._state != CLOSED:
            self._state = CLOSED
            opened = self._since
            self._since = self._wall()
            log.info(
                "circuit_closed", destination=self.destination, open_seconds=round(self._since - opened, 3)
            )
