"""Store protocol: each delivery's attempt history, and ``trace`` of one event id."""

from __future__ import annotations

import asyncio
import time

from app.delivery.store import AttemptRecord, DeadLetterFilter, Delivery, Store
from app.status import SUCCESS_CODE, AttemptOutcome, DeliveryStatus
from tests.store.conftest import BIG, TTL, Backend, lease_until, new, run, tick


def attempt(outcome: str, code: str, status: int | None = 500, latency: float | None = 12.5) -> AttemptRecord:
    return AttemptRecord(round(time.time(), 3), outcome, code, status, latency)


async def lease_one(s: Store, destination: str = "zendesk") -> Delivery:
    [leased] = await lease_until(s, destination, 30.0, 1)
    return leased


def test_history_is_recorded_in_order_with_each_outcome(store: Store) -> None:
    d = new(event_id="evt-1")
    first = attempt(AttemptOutcome.RETRY, "upstream_unavailable", 503, 40.0)
    second = attempt(AttemptOutcome.RETRY, "timeout", None, None)
    third = attempt(AttemptOutcome.DELIVERED, SUCCESS_CODE, 201, 8.25)

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        assert [t.history for t in await s.trace("evt-1")] == [()]
        assert await s.mark_retry(await lease_one(s), time.time(), {"code": "upstream_unavailable"}, first)
        assert await s.release(await lease_one(s))  # given back unsent: no attempt
        assert await s.mark_retry(await lease_one(s), time.time(), {"code": "timeout"}, second)
        assert await s.mark_delivered(await lease_one(s), {"status": 201}, third)
        [traced] = await s.trace("evt-1")
        assert traced.delivery.id == d.id
        assert traced.delivery.status == DeliveryStatus.DELIVERED
        assert traced.delivery.attempts == 3
        assert traced.history == (first, second, third)
        assert [a.to_dict() for a in traced.history][2] == {
            "at": third.at,
            "outcome": "delivered",
            "code": "ok",
            "upstream_status": 201,
            "latency_ms": 8.25,
        }

    run(store, scenario)


def test_a_dead_letter_keeps_its_history_and_an_outcome_without_attempt_adds_none(store: Store) -> None:
    d = new(event_id="evt-1")
    dead = attempt(AttemptOutcome.DEAD, "bad_request", 400)

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        assert await s.mark_retry(await lease_one(s), time.time(), {"code": "timeout"})  # no attempt given
        assert await s.mark_dead(await lease_one(s), {"code": "bad_request"}, dead)
        [traced] = await s.trace("evt-1")
        assert traced.delivery.status == DeliveryStatus.DEAD
        assert traced.history == (dead,)

    run(store, scenario)


def test_an_attempt_is_not_recorded_when_the_lease_was_lost(store: Store) -> None:
    d = new(event_id="evt-1")
    late = attempt(AttemptOutcome.DELIVERED, SUCCESS_CODE, 200)
    current = attempt(AttemptOutcome.RETRY, "rate_limited", 429)

    async def scenario(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        [old] = await s.lease("zendesk", 10, 0.05)
        await asyncio.sleep(0.1)  # the lease runs out; another worker takes it
        new_lease = await lease_one(s)
        assert await s.mark_delivered(old, {"status": 200}, late) is False
        assert await s.mark_dead(old, {"code": "x"}, late) is False
        assert [t.history for t in await s.trace("evt-1")] == [()]
        assert await s.mark_retry(new_lease, time.time() + 60, {"code": "rate_limited"}, current) is True
        assert await s.mark_retry(new_lease, time.time(), {"code": "rate_limited"}, current) is False
        assert [t.history for t in await s.trace("evt-1")] == [(current,)]

    run(store, scenario)


def test_history_survives_a_restart(backend: Backend) -> None:
    d = new(event_id="evt-1")
    recorded = attempt(AttemptOutcome.DELIVERED, "verified", 200, 3.0)

    async def first_life(s: Store) -> None:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        assert await s.mark_delivered(await lease_one(s), {"status": 200}, recorded)

    async def second_life(s: Store) -> list[tuple[str, tuple[AttemptRecord, ...]]]:
        return [(t.delivery.id, t.history) for t in await s.trace("evt-1")]

    run(backend.make(), first_life)
    assert run(backend.make(), second_life) == [(d.id, (recorded,))]


def test_trace_finds_every_delivery_of_an_event_oldest_first(store: Store) -> None:
    to_zendesk = new(mapping="orders", destination="zendesk", event_id="evt-1")
    profile = new(mapping="profiles", destination="zendesk", event_id="evt-1")
    to_yotpo = new(mapping="reviews", destination="yotpo", event_id="evt-1")
    dry = new(mapping="trial", destination="zendesk", event_id="evt-1", status=DeliveryStatus.DRY_RUN)
    others = [new(mapping="orders", event_id="evt-2"), new(mapping="orders", event_id=None)]
    sent = attempt(AttemptOutcome.DELIVERED, SUCCESS_CODE, 202)

    async def scenario(s: Store) -> None:
        for d in (to_zendesk, profile, to_yotpo, dry, *others):
            await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
            await tick()
        # a duplicate of the first is not stored, so not traced
        await s.enqueue([new(mapping="orders", event_id="evt-1")], max_pending=BIG, idempotency_ttl=TTL)
        [leased] = await lease_until(s, "yotpo", 30.0, 1)
        assert await s.mark_delivered(leased, {"status": 202}, sent)

        traced = await s.trace("evt-1")
        assert [t.delivery.id for t in traced] == [to_zendesk.id, profile.id, to_yotpo.id, dry.id]
        assert [(t.delivery.mapping, t.delivery.destination, t.delivery.status) for t in traced] == [
            ("orders", "zendesk", DeliveryStatus.PENDING),
            ("profiles", "zendesk", DeliveryStatus.PENDING),
            ("reviews", "yotpo", DeliveryStatus.DELIVERED),
            ("trial", "zendesk", DeliveryStatus.DRY_RUN),
        ]
        assert [t.history for t in traced] == [(), (), (sent,), ()]
        assert traced[0].delivery == await s.get(to_zendesk.id)
        assert [t.delivery.id for t in await s.trace("evt-1", limit=2)] == [to_zendesk.id, profile.id]
        assert [t.delivery.id for t in await s.trace("evt-2")] == [others[0].id]
        assert await s.trace("evt-unknown") == []

    run(store, scenario)


def test_one_enqueue_of_many_is_traced_in_a_stable_order(store: Store) -> None:
    """Deliveries stored together have one creation time: they come in the order of their ids."""
    batch = [new(mapping=f"m{n}", event_id="evt-1") for n in range(5)]

    async def scenario(s: Store) -> list[str]:
        await s.enqueue(batch, max_pending=BIG, idempotency_ttl=TTL)
        return [t.delivery.id for t in await s.trace("evt-1")]

    assert run(store, scenario) == sorted(d.id for d in batch)


def test_cleanup_and_purge_take_the_trace_with_them(store: Store) -> None:
    done = new(event_id="evt-done")
    dead = new(event_id="evt-dead", destination="yotpo")
    kept = new(event_id="evt-kept", destination="elsewhere")

    async def scenario(s: Store) -> None:
        await s.enqueue([done, dead], max_pending=BIG, idempotency_ttl=0.001)
        await s.enqueue([kept], max_pending=BIG, idempotency_ttl=TTL)
        assert await s.mark_delivered(
            await lease_one(s), {"status": 200}, attempt(AttemptOutcome.DELIVERED, SUCCESS_CODE, 200)
        )
        [leased] = await lease_until(s, "yotpo", 30.0, 1)
        assert await s.mark_dead(leased, {"code": "bad_request"}, attempt(AttemptOutcome.DEAD, "bad_request"))
        await asyncio.sleep(0.01)  # the short idempotency TTL runs out
        assert len(await s.trace("evt-done")) == 1
        assert await s.cleanup(time.time() + 60) == 1
        assert await s.trace("evt-done") == []
        assert await s.purge(DeadLetterFilter()) == 1
        assert await s.trace("evt-dead") == []
        assert [t.delivery.id for t in await s.trace("evt-kept")] == [kept.id]

    run(store, scenario)
