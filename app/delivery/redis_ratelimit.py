"""The rate limiter shared by every replica: the ``AdaptiveRateLimiter`` rules, kept in Redis.

One hash per destination account holds the schedule's next slot, the pause and the lowered
rate, and a sorted set beside it the window: each request granted and not answered yet (scored
in the future) or answered in the last 60 s (scored by its answer time); each grant, answer and piece of
upstream feedback is one Lua script, timed by the Redis server's own clock, so replicas on
different machines pace one account together: one slot every ``60 / rate`` seconds whichever
replica takes it, the same bounded catch-up after a stall, the same 60 s window cap and the same
one-second burst cap as :class:`app.delivery.ratelimit.AdaptiveRateLimiter`. With a limit per
second the burst cap counts the window's own entries of the last second (so N replicas together
send no more than the limit in any second of arrivals); without one, a third key, a sorted set
of the last second's grants.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import deque
from typing import Any

import redis.asyncio as aioredis
import structlog

from app.delivery.ratelimit import (
    BURST_WINDOW_SECONDS,
    DEFAULT_RETRY_AFTER_SECONDS,
    MAX_CATCH_UP_SECONDS,
    MAX_FLIGHT_SECONDS,
    MIN_RATE_PER_MINUTE,
    WINDOW_SECONDS,
)
from app.delivery.redis_store import RedisStore

log = structlog.get_logger("app.delivery")

MAX_SLEEP = 1.0  # re-ask at least this often: a replica may have lowered the rate meanwhile
STATE_TTL_MS = 86_400_000  # an idle account's state expires after a day
IN_FLIGHT = MAX_FLIGHT_SECONDS - WINDOW_SECONDS  # a grant's score ahead of its time (see ACQUIRE)

# Shared by the scripts: the Redis server's clock, so every replica reads the same time.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function num(x) return string.format('%.6f', x) end
"""

# Shared by the limiter's scripts: read the state and compute the rate (before safety) at ``now``.
_STATE = (
    _NOW
    + """
local key = KEYS[1]
local configured, recovery, min_rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', key, 'slot', 'low', 'decreased_at', 'paused_until', 'limit')
local slot, low, dec = tonumber(h[1]) or -1e18, tonumber(h[2]), tonumber(h[3]) or -1e18
local paused = tonumber(h[4]) or 0
local ceiling = math.min(configured, tonumber(h[5]) or configured)
local rate = ceiling
if low then
  local progress = (now - dec) / recovery
  if progress < 1 then
    rate = math.max(min_rate, math.min(ceiling, low + (ceiling - low) * math.max(0, progress)))
  end
end
"""
)

# KEYS: state, window, grants.  ARGV: configured, recovery, min_rate, safety, grant token,
# state ttl ms, max catch-up seconds, in-flight score offset, per second|'', max burst|'',
# burst window seconds -> {granted 0|1, wait seconds, rate}.
# AdaptiveRateLimiter.acquire's rules. A grant enters the window scored in the future (now +
# offset: it leaves MAX_FLIGHT_SECONDS after its grant unless FINISHED scores it earlier).
# The burst cap is ratelimit.burst_cap (or max burst); with a limit per second it counts the
# window's entries of the last second (in flight, or answered less than a second ago), without
# one the grants set.
ACQUIRE = (
    _STATE
    + """
local safety, token, most, flight = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[7]), tonumber(ARGV[8])
local per_second, max_burst, second = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local window, grants = KEYS[2], KEYS[3]
local interval = 60 / (rate * safety)
local due = math.max(paused, slot - most)
redis.call('ZREMRANGEBYSCORE', window, '-inf', num(now - 60))
local cap = math.max(1, math.floor(ceiling * safety))
local count = redis.call('ZCARD', window)
if count >= cap then
  local edge = redis.call('ZRANGE', window, count - cap, count - cap, 'WITHSCORES')
  -- an edge still in flight leaves 60 s after its answer: not before 60 s from now
  due = math.max(due, math.min(tonumber(edge[2]), now) + 60.000001)
end
local burst = max_burst
if not burst and per_second then
  burst = math.max(1, math.floor(math.min(per_second, ceiling / 60)))
elseif not burst then
  burst = math.floor(ceiling * safety / 60) + 1
end
if per_second then
  if count >= burst then
    local edge = redis.call('ZRANGE', window, count - burst, count - burst, 'WITHSCORES')
    due = math.max(due, math.min(tonumber(edge[2]), now) + second + 0.000001)
  end
else
  redis.call('ZREMRANGEBYSCORE', grants, '-inf', num(now - second))
  local recent = redis.call('ZCARD', grants)
  if recent >= burst then
    local edge = redis.call('ZRANGE', grants, recent - burst, recent - burst, 'WITHSCORES')
    due = math.max(due, tonumber(edge[2]) + second + 0.000001)
  end
end
if now >= due then
  local next_slot = math.max(slot, now, paused + most) + interval
  redis.call('HSET', key, 'slot', num(next_slot))
  redis.call('PEXPIRE', key, ARGV[6])
  redis.call('ZADD', window, num(now + flight), token)
  redis.call('PEXPIRE', window, ARGV[6])
  if not per_second then
    redis.call('ZADD', grants, num(now), token)
    redis.call('PEXPIRE', grants, ARGV[6])
  end
  return {1, '0', num(rate * safety)}
end
return {0, num(due - now), num(rate * safety)}
"""
)

# KEYS: window.  ARGV: grant token.  The request has its answer: it stays in the window 60 s
# from now (nothing if the grant already left it).
FINISHED = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], 'XX', num(now), ARGV[1])
return 1
"""
)

# ARGV: configured, recovery, min_rate, status, retry_after|'', limit|'', remaining|'',
#       decrease factor, default retry-after, state ttl ms
FEEDBACK = (
    _STATE
    + """
local status, retry_after, limit, remaining = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local decrease, default_delay = tonumber(ARGV[8]), tonumber(ARGV[9])
if limit ~= '' and tonumber(limit) > 0 then
  redis.call('HSET', key, 'limit', limit)
  ceiling = math.min(configured, tonumber(limit))
  rate = math.min(rate, ceiling)
end
local function lower()
  redis.call('HSET', key, 'low', num(math.max(min_rate, rate * decrease)), 'decreased_at', num(now))
end
if status == 429 or (status == 503 and retry_after ~= '') then
  local delay = tonumber(retry_after) or default_delay
  local already = now < paused
  redis.call('HSET', key, 'paused_until', num(math.max(paused, now + math.max(0, delay))))
  if not already then lower() end
elseif status >= 200 and status < 300 and remaining == '0' and now - dec >= recovery / 10 then
  lower()
end
redis.call('PEXPIRE', key, ARGV[10])
return 1
"""
)


class RedisRateLimiter:
    """``RateLimiter`` for one destination account, shared through Redis by all replicas."""

    def __init__(
        self,
        store: RedisStore,
        key: str,
        rate_per_minute: int,
        *,
        safety: float = 0.98,
        recovery_seconds: float = 60.0,
        decrease_factor: float = 0.8,
        max_catch_up: float = MAX_CATCH_UP_SECONDS,
        per_second: float | None = None,
        max_burst: int | None = None,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        if max_catch_up < 0.0:
            raise ValueError("max_catch_up must not be negative")
        if per_second is not None and not per_second > 0.0:
            raise ValueError("per_second must be positive")
        if max_burst is not None and max_burst < 1:
            raise ValueError("max_burst must be >= 1")
        self._max_catch_up = max_catch_up
        self._per_second = per_second
        self._max_burst = max_burst
        self._store = store
        self._key = key
        self._window_key = f"{key}:window"  # requests in flight or answered in the last 60 s
        self._grants_key = f"{key}:grants"  # grants of the last second (without per_second)
        self._in_flight: deque[str] = deque()  # this replica's grant tokens not answered yet
        self._configured = float(rate_per_minute)
        self._safety = safety
        self._recovery = recovery_seconds
        self._decrease = decrease_factor
        self._rate = self._configured * safety
        self._paused_until = 0.0
        self._background: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()
        self._scripts: dict[str, Any] = {}
        self._scripts_of: aioredis.Redis | None = None

    def _script(self, source: str) -> Any:
        """The script bound to the current client (EVALSHA, loaded again after a restart)."""
        client = self._store.client  # after a reconnect: the new client
        if client is not self._scripts_of:
            self._scripts = {}
            self._scripts_of = client
        if source not in self._scripts:
            self._scripts[source] = client.register_script(source)
        return self._scripts[source]

    @property
    def current_rate_per_minute(self) -> float:
        """The shared rate (after safety) as of this replica's last grant."""
        return self._rate

    @property
    def paused_until(self) -> float:
        """Monotonic time until which this replica last saw grants paused; 0 when not."""
        return self._paused_until if self._paused_until > time.monotonic() else 0.0

    @property
    def per_second(self) -> float | None:
        """The vendor's limit per second the replicas keep together; None when it has none."""
        return self._per_second

    def _common(self) -> list[Any]:
        return [self._configured, self._recovery, MIN_RATE_PER_MINUTE]

    async def acquire(self, max_tokens: int = 1) -> int:
        """Wait until the shared pacer grants this replica the next slot; returns 1."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        token = uuid.uuid4().hex
        async with self._lock:
            while True:
                granted, delay = await self._attempt(token)
                if granted:
                    self._in_flight.append(token)
                    return 1
                self._paused_until = time.monotonic() + delay if delay > 60 / self._rate else 0.0
                await asyncio.sleep(min(delay, MAX_SLEEP))

    async def _attempt(self, token: str) -> tuple[bool, float]:
        """One try of the shared pacer: granted now, or the seconds to wait before asking again."""
        optional = ("" if self._per_second is None else self._per_second, self._max_burst or "")
        granted, wait, rate = await self._script(ACQUIRE)(
            keys=[self._key, self._window_key, self._grants_key],
            args=[
                *self._common(), self._safety, token, STATE_TTL_MS, self._max_catch_up, IN_FLIGHT,
                *optional, BURST_WINDOW_SECONDS,
            ],
        )  # fmt: skip
        self._rate = float(rate)
        return bool(int(granted)), float(wait)

    def finished(self) -> None:
        """A granted request has its answer (or failed): it counts in the shared window from now."""
        if self._in_flight:  # which of this replica's grants does not matter: each counts the same
            token = self._in_flight.popleft()
            self._spawn(self._script(FINISHED)(keys=[self._window_key], args=[token]))

    def on_response(
        self,
        *,
        status: int,
        retry_after: float | None,
        limit_per_minute: int | None,
        remaining: int | None,
    ) -> None:
        """Tell every replica what the upstream said (429 pauses and lowers the shared rate)."""
        if status == 0:
            return
        delay = "" if retry_after is None or not math.isfinite(retry_after) else repr(retry_after)
        args = [
            *self._common(), status, delay,
            "" if limit_per_minute is None else limit_per_minute,
            # paced a second at a time, a 0 left in the second is the pace itself, not a warning
            "" if remaining is None or self._per_second is not None else remaining,
            self._decrease, DEFAULT_RETRY_AFTER_SECONDS, STATE_TTL_MS,
        ]  # fmt: skip
        self._spawn(self._script(FEEDBACK)(keys=[self._key], args=args))

    def _spawn(self, call: Any) -> None:
        task = asyncio.ensure_future(call)
        self._background.add(task)
        task.add_done_callback(self._reported)

    def _reported(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("rate_limit_feedback_failed", key=self._key, error=str(task.exception()))
