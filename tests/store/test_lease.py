"""Store protocol: leasing, lease expiry, outcomes (delivered / retry / dead), release, next_due."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from app.delivery.store import Delivery, Store
from app.status import DeliveryStatus
from tests.store.conftest import BIG, TTL, lease_until, new, run

PROBLEM = {"code": "upstream_unavailable", "status": 503, "detail": "Zendesk said 503 — réessayer"}
RESPONSE = {"status": 201, "id": "01HXYZ", "note": "ok ✓"}


def test_lease_takes_due_deliveries_of_that_destination_only(store: Store) -> None:
    zendesk = [new(destination="zendesk") for _ in range(3)]
    yotpo = [new(destination="yotpo") for _ in range(2)]

    async def scenario(s: Store) -> None:
        await s.enqueue([*zendesk, *yotpo], max_pending=BIG, idempotency_ttl=TTL)
        before = time.time()
        leased = await s.lease("zendesk", 10, 30.0)
        after = time.time()
        assert sorted(d.id for d in leased) == sorted(d.id for d in zendesk)
        for d in leased:
            assert d.status == DeliveryStatus.IN_FLIGHT
            assert d.attempts == 1
            assert d.destination == "zendesk"
            assert isinstance(d.lease_token, str)
            assert d.lease_token != ""
            assert d.request.body == {"n": 1}
            stored = await s.get(d.id)
            assert stored is not None
            assert stored.status == DeliveryStatus.IN_FLIGHT
            assert stored.attempts == 1
            assert stored.lease_token == d.lease_token
            assert before <= stored.updated_at <= after
        assert await s.lease("zendesk", 10, 30.0) == []
        assert await s.lease("nowhere", 10, 30.0) == []
        # yotpo's deliveries were not touched.
        for d in await s.get_many([d.id for d in yotpo]):
            assert (d.status, d.attempts, d.lease_token) == (DeliveryStatus.PENDING, 0, None)
        assert sorted(d.id for d in await s.lease("yotpo", 10, 30.0)) == sorted(d.id for d in yotpo)

    run(store, scenario)


def test_lease_takes_at_most_limit(store: Store) -> None:
    batch = [new() for _ in range(5)]

    async def scenario(s: Store) -> None:
        await s.enqueue(batch, max_pending=BIG, idempotency_ttl=TTL)
        first = await s.lease("zendesk", 2, 30.0)
        second = await s.lease("zendesk", 2, 30.0)
        third = await s.lease("zendesk", 2, 30.0)
        assert (len(first), len(second), len(third)) == (2, 2, 1)
        ids = [d.id for d in (*first, *second, *third)]
        assert sorted(ids) == sorted(d.id for d in batch)
        assert await s.lease("zendesk", 2, 30.0) == []

    run(store, scenario)


def test_concurrent_leases_never_share_a_delivery(store: Store) -> None:
    batch = [new() for _ in range(30)]

    async def scenario(s: Store) -> None:
        await s.enqueue(batch, max_pending=BIG, idempotency_ttl=TTL)
        results = await asyncio.gather(*(s.lease("zendesk", 4, 30.0) for _ in range(10)))
        ids = [d.id for got in results for d in got]
        assert len(ids) == 30
        assert sorted(ids) == sorted(d.id for d in batch)

    run(store, scenario)


def test_expired_lease_is_leased_again_with_a_new_token(store: Store) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        before = time.time()
        [first] = await s.lease("zendesk", 10, 1.0)
        assert first.attempts == 1
        again = await s.lease("zendesk", 10, 30.0)
        if time.time() < before + 1.0:  # not again while the lease holds
            assert again == []
            [second] = await lease_until(s, "zendesk", 30.0, 1)
        else:  # a loaded machine took over a second, so the lease had run out
            [second] = again
        assert second.id == d.id
        assert second.status == DeliveryStatus.IN_FLIGHT
        assert second.attempts == 2
        assert second.lease_token is not None
        assert second.lease_token != first.lease_token
        assert await s.lease("zendesk", 10, 30.0) == []

    run(store, scenario)


def test_mark_delivered_records_the_response(store: Store) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        [leased] = await s.lease("zendesk", 10, 30.0)
        before = time.time()
        assert await s.mark_delivered(leased, RESPONSE) is True
        after = time.time()
        got = await s.get(d.id)
        assert got is not None
        assert got.status == DeliveryStatus.DELIVERED
        assert got.response == RESPONSE
        assert got.lease_token is None
        assert got.attempts == 1
        assert got.last_problem is None
        assert before <= got.updated_at <= after
        assert await s.lease("zendesk", 10, 30.0) == []
        assert await s.next_due("zendesk") is None
        assert (await s.stats()).pending == {}
        # The lease is used up: a second outcome is refused.
        assert await s.mark_delivered(leased, RESPONSE) is False
        assert await s.mark_dead(leased, PROBLEM) is False
        assert (await s.get(d.id)).status == DeliveryStatus.DELIVERED  # type: ignore[union-attr]

    run(store, scenario)


def test_mark_dead_records_the_problem(store: Store) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        [leased] = await s.lease("zendesk", 10, 30.0)
        assert await s.mark_dead(leased, PROBLEM) is True
        got = await s.get(d.id)
        assert got is not None
        assert got.status == DeliveryStatus.DEAD
        assert got.last_problem == PROBLEM
        assert got.lease_token is None
        assert got.attempts == 1
        assert await s.lease("zendesk", 10, 30.0) == []
        stats = await s.stats()
        assert (stats.pending, stats.dead) == ({}, 1)
        assert await s.mark_retry(leased, time.time(), PROBLEM) is False
        assert (await s.get(d.id)).status == DeliveryStatus.DEAD  # type: ignore[union-attr]

    run(store, scenario)


def test_mark_retry_with_a_future_due_at(store: Store) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        [leased] = await s.lease("zendesk", 10, 30.0)
        due = time.time() + 1.0
        assert await s.mark_retry(leased, due, PROBLEM) is True
        got = await s.get(d.id)
        assert got is not None
        assert got.status == DeliveryStatus.PENDING
        assert got.due_at == due
        assert got.last_problem == PROBLEM
        assert got.lease_token is None
        assert got.attempts == 1
        assert await s.next_due("zendesk") == due
        assert (await s.stats()).pending == {"zendesk": 1}
        early = await s.lease("zendesk", 10, 30.0)
        if time.time() < due:  # a lease that returned before due_at ran before it: it must be empty
            assert early == []
            [again] = await lease_until(s, "zendesk", 30.0, 1)
        else:  # a loaded machine took over a second for the steps above, so it was due by then
            [again] = early
        assert time.time() >= due
        assert again.id == d.id
        assert again.attempts == 2
        assert again.last_problem == PROBLEM  # kept until the next outcome
        assert await s.mark_delivered(again, RESPONSE) is True

    run(store, scenario)


def test_mark_retry_due_in_the_past_is_leasable_at_once(store: Store) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        [leased] = await s.lease("zendesk", 10, 30.0)
        assert await s.mark_retry(leased, time.time() - 1, PROBLEM) is True
        [again] = await s.lease("zendesk", 10, 30.0)
        assert (again.id, again.attempts) == (d.id, 2)

    run(store, scenario)


Outcome = Callable[[Store, Delivery], Awaitable[bool]]
OUTCOMES: dict[str, Outcome] = {
    "delivered": lambda s, d: s.mark_delivered(d, RESPONSE),
    "retry": lambda s, d: s.mark_retry(d, time.time() + 60, PROBLEM),
    "dead": lambda s, d: s.mark_dead(d, PROBLEM),
    "release": lambda s, d: s.release(d),
}
EXPECTED_STATUS = {
    "delivered": DeliveryStatus.DELIVERED,
    "retry": DeliveryStatus.PENDING,
    "dead": DeliveryStatus.DEAD,
    "release": DeliveryStatus.PENDING,
}


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_outcome_with_a_stale_lease_is_refused(store: Store, outcome: str) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        [stale] = await s.lease("zendesk", 10, 0.05)
        [current] = await lease_until(s, "zendesk", 30.0, 1)
        assert current.lease_token != stale.lease_token
        assert await OUTCOMES[outcome](s, stale) is False
        got = await s.get(d.id)
        assert got is not None
        assert (got.status, got.lease_token, got.attempts) == (
            DeliveryStatus.IN_FLIGHT,
            current.lease_token,
            2,
        )
        assert got.last_problem is None
        assert got.response is None
        assert await OUTCOMES[outcome](s, current) is True
        got = await s.get(d.id)
        assert got is not None
        assert got.status == EXPECTED_STATUS[outcome]
        assert got.lease_token is None

    run(store, scenario)


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_outcome_for_a_never_leased_delivery_is_refused(store: Store, outcome: str) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        stored = await s.get(d.id)
        assert stored is not None
        assert await OUTCOMES[outcome](s, stored) is False
        got = await s.get(d.id)
        assert got == stored

    run(store, scenario)


def test_release_makes_it_due_now_without_counting_an_attempt(store: Store) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        [leased] = await s.lease("zendesk", 10, 3600.0)
        before = time.time()
        assert await s.release(leased) is True
        after = time.time()
        got = await s.get(d.id)
        assert got is not None
        assert (got.status, got.lease_token, got.attempts) == (DeliveryStatus.PENDING, None, 0)
        assert got.due_at is not None
        assert before <= got.due_at <= after
        next_due = await s.next_due("zendesk")
        assert next_due == got.due_at
        [again] = await s.lease("zendesk", 10, 30.0)
        assert (again.id, again.attempts) == (d.id, 1)
        assert again.lease_token != leased.lease_token
        assert await s.release(leased) is False

    run(store, scenario)


def test_next_due_reports_the_earliest(store: Store) -> None:
    a, b, c = new(), new(), new()
    other = new(destination="yotpo")

    async def scenario(s: Store) -> None:
        assert await s.next_due("zendesk") is None
        await s.enqueue([a, b, c], max_pending=BIG, idempotency_ttl=TTL)
        stored = {d.id: d for d in await s.get_many([a.id, b.id, c.id])}
        earliest = min(d.due_at for d in stored.values() if d.due_at is not None)
        assert await s.next_due("zendesk") == earliest
        assert await s.next_due("yotpo") is None

        leased = await s.lease("zendesk", 3, 30.0)
        now = time.time()
        by_id = {d.id: d for d in leased}
        assert await s.mark_retry(by_id[a.id], now + 50, PROBLEM) is True
        assert await s.mark_retry(by_id[b.id], now + 20, PROBLEM) is True
        assert await s.mark_delivered(by_id[c.id], RESPONSE) is True
        assert await s.next_due("zendesk") == now + 20

        await s.enqueue([other], max_pending=BIG, idempotency_ttl=TTL)
        stored_other = await s.get(other.id)
        assert stored_other is not None
        assert await s.next_due("yotpo") == stored_other.due_at
        assert await s.next_due("zendesk") == now + 20  # other destinations do not count

        # A delivery in flight is due again when its lease runs out.
        fresh = new()
        await s.enqueue([fresh], max_pending=BIG, idempotency_ttl=TTL)
        [leased_fresh] = await s.lease("zendesk", 1, 10.0)
        assert leased_fresh.id == fresh.id
        in_flight = await s.get(fresh.id)
        assert in_flight is not None
        assert in_flight.due_at is not None
        assert now + 10 <= in_flight.due_at <= time.time() + 10
        assert await s.next_due("zendesk") == in_flight.due_at

    run(store, scenario)


def test_outcome_after_expiry_is_kept_while_nobody_else_leased_it(store: Store) -> None:
    d = new()

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        [slow] = await s.lease("zendesk", 10, 0.02)
        await asyncio.sleep(0.05)  # the lease ran out, but no other worker took it
        assert await s.mark_delivered(slow, RESPONSE) is True
        got = await s.get(d.id)
        assert got is not None
        assert (got.status, got.response, got.attempts) == (DeliveryStatus.DELIVERED, RESPONSE, 1)
        assert await s.lease("zendesk", 10, 30.0) == []

    run(store, scenario)
