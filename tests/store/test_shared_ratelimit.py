"""The Redis rate limiter: two limiters on one key behave as one pacer (two replicas, one account)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from app.delivery.redis_ratelimit import RedisRateLimiter
from app.delivery.redis_store import RedisStore
from tests.fakes.redis_server import RedisServer

SLOW = 6  # per minute: one grant every ~10 s, so "not granted within a second" is unambiguous


def two_replicas(
    server: RedisServer, rate: int, scenario: Callable[[RedisRateLimiter, RedisRateLimiter], Awaitable[None]]
) -> None:
    async def main() -> None:
        prefix = f"test-{uuid.uuid4().hex}"
        stores = [RedisStore(server.url, prefix=prefix), RedisStore(server.url, prefix=prefix)]
        for store in stores:
            await store.open()
        try:
            a, b = (RedisRateLimiter(s, s.shared_key("rl:acct"), rate) for s in stores)
            await scenario(a, b)
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


async def granted_within(limiter: RedisRateLimiter, seconds: float) -> bool:
    try:
        await asyncio.wait_for(limiter.acquire(), seconds)
    except TimeoutError:
        return False
    return True


def test_a_grant_to_one_replica_makes_the_other_wait_its_interval(redis_server: RedisServer) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        assert await granted_within(a, 2.0)
        assert not await granted_within(b, 1.0)
        assert not await granted_within(a, 0.5)

    two_replicas(redis_server, SLOW, scenario)


def test_a_refunded_grant_is_free_for_the_other_replica(redis_server: RedisServer) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        assert await a.acquire() == 1
        a.refund(1)
        await asyncio.sleep(0.2)  # the refund is sent in the background
        assert await granted_within(b, 2.0)

    two_replicas(redis_server, SLOW, scenario)


def test_a_429_seen_by_one_replica_pauses_both(redis_server: RedisServer) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        a.on_response(status=429, retry_after=1.5, limit_per_minute=None, remaining=None)
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await b.acquire()
        assert time.monotonic() - started >= 1.0  # paused for Retry-After, minus the 0.2 s above
        assert b.current_rate_per_minute < 6000 * 0.98  # and the shared rate was lowered

    two_replicas(redis_server, 6000, scenario)


def test_fast_grants_alternate_between_replicas_at_the_shared_pace(redis_server: RedisServer) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        grants: list[float] = []

        async def take(limiter: RedisRateLimiter, n: int) -> None:
            for _ in range(n):
                await limiter.acquire()
                grants.append(time.monotonic())

        await asyncio.gather(take(a, 10), take(b, 10))
        assert len(grants) == 20
        # 20 grants at 1200/min (50 ms apart) cannot all fit in less than 19 intervals
        assert grants[-1] - grants[0] >= 19 * 0.05 * 0.9

    two_replicas(redis_server, 1200, scenario)


@pytest.mark.parametrize("rate", [0, -5])
def test_a_rate_must_be_positive(redis_server: RedisServer, rate: int) -> None:
    with pytest.raises(ValueError):
        RedisRateLimiter(RedisStore(redis_server.url), "k", rate)
