"""Per-destination request pacing for the Zendesk Events API.

Zendesk caps Events/Profiles API calls per account per minute (``X-Rate-Limit``) and answers
``429`` with ``Retry-After`` once the cap is exceeded. :class:`AdaptiveRateLimiter` keeps one
process's sends to one destination account under that cap: it is a strict pacer (never a burst),
slows down on throttling signals and climbs back linearly. :class:`RateLimiter` is the protocol a
shared (e.g. Redis-backed) limiter can implement later.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

DEFAULT_RETRY_AFTER_SECONDS = 10.0
"""Pause applied on a 429 that carries no usable ``Retry-After``."""

MIN_RATE_PER_MINUTE = 1.0
"""Decreases never push the rate below this, so a stream of 429s cannot stall the pacer forever."""

_HISTORY = 64  # grants remembered for refunds


class RateLimiter(Protocol):
    """Admission control for requests to one destination account."""

    async def acquire(self, max_tokens: int = 1) -> int:
        """Wait until a send is allowed, take up to ``max_tokens`` allowed now; return how many (>= 1)."""
        ...

    def refund(self, tokens: int) -> None:
        """Give back tokens taken by :meth:`acquire` but not used."""
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

    @property
    def current_rate_per_minute(self) -> float:
        """The rate grants are paced at right now."""
        ...

    @property
    def paused_until(self) -> float:
        """Monotonic time until which no grant is made; 0 when not paused."""
        ...


class AdaptiveRateLimiter:
    """In-process strict pacer with multiplicative decrease and linear recovery.

    Grants are spaced at least ``60 / effective_rate`` seconds apart, measured from the actual time of
    the previous grant, so a stalled event loop never causes a catch-up burst. Hence every window of
    ``W`` seconds holds at most ``ceil(W * effective_rate / 60)`` grants, and :meth:`acquire` always
    grants exactly one token whatever ``max_tokens`` is (with no burst allowance only one slot is ever
    due at once).

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
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        if not 0.0 < safety <= 1.0:
            raise ValueError("safety must be in (0, 1]")
        if not recovery_seconds > 0.0:
            raise ValueError("recovery_seconds must be positive")
        if not 0.0 < decrease_factor < 1.0:
            raise ValueError("decrease_factor must be in (0, 1)")
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
        self._grants: deque[tuple[float, weakref.ref[asyncio.Task[Any]] | None]] = deque(maxlen=_HISTORY)
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

    # -- pacing --------------------------------------------------------------------------------

    async def acquire(self, max_tokens: int = 1) -> int:
        """Wait for the next slot and take it; always returns 1 (see the class docstring)."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        async with self._lock:
            while True:
                now = self._clock()
                due = self._next_due(now)
                if now >= due:
                    break
                # Re-check after waking: a pause or a lower rate may have arrived meanwhile.
                await self._sleep(due - now)
            self._grants.append((now, _current_task_ref()))
        return 1

    def refund(self, tokens: int) -> None:
        """Return unused tokens taken by the calling task.

        A slot is given back only while it is still the most recent grant; if another grant came
        after it, the slot is forfeited (being conservative keeps grants spaced).
        """
        task = current_task()
        for _ in range(max(0, tokens)):
            if task is None or not self._grants:
                return
            owner = self._grants[-1][1]
            if owner is None or owner() is not task:
                return
            self._grants.pop()

    def _next_due(self, now: float) -> float:
        due = self._paused_until
        if self._grants:
            interval = 60.0 / (self._rate(now) * self._safety)
            due = max(due, self._grants[-1][0] + interval)
        return due

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
        elif 200 <= status < 300 and remaining == 0 and now - self._decreased_at >= self._cooldown:
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


def current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


def _current_task_ref() -> weakref.ref[asyncio.Task[Any]] | None:
    task = current_task()
    return weakref.ref(task) if task is not None else None
