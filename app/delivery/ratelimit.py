"""Per-destination request pacing for the Zendesk Events API.

Zendesk caps Events/Profiles API calls per account per minute (``X-Rate-Limit``) and answers
``429`` with ``Retry-After`` once the cap is exceeded. :class:`AdaptiveRateLimiter` keeps one
process's sends to one destination account under that cap: it paces grants evenly, catches up
after a stall by at most :func:`catch_up_seconds` of slots, slows down on throttling signals and
climbs back linearly. :class:`RateLimiter` is the protocol the Redis-backed limiter implements too.
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

MAX_CATCH_UP_SECONDS = 1.0
"""At most this much of the schedule is made up after a stall (see :func:`catch_up_seconds`)."""

_HISTORY = 64  # grants remembered for refunds


def catch_up_seconds(ceiling_per_minute: float, interval: float, most: float = MAX_CATCH_UP_SECONDS) -> float:
    """How far ahead of its schedule a grant may come, so a stall's lost slots are made up.

    A pacer that spaces grants from the actual time of the previous one loses every stall for good:
    a process frozen for 300 ms (a throttled container, a busy host) sends that much less, and on a
    loaded machine that was half the rate. With a tolerance ``tau`` (GCRA), any window of ``W``
    seconds holds at most ``1 + floor((W + tau) / interval)`` grants; ``tau`` below is the largest
    (capped at ``most``) that keeps every 60 s window within ``ceiling_per_minute``, so catching up
    never breaks the account's limit. It is 0 (a strict pacer) when the safety margin leaves no
    room, as with ``safety=1`` or limits under 50 per minute at 98 %.
    """
    return max(0.0, min(most, (ceiling_per_minute - 1.0) * interval - 60.0))


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

    Grants follow a schedule with one slot every ``60 / effective_rate`` seconds. A grant may come up
    to :func:`catch_up_seconds` ahead of its slot (GCRA), so slots lost to a stalled event loop are
    made up, or a few are used at once after an idle spell, while every 60 s window stays within
    the ceiling. After a pause there is no catching up: grants resume one interval apart.
    :meth:`acquire` grants exactly one token whatever ``max_tokens`` is.

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
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
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
        self._slot = -math.inf  # the schedule's next slot (GCRA's theoretical arrival time)
        # (the slot before each grant, its task): a refund puts the schedule back
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
                interval = 60.0 / (self._rate(now) * self._safety)
                tolerance = catch_up_seconds(self._ceiling, interval, self._max_catch_up)
                due = max(self._paused_until, self._slot - tolerance)
                if now >= due:
                    break
                # Re-check after waking: a pause or a lower rate may have arrived meanwhile.
                await self._sleep(due - now)
            self._grants.append((self._slot, _current_task_ref()))
            # Just after a pause the schedule restarts one interval at a time: no catching up.
            self._slot = max(self._slot, now, self._paused_until + tolerance) + interval
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
            slot, owner = self._grants[-1]
            if owner is None or owner() is not task:
                return
            self._grants.pop()
            self._slot = slot

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
