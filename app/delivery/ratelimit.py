"""Per-destination request pacing for the Zendesk and Yotpo APIs.

Zendesk caps Events/Profiles API calls per account per minute (``X-Rate-Limit``), Yotpo at
5 requests per second per store; both answer ``429`` once the cap is exceeded.
:class:`AdaptiveRateLimiter` keeps one process's sends to one destination account under that
cap: it paces grants evenly, catches up after a stall by at most ``MAX_CATCH_UP_SECONDS`` of
slots, never grants more than the ceiling (times ``safety``) in any 60 s nor more than
:func:`burst_cap` in any second, slows down on throttling signals and climbs back linearly.
:class:`RateLimiter` is the protocol the Redis-backed limiter implements too.

The 60 s window counts a request from its grant until 60 s after its answer (``finished``), not
60 s after its grant. A request reaches the destination somewhere between the two, so any 60 s
of arrivals, however late some requests arrive (a busy event loop, new connections, a slow
network), holds at most the cap: when the last request of such a span was granted, every other
one in it had been granted and had not been answered for 60 s yet, so the cap counted it. A
per-second limit is kept the same way, in a one-second window.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

DEFAULT_RETRY_AFTER_SECONDS = 10.0
"""Pause applied on a 429 that carries no usable ``Retry-After``."""

MIN_RATE_PER_MINUTE = 1.0
"""Decreases never push the rate below this, so a stream of 429s cannot stall the pacer forever."""

MAX_CATCH_UP_SECONDS = 3.0
"""How far ahead of its slot a grant may come, so the slots a stall lost are made up.

A pacer that spaces grants from the actual time of the previous one loses every stall for good:
a process kept off the CPU for 300 ms (a throttled container, a busy host) sends that much less,
and on a loaded two-core machine that was half the rate. The 60 s window cap (:func:`window_cap`),
not this allowance, is what keeps the account's limit."""

WINDOW_SECONDS = 60.0

BURST_WINDOW_SECONDS = 1.0
"""The span of the burst bound: no one second holds more than :func:`burst_cap` grants."""

MAX_FLIGHT_SECONDS = 300.0
"""A granted request not reported ``finished`` after this long (its task died) stops counting
as in flight; every send has timeouts far below it."""


def window_cap(ceiling_per_minute: float, safety: float) -> int:
    """Most requests in any 60 s window: the ceiling times the safety margin (at least one)."""
    return max(1, math.floor(ceiling_per_minute * safety))


def burst_cap(ceiling_per_minute: float, safety: float, per_second: float | None) -> int:
    """Most grants in any one second (``BURST_WINDOW_SECONDS``), so the catch-up allowance
    never turns into a burst.

    With a vendor limit per second: that limit (or a second's worth of the ceiling, if a header
    lowered it below), counted like the 60 s window from each grant until one second after its
    answer, so that no second of arrivals holds more. Without one: one more than the whole
    requests a second holds at the paced rate (5 at 250 or 300 a minute), counted by grant:
    a stall's lost slots are still made up, a few a second."""
    if per_second is not None:
        return max(1, math.floor(min(per_second, ceiling_per_minute / 60.0)))
    return math.floor(ceiling_per_minute * safety / 60.0) + 1


def window_due(
    answered: Sequence[float], in_flight: int, cap: int, now: float, window: float = WINDOW_SECONDS
) -> float:
    """When the window next has room for a grant: ``answered`` holds the answer times of (at
    least) the last ``window`` seconds, oldest first; ``in_flight`` counts the granted requests
    not answered yet.

    Just after the ``window``, so that no closed window of that length holds more than ``cap``.
    With ``cap`` requests in flight, not before ``window`` from now (ask again then)."""
    room = cap - in_flight
    if len(answered) < room:
        return -math.inf
    edge = answered[len(answered) - room] if room > 0 else now
    return math.nextafter(edge + window, math.inf)


class RateLimiter(Protocol):
    """Admission control for requests to one destination account."""

    async def acquire(self, max_tokens: int = 1) -> int:
        """Wait until a send is allowed, take up to ``max_tokens`` allowed now; return how many (>= 1)."""
        ...

    def on_response(
        self,
        *,
        status: int,
        retry_after: float | None,
        limit_per_minute: int | None,
        remaining: int | None,
    ) -> None:
        """Feedback from every upstream answer; ``status`` 0 (transport error) is ignored."""
        ...

    def finished(self) -> None:
        """A granted request has its answer (or failed): it counts in the 60 s window from now.

        Called once per grant, whatever the outcome."""
        ...

    @property
    def current_rate_per_minute(self) -> float:
        """The rate grants are paced at right now."""
        ...

    @property
    def paused_until(self) -> float:
        """Monotonic time until which no grant is made; 0 when not paused."""
        ...


class AdaptiveRateLimiter:
    """In-process pacer (GCRA with a 60 s window cap and a one-second burst cap), multiplicative
    decrease, linear recovery.

    Grants follow a schedule with one slot every ``60 / effective_rate`` seconds. A grant may come up
    to ``max_catch_up`` seconds ahead of its slot (GCRA), so slots lost to a stalled event loop are
    made up, or a few are used at once after an idle spell; never while :func:`window_cap`
    requests are in flight or were answered in the last 60 s, so every 60 s window stays within
    the ceiling whatever the stalls and delays (module docstring); and never beyond
    :func:`burst_cap` in one second (``max_burst`` overrides it), so a vendor's limit per second
    (``per_second``) holds too and the catch-up comes a few a second, not all at once. After a
    pause there is no catching up: grants resume one interval apart. :meth:`acquire` grants
    exactly one token whatever ``max_tokens`` is; :meth:`finished` must follow each grant.

    ``effective_rate = min(ceiling, current) * safety`` where ``ceiling`` is the configured rate,
    lowered to the latest ``X-Rate-Limit`` seen if that is smaller. ``current`` is multiplied by
    ``decrease_factor`` on a 429 (or a 503 with ``Retry-After``) and on a 2xx with
    ``X-Rate-Limit-Remaining: 0``, then climbs back linearly to ``ceiling`` over ``recovery_seconds``.

    Waiters are served in FIFO order (an :class:`asyncio.Lock`); a cancelled waiter takes no slot.
    """

    def __init__(
        self,
        rate_per_minute: int,
        *,
        safety: float = 0.98,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        recovery_seconds: float = 60.0,
        decrease_factor: float = 0.8,
        max_catch_up: float = MAX_CATCH_UP_SECONDS,
        per_second: float | None = None,
        max_burst: int | None = None,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        if per_second is not None and not per_second > 0.0:
            raise ValueError("per_second must be positive")
        if max_burst is not None and max_burst < 1:
            raise ValueError("max_burst must be >= 1")
        if not 0.0 < safety <= 1.0:
            raise ValueError("safety must be in (0, 1]")
        if not recovery_seconds > 0.0:
            raise ValueError("recovery_seconds must be positive")
        if not 0.0 < decrease_factor < 1.0:
            raise ValueError("decrease_factor must be in (0, 1)")
        if max_catch_up < 0.0:
            raise ValueError("max_catch_up must not be negative")
        self._configured = float(rate_per_minute)
        self._ceiling = self._configured
        self._safety = safety
        self._clock = clock
        self._sleep = sleep
        self._recovery = recovery_seconds
        self._decrease = decrease_factor
        self._cooldown = recovery_seconds / 10.0
        self._low: float | None = None  # rate just after the last decrease; None = fully recovered
        self._decreased_at = -math.inf
        self._paused_until = 0.0
        self._max_catch_up = max_catch_up
        self._per_second = per_second
        self._max_burst = max_burst
        self._slot = -math.inf  # the schedule's next slot (GCRA's theoretical arrival time)
        self._answered: deque[float] = deque()  # answer times of the last 60 s
        self._in_flight: deque[float] = deque()  # grant times of requests not answered yet
        self._granted: deque[float] = deque()  # grant times of the last second (no per_second)
        self._lock = asyncio.Lock()

    # -- introspection -------------------------------------------------------------------------

    @property
    def current_rate_per_minute(self) -> float:
        """Effective rate right now: ``min(ceiling, current) * safety``."""
        return self._rate(self._clock()) * self._safety

    @property
    def ceiling_per_minute(self) -> float:
        """Configured rate, lowered by a smaller ``X-Rate-Limit`` header (before ``safety``)."""
        return self._ceiling

    @property
    def paused_until(self) -> float:
        """Monotonic time until which grants are paused; 0 when not paused."""
        return self._paused_until if self._paused_until > self._clock() else 0.0

    @property
    def per_second(self) -> float | None:
        """The vendor's limit per second this limiter keeps; None when it has none."""
        return self._per_second

    @property
    def burst(self) -> int:
        """Most grants in any one second right now (:func:`burst_cap`, or ``max_burst``)."""
        if self._max_burst is not None:
            return self._max_burst
        return burst_cap(self._ceiling, self._safety, self._per_second)

    # -- pacing --------------------------------------------------------------------------------

    async def acquire(self, max_tokens: int = 1) -> int:
        """Wait for the next slot and take it; always returns 1 (see the class docstring)."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        async with self._lock:
            while True:
                now = self._clock()
                interval = 60.0 / (self._rate(now) * self._safety)
                answered, in_flight = self._answered, self._in_flight
                while answered and answered[0] <= now - WINDOW_SECONDS:
                    answered.popleft()
                while in_flight and in_flight[0] <= now - MAX_FLIGHT_SECONDS:
                    in_flight.popleft()
                due = max(
                    self._paused_until,
                    self._slot - self._max_catch_up,
                    window_due(answered, len(in_flight), window_cap(self._ceiling, self._safety), now),
                    self._burst_due(now),
                )
                if now >= due:
                    break
                # Re-check after waking: a pause or a lower rate may have arrived meanwhile.
                await self._sleep(due - now)
            self._in_flight.append(now)
            if self._per_second is None:
                self._granted.append(now)
            # Just after a pause the schedule restarts one interval at a time: no catching up.
            self._slot = max(self._slot, now, self._paused_until + self._max_catch_up) + interval
        return 1

    def _burst_due(self, now: float) -> float:
        """When the last second next has room for a grant (see :func:`burst_cap`)."""
        if self._per_second is not None:  # arrivals: from each grant until 1 s after its answer
            return window_due(self._answered, len(self._in_flight), self.burst, now, BURST_WINDOW_SECONDS)
        granted = self._granted
        while granted and granted[0] <= now - BURST_WINDOW_SECONDS:
            granted.popleft()
        return window_due(granted, 0, self.burst, now, BURST_WINDOW_SECONDS)

    def finished(self) -> None:
        """A granted request has its answer (or failed): it counts in the window from now."""
        if self._in_flight:  # which grant does not matter: each counts the same
            self._in_flight.popleft()
            self._answered.append(self._clock())

    # -- feedback ------------------------------------------------------------------------------

    def on_response(
        self,
        *,
        status: int,
        retry_after: float | None,
        limit_per_minute: int | None,
        remaining: int | None,
    ) -> None:
        """Adapt to an upstream answer (headers already parsed; ``None`` when absent)."""
        if status == 0:
            return
        now = self._clock()
        if limit_per_minute is not None and limit_per_minute > 0:
            self._ceiling = min(self._configured, float(limit_per_minute))
        if status == 429 or (status == 503 and retry_after is not None):
            delay = retry_after
            if delay is None or not math.isfinite(delay):
                delay = DEFAULT_RETRY_AFTER_SECONDS
            # 429s answering requests sent before the pause began are echoes of the same overload.
            already_paused = now < self._paused_until
            self._paused_until = max(self._paused_until, now + max(0.0, delay))
            if not already_paused:
                self._lower(now)
        elif (
            200 <= status < 300
            and remaining == 0
            and self._per_second is None  # paced a second at a time, 0 left is the pace itself
            and now - self._decreased_at >= self._cooldown
        ):
            self._lower(now)

    def _rate(self, now: float) -> float:
        """``min(ceiling, current)`` before ``safety``."""
        if self._low is None:
            return self._ceiling
        progress = (now - self._decreased_at) / self._recovery
        if progress >= 1.0:
            return self._ceiling
        rate = self._low + (self._ceiling - self._low) * max(0.0, progress)
        return max(MIN_RATE_PER_MINUTE, min(self._ceiling, rate))

    def _lower(self, now: float) -> None:
        self._low = max(MIN_RATE_PER_MINUTE, self._rate(now) * self._decrease)
        self._decreased_at = now
