"""AdaptiveRateLimiter on a fake clock: spacing, windows, catch-up, throughput, feedback, concurrency."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from bisect import bisect_right
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from app.delivery.ratelimit import (
    MAX_CATCH_UP_SECONDS,
    MAX_FLIGHT_SECONDS,
    AdaptiveRateLimiter,
    RateLimiter,
    burst_cap,
    window_cap,
)

START = 1000.0
EPS = 1e-9


class FakeClock:
    """Monotonic clock whose ``sleep`` waits for simulated time, advanced by ``advance`` or ``autojump``."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._timers, (self.now + delay, self._seq, fut))
        await fut

    @staticmethod
    async def settle() -> None:
        """Let every runnable task run until it blocks again."""
        for _ in range(100):
            await asyncio.sleep(0)

    def _fire_next(self) -> None:
        when, _, fut = heapq.heappop(self._timers)
        self.now = max(self.now, when)
        if not fut.done():
            fut.set_result(None)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers in order."""
        target = self.now + seconds
        await self.settle()
        while self._timers and self._timers[0][0] <= target:
            self._fire_next()
            await self.settle()
        self.now = target
        await self.settle()

    async def autojump(self) -> None:
        """Background driver: whenever everything is blocked, jump to the next timer."""
        while True:
            await self.settle()
            if self._timers:
                self._fire_next()


def run(main: Callable[[FakeClock], Awaitable[None]], *, autojump: bool = True) -> None:
    async def runner() -> None:
        clock = FakeClock()
        driver = asyncio.create_task(clock.autojump()) if autojump else None
        try:
            await main(clock)
        finally:
            if driver is not None:
                driver.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await driver

    asyncio.run(runner())


@dataclass(frozen=True)
class Answers:
    """How long answers take: ``slow`` of them anywhere in ``slow_range`` seconds, the rest in
    ``usual_range``."""

    slow: float
    slow_range: tuple[float, float]
    usual_range: tuple[float, float]


async def simulate(
    clock: FakeClock,
    limiter: AdaptiveRateLimiter,
    rng: random.Random,
    seconds: float,
    answers: Answers,
    idle: float,
) -> list[float]:
    """Requests sent as fast as ``limiter`` grants them for ``seconds``, with stalls of the
    process (a fifth of the grants) and idle spells (``idle`` of them); each arrives at some time
    between its grant and its answer. Their arrival times, sorted."""
    arrivals: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    async def answer(after: float) -> None:
        await clock.sleep(after)
        limiter.finished()

    while clock.now < START + seconds:
        await limiter.acquire()
        span = answers.slow_range if rng.random() < answers.slow else answers.usual_range
        delay = rng.uniform(*span)
        arrivals.append(clock.now + rng.choice((0.0, delay, rng.uniform(0.0, delay))))
        task = asyncio.create_task(answer(delay))
        pending.add(task)
        task.add_done_callback(pending.discard)
        draw = rng.random()
        if draw < 0.2:
            clock.now += rng.uniform(0.0, 1.5)  # a stall
        elif draw < 0.2 + idle:
            clock.now += rng.uniform(1.0, 30.0)  # idle
    for task in pending:
        task.cancel()
    return sorted(arrivals)


def make(clock: FakeClock, rate: int = 300, **kwargs: float | None) -> AdaptiveRateLimiter:
    """A limiter without catch-up unless asked: the mechanics are plainest one interval apart.

    The catch-up tests (and the window test) use the production default."""
    kwargs.setdefault("max_catch_up", 0.0)
    return AdaptiveRateLimiter(rate, clock=clock, sleep=clock.sleep, **kwargs)


async def grants_for(clock: FakeClock, limiter: RateLimiter, seconds: float) -> list[float]:
    """A steady consumer: acquire back to back for ``seconds`` of simulated time (each request
    answered at once)."""
    times: list[float] = []
    end = clock.now + seconds
    while True:
        assert await limiter.acquire() == 1
        limiter.finished()
        if clock.now >= end:
            return times
        times.append(clock.now)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_satisfies_protocol() -> None:
    limiter: RateLimiter = AdaptiveRateLimiter(300)
    assert limiter.current_rate_per_minute == pytest.approx(294.0)
    assert limiter.paused_until == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_per_minute": 0},
        {"rate_per_minute": 10, "safety": 0.0},
        {"rate_per_minute": 10, "safety": 1.5},
        {"rate_per_minute": 10, "recovery_seconds": 0.0},
        {"rate_per_minute": 10, "decrease_factor": 1.0},
        {"rate_per_minute": 10, "max_catch_up": -1.0},
        {"rate_per_minute": 10, "per_second": 0.0},
        {"rate_per_minute": 10, "max_burst": 0},
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveRateLimiter(**kwargs)  # type: ignore[arg-type]


def test_grants_are_spaced_at_rate_times_safety() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300)
        times = [clock.now]
        await limiter.acquire()  # first grant is immediate
        assert clock.now == START
        for _ in range(100):
            await limiter.acquire()
            times.append(clock.now)
        interval = 60 / (300 * 0.98)  # 0.20408... s
        assert min(gaps(times)) >= interval - EPS
        assert max(gaps(times)) <= interval + EPS

    run(main)


def test_max_tokens_grants_one_slot_at_a_time() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 60)
        assert await limiter.acquire(max_tokens=10) == 1
        clock.now += 30  # long idle: still no burst
        assert await limiter.acquire(max_tokens=10) == 1
        t = clock.now
        assert await limiter.acquire(max_tokens=10) == 1
        assert clock.now - t >= 60 / 58.8 - EPS
        with pytest.raises(ValueError):
            await limiter.acquire(max_tokens=0)

    run(main)


def test_no_window_exceeds_the_limit_and_throughput_is_high() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300, max_catch_up=MAX_CATCH_UP_SECONDS)
        times = [t - START for t in await grants_for(clock, limiter, 300.0)]
        for k in range(5):  # Zendesk's fixed one-minute windows
            assert sum(k * 60.0 <= t < (k + 1) * 60.0 for t in times) <= 300
        for i, t in enumerate(times):  # and every sliding one, closed at both ends
            assert bisect_right(times, t + 60.0) - i <= 294
        # the catch-up allowance is used once, at the start, then one slot per interval
        burst = 1 + math.floor((1.0 + MAX_CATCH_UP_SECONDS) / (60 / 294))
        assert max(bisect_right(times, t + 1.0) - i for i, t in enumerate(times)) <= burst
        assert len(times) >= 0.98 * 300 * 5 - 1

    run(main)


def test_the_window_cap_is_the_ceiling_times_safety() -> None:
    assert window_cap(300, 0.98) == 294
    assert window_cap(10, 0.98) == 9
    assert window_cap(300, 1.0) == 300
    assert window_cap(1, 0.98) == 1  # never none at all


@pytest.mark.parametrize("catch_up", [MAX_CATCH_UP_SECONDS, 30.0])
@pytest.mark.parametrize("rate", [1, 10, 49, 50, 100, 250, 300, 700, 2500])
def test_no_60_second_window_of_arrivals_exceeds_the_cap_whatever_the_stalls_idles_and_delays(
    rate: int, catch_up: float
) -> None:
    """Each request arrives at some time between its grant and its answer, which comes up to
    5 s (now and then 30 s) after the grant: the destination never counts more than the cap."""
    rng = random.Random(rate)

    async def main(clock: FakeClock) -> None:
        limiter = make(clock, rate, max_catch_up=catch_up)
        answers = Answers(0.05, (0.0, 30.0), (0.0, 5.0))
        arrivals = await simulate(clock, limiter, rng, 600.0, answers, idle=0.02)
        cap = window_cap(rate, 0.98)
        for i, t in enumerate(arrivals):
            assert bisect_right(arrivals, t + 60.0) - i <= cap, (
                f"{cap} a minute exceeded at {t - START:.3f} s"
            )

    run(main)


def test_a_request_counts_until_60_seconds_after_its_answer() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 2, safety=1.0, max_catch_up=60.0, max_burst=2)  # a window of two requests
        await limiter.acquire()
        await limiter.acquire()  # both at once: the catch-up and the burst cap allow it
        assert clock.now == START
        clock.now += 5.0
        limiter.finished()
        clock.now += 10.0
        limiter.finished()
        await limiter.acquire()  # 60 s after the first answer, not after the grants
        assert clock.now == pytest.approx(START + 65.0)
        await limiter.acquire()
        assert clock.now == pytest.approx(START + 75.0)

    run(main)


def test_a_request_never_answered_counts_as_in_flight_until_max_flight() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 1, safety=1.0, max_catch_up=600.0)
        await limiter.acquire()  # its task died: no finished()
        await limiter.acquire()
        assert clock.now == pytest.approx(START + MAX_FLIGHT_SECONDS)

    run(main)


@pytest.mark.parametrize("per_second", [None, 5.0])
def test_slots_lost_to_stalls_are_made_up(per_second: float | None) -> None:
    async def stalled_consumer(clock: FakeClock, limiter: AdaptiveRateLimiter) -> int:
        granted = 0
        while clock.now < START + 120.0:
            await limiter.acquire()
            limiter.finished()
            granted += 1
            if granted % 10 == 0:
                clock.now += 0.5  # the process was frozen for half a second
        return granted

    async def main(clock: FakeClock) -> None:
        made_up = await stalled_consumer(
            clock, make(clock, 300, max_catch_up=MAX_CATCH_UP_SECONDS, per_second=per_second)
        )
        assert made_up >= 0.98 * 300 * 2 - 1  # the full rate, stalls and all
        clock.now = START
        strict = await stalled_consumer(clock, make(clock, 300, max_catch_up=0.0, per_second=per_second))
        assert strict <= 0.9 * 300 * 2  # without catch-up each stall is lost for good (516)

    run(main)


def most_in_one_second(times: list[float]) -> int:
    """The most of ``times`` (sorted) in any closed one-second span."""
    return max((bisect_right(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def test_the_burst_cap_is_a_second_of_the_pace_plus_one_or_the_limit_per_second() -> None:
    assert burst_cap(300, 0.98, None) == 5  # 4.9 a second at the pace
    assert burst_cap(250, 0.98, None) == 5
    assert burst_cap(700, 0.98, None) == 12
    assert burst_cap(300, 1.0, None) == 6  # always room above the pace, to make up a stall
    assert burst_cap(10, 0.98, None) == 1
    assert burst_cap(300, 0.98, 5.0) == 5  # the vendor's, whatever the safety
    assert burst_cap(600, 0.98, 5.0) == 5
    assert burst_cap(180, 0.98, 5.0) == 3  # a header lowered the ceiling below 5 a second
    assert burst_cap(30, 0.98, 5.0) == 1  # never none at all


def test_after_an_idle_spell_the_catch_up_comes_a_burst_a_second() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300, max_catch_up=MAX_CATCH_UP_SECONDS)
        await limiter.acquire()
        limiter.finished()
        clock.now += 30.0
        start, times = clock.now, []
        for _ in range(60):
            await limiter.acquire()
            limiter.finished()
            times.append(clock.now)
        interval = 60 / 294
        # 5 at once (burst_cap(300, 0.98, None)), not the 15 that three seconds ahead allow
        assert sum(t == start for t in times) == 5
        assert most_in_one_second(times) == 5
        # and still ahead of the schedule: the slots of the allowance are used, 5 a second
        assert times[-1] - start < 59 * interval - 1.0

    run(main)


@pytest.mark.parametrize("rate", [60, 250, 300, 700])
def test_a_per_minute_limiter_never_grants_more_than_its_burst_in_one_second(rate: int) -> None:
    """Stalls, idles and answers of any delay: no second ever holds more than the burst cap."""
    rng = random.Random(rate)

    async def main(clock: FakeClock) -> None:
        limiter = make(clock, rate, max_catch_up=MAX_CATCH_UP_SECONDS)
        burst = burst_cap(rate, 0.98, None)
        assert limiter.burst == burst
        grants: list[float] = []
        while clock.now < START + 300.0:
            await limiter.acquire()
            grants.append(clock.now)
            limiter.finished()
            draw = rng.random()
            if draw < 0.2:
                clock.now += rng.uniform(0.0, 1.5)  # a stall
            elif draw < 0.25:
                clock.now += rng.uniform(1.0, 30.0)  # idle
        assert most_in_one_second(grants) == burst

    run(main)


@pytest.mark.parametrize("per_second", [1.0, 5.0, 10.0])
def test_no_second_of_arrivals_exceeds_the_limit_per_second_whatever_the_stalls_idles_and_delays(
    per_second: float,
) -> None:
    """Yotpo's 5 a second per store: each request arrives at some time between its grant and its
    answer (up to 2 s later): the destination never counts more than the limit in a second."""
    rng = random.Random(int(per_second))

    async def main(clock: FakeClock) -> None:
        limiter = make(clock, int(per_second * 60), max_catch_up=MAX_CATCH_UP_SECONDS, per_second=per_second)
        assert limiter.burst == int(per_second)
        arrivals = await simulate(clock, limiter, rng, 300.0, Answers(0.1, (0.0, 2.0), (0.0, 0.2)), idle=0.05)
        assert most_in_one_second(arrivals) == int(per_second)

    run(main)


def test_a_per_second_limiter_after_an_idle_spell_grants_the_limit_then_one_per_answer() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300, max_catch_up=MAX_CATCH_UP_SECONDS, per_second=5.0)
        await limiter.acquire()
        limiter.finished()
        clock.now += 30.0
        start = clock.now
        for _ in range(5):  # the last second holds the answer of the first grant: 1 s later
            await limiter.acquire()
        assert clock.now == start
        clock.now += 0.5
        limiter.finished()  # answered half a second after its grant
        for _ in range(4):
            limiter.finished()
        await limiter.acquire()  # a second after the first answer, not after its grant
        assert clock.now == pytest.approx(start + 1.5)

    run(main)


def test_a_lower_limit_header_lowers_the_limit_per_second() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300, max_catch_up=MAX_CATCH_UP_SECONDS, per_second=5.0)
        limiter.on_response(status=200, retry_after=None, limit_per_minute=180, remaining=None)
        assert limiter.burst == 3
        start = clock.now
        for _ in range(4):
            await limiter.acquire()
            limiter.finished()
        assert clock.now == pytest.approx(start + 1.0, abs=1e-6)  # the fourth waits for the second

    run(main)


def test_after_a_pause_grants_resume_one_interval_apart() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300, max_catch_up=MAX_CATCH_UP_SECONDS)
        await limiter.acquire()
        limiter.on_response(status=429, retry_after=5.0, limit_per_minute=None, remaining=None)
        times = []
        for _ in range(10):
            await limiter.acquire()
            times.append(clock.now)
        assert times[0] == START + 5.0
        assert min(gaps(times)) >= 60 / (300 * 0.98) - EPS  # no catching up on the paused time

    run(main)


def test_without_catch_up_an_event_loop_hiccup_does_not_cause_a_burst() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 60, safety=1.0)
        await limiter.acquire()
        clock.now += 10.0  # the consumer was stalled for 10 intervals
        await limiter.acquire()
        t = clock.now
        await limiter.acquire()
        assert clock.now - t == pytest.approx(1.0)

    run(main)


def test_lower_rate_limit_header_lowers_ceiling_higher_does_not_raise() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300)
        limiter.on_response(status=200, retry_after=None, limit_per_minute=1000, remaining=999)
        assert limiter.ceiling_per_minute == 300
        assert limiter.current_rate_per_minute == pytest.approx(294.0)

        limiter.on_response(status=200, retry_after=None, limit_per_minute=120, remaining=119)
        assert limiter.ceiling_per_minute == 120
        assert limiter.current_rate_per_minute == pytest.approx(120 * 0.98)
        times = await grants_for(clock, limiter, 30.0)
        assert min(gaps(times)) >= 60 / (120 * 0.98) - EPS

        # The latest header wins, capped at the configured rate.
        limiter.on_response(status=200, retry_after=None, limit_per_minute=250, remaining=249)
        assert limiter.ceiling_per_minute == 250
        limiter.on_response(status=200, retry_after=None, limit_per_minute=700, remaining=699)
        assert limiter.ceiling_per_minute == 300

    run(main)


def test_429_with_retry_after_pauses_exactly_and_recovers_linearly() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300, recovery_seconds=60.0, decrease_factor=0.8)
        await limiter.acquire()
        t429 = clock.now + 1.0
        clock.now = t429
        limiter.on_response(status=429, retry_after=7.0, limit_per_minute=None, remaining=None)
        assert limiter.paused_until == t429 + 7.0
        assert limiter.current_rate_per_minute == pytest.approx(240 * 0.98)

        await limiter.acquire()
        assert clock.now == t429 + 7.0
        assert limiter.paused_until == 0.0
        t = clock.now
        await limiter.acquire()
        # 7 s into the 60 s recovery the rate is 240 + 60 * 7/60 = 247/min.
        assert clock.now - t == pytest.approx(60 / (247 * 0.98))

        clock.now = t429 + 30.0
        assert limiter.current_rate_per_minute == pytest.approx(270 * 0.98)
        clock.now = t429 + 60.0
        assert limiter.current_rate_per_minute == pytest.approx(294.0)
        clock.now = t429 + 600.0
        assert limiter.current_rate_per_minute == pytest.approx(294.0)

    run(main)


def test_429_without_retry_after_pauses_ten_seconds() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300)
        await limiter.acquire()
        limiter.on_response(status=429, retry_after=None, limit_per_minute=None, remaining=None)
        assert limiter.paused_until == START + 10.0
        await limiter.acquire()
        assert clock.now == START + 10.0

    run(main)


def test_pause_arriving_while_a_waiter_sleeps_is_honoured() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 60, safety=1.0)
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await clock.advance(0.5)
        limiter.on_response(status=429, retry_after=5.0, limit_per_minute=None, remaining=None)
        await clock.advance(1.0)
        assert not waiter.done()
        await clock.advance(4.0)
        assert waiter.done()
        assert clock.now == START + 5.5
        await waiter

    run(main, autojump=False)


def test_repeated_429s_during_a_pause_do_not_compound() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300)
        for _ in range(10):
            limiter.on_response(status=429, retry_after=5.0, limit_per_minute=None, remaining=None)
        assert limiter.current_rate_per_minute == pytest.approx(240 * 0.98)
        clock.now += 1.0
        limiter.on_response(status=429, retry_after=10.0, limit_per_minute=None, remaining=None)
        assert limiter.paused_until == START + 11.0  # extended, never shortened
        clock.now = START + 11.0
        limiter.on_response(status=429, retry_after=1.0, limit_per_minute=None, remaining=None)
        assert limiter.current_rate_per_minute < 240 * 0.98 * 0.85  # a fresh 429 lowers again

    run(main)


def test_503_pauses_only_with_retry_after_and_transport_errors_are_ignored() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300)
        limiter.on_response(status=503, retry_after=None, limit_per_minute=None, remaining=None)
        limiter.on_response(status=0, retry_after=30.0, limit_per_minute=10, remaining=0)
        limiter.on_response(status=500, retry_after=None, limit_per_minute=None, remaining=0)
        assert limiter.paused_until == 0.0
        assert limiter.current_rate_per_minute == pytest.approx(294.0)
        limiter.on_response(status=503, retry_after=3.0, limit_per_minute=None, remaining=None)
        assert limiter.paused_until == START + 3.0
        assert limiter.current_rate_per_minute == pytest.approx(240 * 0.98)

    run(main)


def test_remaining_zero_lowers_but_not_again_within_cooldown() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300, recovery_seconds=60.0)  # cooldown 6 s
        limiter.on_response(status=200, retry_after=None, limit_per_minute=300, remaining=0)
        assert limiter.current_rate_per_minute == pytest.approx(240 * 0.98)
        assert limiter.paused_until == 0.0
        for _ in range(50):
            clock.now += 0.1
            limiter.on_response(status=202, retry_after=None, limit_per_minute=300, remaining=0)
        # Only the linear recovery moved it: 240 + 60 * 5/60 = 245.
        assert limiter.current_rate_per_minute == pytest.approx(245 * 0.98)
        clock.now = START + 6.0
        limiter.on_response(status=200, retry_after=None, limit_per_minute=300, remaining=0)
        assert limiter.current_rate_per_minute == pytest.approx(246 * 0.8 * 0.98)

    run(main)


def test_a_limiter_paced_per_second_is_not_slowed_by_an_empty_second() -> None:
    """Yotpo counts per second: at the full pace of 5 a second, the fifth answer of a second
    says 0 left, which is that pace itself, not a sign of another client; a 429 still is."""

    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300, per_second=5.0)
        limiter.on_response(status=200, retry_after=None, limit_per_minute=300, remaining=0)
        assert limiter.current_rate_per_minute == pytest.approx(300 * 0.98)
        limiter.on_response(status=429, retry_after=1.0, limit_per_minute=300, remaining=0)
        assert limiter.current_rate_per_minute == pytest.approx(240 * 0.98)

    run(main)


def test_decreases_never_go_below_one_per_minute() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 10)
        for _ in range(100):
            clock.now += 0.01
            limiter.on_response(status=429, retry_after=0.0, limit_per_minute=None, remaining=None)
        assert limiter.current_rate_per_minute == pytest.approx(0.98)

    run(main)


def test_fifty_concurrent_acquirers_are_spaced_and_served_in_order() -> None:
    async def main(clock: FakeClock) -> None:
        limiter = make(clock, 300)
        order: list[tuple[int, float]] = []

        async def one(i: int) -> None:
            await limiter.acquire()
            order.append((i, clock.now))

        await asyncio.gather(*(one(i) for i in range(50)))
        assert [i for i, _ in order] == list(range(50))
        times = [t for _, t in order]
        assert min(gaps(times)) >= 60 / 294 - EPS
        assert times[-1] - times[0] == pytest.approx(49 * 60 / 294)

    run(main)


def test_cancelled_waiter_does_not_consume_a_slot() -> None:
    async def main(clock: FakeClock) -> None:
        interval = 60 / 294
        limiter = make(clock, 300)
        await limiter.acquire()
        sleeping = asyncio.create_task(limiter.acquire())  # holds the lock, sleeping until its slot
        queued = asyncio.create_task(limiter.acquire())  # waiting on the lock
        last = asyncio.create_task(limiter.acquire())
        await clock.settle()
        sleeping.cancel()
        queued.cancel()
        await clock.advance(interval)
        assert last.done()
        assert sleeping.cancelled()
        assert queued.cancelled()
        await last
        assert clock.now == pytest.approx(START + interval)
        nxt = asyncio.create_task(limiter.acquire())
        await clock.advance(interval)
        assert nxt.done()
        await nxt

    run(main, autojump=False)
