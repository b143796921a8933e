"""The Redis rate limiter: two limiters on one key behave as one pacer (two replicas, one account)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.delivery.ratelimit import MAX_CATCH_UP_SECONDS, burst_cap
from app.delivery.redis_ratelimit import RedisRateLimiter
from app.delivery.redis_store import RedisStore
from tests.fakes.redis_server import RedisServer

SLOW = 6  # per minute: one grant every ~10 s, so "not granted within a second" is unambiguous


def two_replicas(
    server: RedisServer,
    rate: int,
    scenario: Callable[[RedisRateLimiter, RedisRateLimiter], Awaitable[None]],
    **options: Any,
) -> None:
    async def main() -> None:
        prefix = f"test-{uuid.uuid4().hex}"
        stores = [RedisStore(server.url, prefix=prefix), RedisStore(server.url, prefix=prefix)]
        for store in stores:
            await store.open()
        try:
            a, b = (RedisRateLimiter(s, s.shared_key("rl:acct"), rate, **options) for s in stores)
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


def test_a_429_seen_by_one_replica_pauses_both(redis_server: RedisServer) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        reported = time.monotonic()
        a.on_response(status=429, retry_after=1.5, limit_per_minute=None, remaining=None)
        await asyncio.sleep(0.2)  # the feedback is sent in the background
        await b.acquire()
        # the pause runs from when Redis took the feedback, after ``reported`` (a loaded machine
        # only makes the grant later); 0.1 s for the two clocks, Redis's and this process's
        assert time.monotonic() - reported >= 1.4
        assert b.current_rate_per_minute < 6000 * 0.98  # and the shared rate was lowered

    two_replicas(redis_server, 6000, scenario)


def test_fast_grants_alternate_between_replicas_at_the_shared_pace(redis_server: RedisServer) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        grants: list[float] = []

        async def take(limiter: RedisRateLimiter, n: int) -> None:
            for _ in range(n):
                await limiter.acquire()
                grants.append(time.monotonic())

        await asyncio.gather(take(a, 30), take(b, 30))
        assert len(grants) == 60
        # 60 grants at 1200/min (51 ms apart) take at least 59 intervals less the 1 s catch-up
        # allowance, whichever replica takes them (a slower machine only takes longer)
        interval = 60 / (1200 * 0.98)
        assert grants[-1] - grants[0] >= 59 * interval - MAX_CATCH_UP_SECONDS - 0.01

    two_replicas(redis_server, 1200, scenario)


def test_after_an_idle_spell_the_replicas_share_the_catch_up_allowance(redis_server: RedisServer) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        await a.acquire()
        await asyncio.sleep(1.5)  # idle: the schedule's slot is now in the past
        calls = 0
        for limiter in (a, b, a, b, a):  # 1 due slot + 4 ahead of theirs (of 14 allowed: 3 s at 294/min)
            granted, _ = await limiter._attempt(uuid.uuid4().hex)
            calls += int(granted)
        assert calls == 5  # all at once: time only moves on between calls, which never refuses one

    two_replicas(redis_server, 300, scenario)


@pytest.mark.parametrize("rate", [0, -5])
def test_a_rate_must_be_positive(redis_server: RedisServer, rate: int) -> None:
    with pytest.raises(ValueError):
        RedisRateLimiter(RedisStore(redis_server.url), "k", rate)


def test_no_catch_up_passes_the_60_second_window_cap(redis_server: RedisServer) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        granted, waits = 0, []
        for i in range(300):  # a catch-up allowance of 10 minutes would allow all of them
            limiter = (a, b)[i % 2]
            ok, wait = await limiter._attempt(f"t{i}")
            granted += int(ok)
            if not ok:
                waits.append(wait)
        assert granted == 294  # window_cap(300, 0.98): the two replicas together
        assert min(waits) > 50  # the next room is when the first grant leaves the window

    two_replicas(redis_server, 300, scenario, max_catch_up=600.0, max_burst=1000)


def test_a_grant_counts_in_the_shared_window_until_60_seconds_after_its_answer(
    redis_server: RedisServer,
) -> None:
    async def refused_for(limiter: RedisRateLimiter) -> float:
        ok, wait = await limiter._attempt(uuid.uuid4().hex)
        assert not ok
        return wait

    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        await a.acquire()  # a window of one request (1 a minute)
        assert await refused_for(b) >= 59.9  # in flight: not before 60 s from now
        await asyncio.sleep(1.5)
        a.finished()
        await asyncio.sleep(0.3)  # the answer is recorded in the background
        # 60 s from the answer (about 59.7 s from now), where counting from the grant would
        # leave about 58.2 s
        assert await refused_for(b) > 59.0

    two_replicas(redis_server, 1, scenario, max_catch_up=600.0)


def most_intervals_meeting_one_second(spans: list[tuple[float, float]]) -> int:
    """The most (grant, answer) spans that meet any one second: the most requests a destination
    can count in a second, wherever between its grant and its answer each one arrives."""
    return max(sum(1 for g, a in spans if g <= grant and a > grant - 1.0) for grant, _ in spans)


def test_after_an_idle_spell_the_replicas_share_a_burst_cap_of_a_second_of_the_pace(
    redis_server: RedisServer,
) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        await a.acquire()
        a.finished()
        await asyncio.sleep(3.5)  # idle: the whole catch-up allowance (14 slots) is free
        attempts = [await limiter._attempt(uuid.uuid4().hex) for limiter in (a, b, a, b, a, b, a)]
        assert [ok for ok, _ in attempts] == [True] * 5 + [False] * 2  # 5 = burst_cap(300, 0.98, None)
        assert 0.9 < attempts[-1][1] <= 1.0  # room again when the first of them is a second old

    assert burst_cap(300, 0.98, None) == 5
    two_replicas(redis_server, 300, scenario)


def test_two_replicas_never_let_more_than_the_limit_per_second_arrive(redis_server: RedisServer) -> None:
    """Yotpo's 5 a second per store, two replicas sending as fast as their shared limiter lets
    them, after an idle spell, each answer 0-150 ms after its grant."""

    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        await a.acquire()
        a.finished()
        await asyncio.sleep(3.5)  # idle: the whole catch-up allowance is free
        spans: list[tuple[float, float]] = []
        rng = random.Random(5)

        async def send(limiter: RedisRateLimiter) -> None:
            await limiter.acquire()
            granted = time.monotonic()
            await asyncio.sleep(rng.uniform(0.0, 0.15))  # the request on its way and back
            spans.append((granted, time.monotonic()))
            limiter.finished()

        async def replica(limiter: RedisRateLimiter) -> None:
            await asyncio.gather(*(send(limiter) for _ in range(20)))

        started = time.monotonic()
        await asyncio.gather(replica(a), replica(b))
        took = time.monotonic() - started
        assert len(spans) == 40
        assert most_intervals_meeting_one_second(spans) <= 5
        assert took >= (40 - 5) / 5 * 1.0  # 5 at once, then no more than 5 a second
        assert took <= 25.0  # and not much slower (a loaded machine only adds answer time)

    two_replicas(redis_server, 300, scenario, per_second=5.0)


def test_the_limit_per_second_counts_from_the_grant_until_a_second_after_the_answer(
    redis_server: RedisServer,
) -> None:
    async def scenario(a: RedisRateLimiter, b: RedisRateLimiter) -> None:
        await a.acquire()
        await a.acquire()  # the limit of 2 a second, both in flight
        ok, wait = await b._attempt(uuid.uuid4().hex)
        assert not ok and 0.9 < wait <= 1.001  # in flight: ask again in a second
        await asyncio.sleep(1.2)
        ok, _ = await b._attempt(uuid.uuid4().hex)
        assert not ok  # the grants are over a second old, but a request in flight may arrive now
        a.finished()
        a.finished()
        await asyncio.sleep(0.3)  # the answers are recorded in the background
        ok, wait = await b._attempt(uuid.uuid4().hex)
        assert not ok and 0.4 < wait <= 0.75  # a second after the answers
        await asyncio.sleep(wait + 0.05)
        ok, _ = await b._attempt(uuid.uuid4().hex)
        assert ok

    two_replicas(redis_server, 120, scenario, per_second=2.0, max_catch_up=60.0)
