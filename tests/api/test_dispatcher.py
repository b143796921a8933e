"""The dispatcher's order of work: lease, then the rate limiter's token, then the send.

No store write may sit between a grant and its send (the slot would be spent waiting), and every
grant is reported answered (the limiter's window counts a request until 60 s after its answer).
The real SQLite store, the real limiter and the real Zendesk
destination against the fake Zendesk over loopback; the store and limiter only note their calls.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from app.delivery.dispatcher import Dispatcher, DispatchSettings, lease_batch
from app.delivery.ratelimit import AdaptiveRateLimiter
from app.delivery.retry import RetryPolicy
from app.delivery.sqlite import SqliteStore
from app.delivery.store import Delivery, StoreUnavailable
from app.delivery.waiters import OutcomeWaiters
from app.destinations.zendesk import ZendeskConfig, ZendeskDestination
from tests.conftest import zendesk_settings
from tests.contract.test_zendesk import BODY
from tests.fakes.zendesk import CannedResponse, FakeZendesk
from tests.load.loadgen import wait_until
from tests.store.conftest import BIG, TTL, new

Log = list[tuple[str, str]]


class NotingStore(SqliteStore):
    """The real store, noting every delivery it leases and gives back."""

    def __init__(self, path: str, log: Log) -> None:
        super().__init__(path)
        self.log = log

    async def lease(self, destination: str, limit: int, lease_seconds: float) -> list[Delivery]:
        leased = await super().lease(destination, limit, lease_seconds)
        self.log.extend(("leased", d.id) for d in leased)
        return leased

    async def release(self, delivery: Delivery) -> bool:
        self.log.append(("released", delivery.id))
        return await super().release(delivery)


class ReadsFailingStore(NotingStore):
    """The real store, whose ``next_due`` fails on demand (as Redis's does while it is away)."""

    def __init__(self, path: str, log: Log) -> None:
        super().__init__(path, log)
        self.failing = False

    async def next_due(self, destination: str) -> float | None:
        if self.failing:
            self.log.append(("next_due_failed", destination))
            raise StoreUnavailable("Redis: ConnectionError: Connection refused.")
        return await super().next_due(destination)


class NotingLimiter(AdaptiveRateLimiter):
    """The real in-process limiter, noting every grant."""

    def __init__(self, rate_per_minute: int, log: Log, **options: Any) -> None:
        super().__init__(rate_per_minute, **options)
        self.log = log

    async def acquire(self, max_tokens: int = 1) -> int:
        granted = await super().acquire(max_tokens)
        self.log.append(("granted", ""))
        return granted

    def finished(self) -> None:
        self.log.append(("answered", ""))
        super().finished()


async def dispatching(
    tmp_path: Path,
    fake: FakeZendesk,
    limiter: NotingLimiter,
    log: Log,
    count: int,
    scenario: Callable[[NotingStore, Dispatcher], Awaitable[None]],
    lease_seconds: float = 60.0,
    make_store: Callable[[str, Log], NotingStore] = NotingStore,
) -> None:
    """Store ``count`` deliveries to the fake, run the dispatcher over them during ``scenario``."""
    store = make_store(str(tmp_path / "relay.db"), log)
    await store.open()
    config = ZendeskConfig.from_settings(zendesk_settings(fake.base_url))
    zendesk = ZendeskDestination(config, dry_run=False)
    request, violations = zendesk.prepare(BODY, None, {})
    assert violations == []
    deliveries = [new(body=request.body, path=request.path) for _ in range(count)]
    await store.enqueue(deliveries, max_pending=BIG, idempotency_ttl=TTL)
    dispatcher = Dispatcher(
        store,
        {"zendesk": zendesk},
        {"zendesk": limiter},
        RetryPolicy(max_attempts=3, max_age=60.0, base=0.05, cap=0.2),
        OutcomeWaiters(),
        DispatchSettings(lease_seconds=lease_seconds),
    )
    dispatcher.start()
    try:
        await scenario(store, dispatcher)
    finally:
        await dispatcher.stop()
        await zendesk.aclose()
        await store.close()


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    return await asyncio.to_thread(wait_until, condition, seconds)


def statuses(path: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT status, attempts FROM deliveries ORDER BY status").fetchall()


def test_a_token_is_taken_only_for_a_delivery_already_leased(
    tmp_path: Path, fake_zendesk: FakeZendesk
) -> None:
    log: Log = []

    async def scenario(store: NotingStore, dispatcher: Dispatcher) -> None:
        assert await until(lambda: len(fake_zendesk.accepted) == 5)

    # 100/min: a lease takes one delivery at a time (lease_batch), so lease and grant alternate
    limiter = NotingLimiter(100, log, safety=1.0)
    asyncio.run(dispatching(tmp_path, fake_zendesk, limiter, log, 5, scenario))
    assert [step for step, _ in log if step != "answered"] == ["leased", "granted"] * 5
    assert statuses(tmp_path / "relay.db") == [("delivered", 1)] * 5


def test_at_a_high_rate_one_lease_takes_a_batch(tmp_path: Path, fake_zendesk: FakeZendesk) -> None:
    log: Log = []

    async def scenario(store: NotingStore, dispatcher: Dispatcher) -> None:
        assert await until(lambda: len(fake_zendesk.accepted) == 20)

    asyncio.run(dispatching(tmp_path, fake_zendesk, NotingLimiter(60_000, log), log, 20, scenario))
    steps = [step for step, _ in log]
    assert steps[:16] == ["leased"] * 16  # as many as the 16 free send slots, in one store call
    assert all(steps[: i + 1].count("granted") <= steps[: i + 1].count("leased") for i in range(len(steps)))
    assert steps.count("granted") == 20
    assert statuses(tmp_path / "relay.db") == [("delivered", 1)] * 20


def test_a_paused_destination_leases_nothing_until_the_pause_ends(
    tmp_path: Path, fake_zendesk: FakeZendesk
) -> None:
    log: Log = []
    limiter = NotingLimiter(6000, log)
    limiter.on_response(status=429, retry_after=2.0, limit_per_minute=None, remaining=None)

    async def scenario(store: NotingStore, dispatcher: Dispatcher) -> None:
        await asyncio.sleep(0.5)
        assert log == []  # the deliveries wait in the store, pending, while the pause lasts
        assert statuses(tmp_path / "relay.db") == [("pending", 0)]
        assert await until(lambda: len(fake_zendesk.accepted) == 1)

    asyncio.run(dispatching(tmp_path, fake_zendesk, limiter, log, 1, scenario))
    assert [step for step, _ in log] == ["leased", "granted", "answered"]


def test_a_lease_that_waits_too_long_for_its_token_goes_back_uncounted(
    tmp_path: Path, fake_zendesk: FakeZendesk
) -> None:
    log: Log = []
    # one grant at once, the next a minute later; a 3 s lease waits 1.5 s for its token (and
    # leaves the first send time to be answered and recorded on a loaded machine: a 0.4 s lease
    # once ran out under a send that took 0.57 s)
    limiter = NotingLimiter(1, log, safety=1.0, max_catch_up=0.0)

    async def scenario(store: NotingStore, dispatcher: Dispatcher) -> None:
        assert await until(lambda: len(fake_zendesk.accepted) == 1)
        assert await until(lambda: [step for step, _ in log].count("released") >= 2, 30.0)

    asyncio.run(dispatching(tmp_path, fake_zendesk, limiter, log, 2, scenario, lease_seconds=3.0))
    assert len(fake_zendesk.received) == 1
    assert sorted(statuses(tmp_path / "relay.db")) == [("delivered", 1), ("pending", 0)]
    waiting = {d for step, d in log if step == "released"}
    assert len(waiting) == 1  # the same delivery, leased and given back, its attempt uncounted


def test_the_lease_batch_follows_the_pace() -> None:
    assert [lease_batch(rate) for rate in (1, 30, 250, 300, 2_500, 600_000)] == [1, 1, 2, 2, 20, 5000]


def test_every_grant_is_answered_once_whatever_the_outcome(tmp_path: Path, fake_zendesk: FakeZendesk) -> None:
    """The limiter counts a request in its window until 60 s after the answer: a grant left
    unanswered would hold a place in the window for ``MAX_FLIGHT_SECONDS``."""
    log: Log = []
    fake_zendesk.enqueue(
        CannedResponse(500, {"error": "InternalError"}),
        CannedResponse(400, {"errors": [{"code": "InvalidValue", "title": "bad"}]}),
        CannedResponse(202, {"status": "received"}, delay=0.3),
    )

    async def scenario(store: NotingStore, dispatcher: Dispatcher) -> None:
        assert await until(lambda: sorted(status for status, _ in statuses(tmp_path / "relay.db")) == [
            "dead", "delivered", "delivered"])  # fmt: skip

    limiter = NotingLimiter(60_000, log)
    asyncio.run(dispatching(tmp_path, fake_zendesk, limiter, log, 3, scenario))
    steps = [step for step, _ in log]
    assert steps.count("granted") == 4  # three first attempts and the retry after the 500
    assert steps.count("answered") == 4
    assert not limiter._in_flight


def test_a_store_failure_while_idle_does_not_end_delivery(tmp_path: Path, fake_zendesk: FakeZendesk) -> None:
    """Idle, the loop leases nothing, then asks when the next delivery is due: a store that
    fails there used to end the destination's loop for good, silently."""
    log: Log = []

    async def scenario(store: NotingStore, dispatcher: Dispatcher) -> None:
        assert isinstance(store, ReadsFailingStore)
        assert await until(lambda: len(fake_zendesk.accepted) == 1)
        store.failing = True
        assert await until(lambda: ("next_due_failed", "zendesk") in log, 5.0)
        store.failing = False
        first = (await store.get_many([d for step, d in log if step == "leased"]))[0]
        await store.enqueue(
            [new(body=first.request.body, path=first.request.path)], max_pending=BIG, idempotency_ttl=TTL
        )
        dispatcher.notify("zendesk")
        assert await until(lambda: len(fake_zendesk.accepted) == 2, 5.0)

    limiter = NotingLimiter(60_000, log)
    asyncio.run(dispatching(tmp_path, fake_zendesk, limiter, log, 1, scenario, make_store=ReadsFailingStore))
    assert statuses(tmp_path / "relay.db") == [("delivered", 1)] * 2


@pytest.mark.parametrize("status", [400, 409, 429, 500, 503])
def test_the_rate_limit_headers_of_a_failed_answer_reach_the_limiter(
    tmp_path: Path, fake_zendesk: FakeZendesk, status: int
) -> None:
    """Zendesk sends ``X-Rate-Limit`` on every answer (reference 1.5), 429 and 5xx included: a
    smaller advertised limit lowers the pace whatever the status, not only on a 2xx."""
    log: Log = []
    headers = {"X-Rate-Limit": "120", "X-Rate-Limit-Remaining": "0", "Retry-After": "0"}
    fake_zendesk.set_default(CannedResponse(status, "refused", headers, content_type="text/plain"))
    limiter = NotingLimiter(6000, log)

    async def scenario(store: NotingStore, dispatcher: Dispatcher) -> None:
        assert await until(lambda: statuses(tmp_path / "relay.db")[0][0] == "dead")

    asyncio.run(dispatching(tmp_path, fake_zendesk, limiter, log, 1, scenario))
    assert limiter.current_rate_per_minute <= 120 * 0.98 + 1e-9
