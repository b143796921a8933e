"""Store protocol: enqueue, reading back, dry runs, idempotency keys and the pending bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.delivery.store import DeadLetterFilter, EnqueueResult, Overloaded, Store, StoreStats
from app.destinations.base import OutboundRequest
from app.status import DeliveryStatus, ResultStatus
from tests.store.conftest import BIG, TTL, WAIT_LIMIT, new, run

BODY = {
    "event": {
        "source": "adobe",
        "type": "order.placed",
        "description": "Grüße aus Köln — 注文 ✓ 🚀",
        "properties": {"nul": "a\x00b", "only_nul": "\x00", "empty": "", "quote": 'say "hi"\n'},
    },
    "profile": {"identifiers": [{"type": "email", "value": "zoë@example.com"}]},
    "numbers": [0, -1, 2**53 + 1, 1.5, -0.25, 1e300],
    "flags": [True, False, None],
    "nested": {"a": {"b": {"c": []}}, "": {}},
}


def test_enqueue_queues_and_round_trips_every_field(store: Store) -> None:
    first = new(
        mapping="orders",
        destination="zendesk",
        event_id="evt-ü-1",
        body=BODY,
        method="PATCH",
        path="/api/v2/user_profiles/events?x=ä",
        request_id="req-123",
    )
    second = new(mapping="other", destination="yotpo", event_id=None, body=["x\x00", "é"], method="PUT")

    async def scenario(s: Store) -> None:
        before = time.time()
        results = await s.enqueue([first, second], max_pending=BIG, idempotency_ttl=TTL)
        after = time.time()
        assert results == [
            EnqueueResult(ResultStatus.QUEUED, first.id),
            EnqueueResult(ResultStatus.QUEUED, second.id),
        ]

        got = await s.get(first.id)
        assert got is not None
        assert got.id == first.id
        assert got.mapping == "orders"
        assert got.destination == "zendesk"
        assert got.event_id == "evt-ü-1"
        assert got.request_id == "req-123"
        assert got.request == OutboundRequest("PATCH", "/api/v2/user_profiles/events?x=ä", BODY)
        assert got.request.body["event"]["properties"]["nul"] == "a\x00b"
        assert got.status == DeliveryStatus.PENDING
        assert got.attempts == 0
        assert got.lease_token is None
        assert got.last_problem is None
        assert got.response is None
        assert before <= got.created_at <= after
        assert before <= got.updated_at <= after
        assert got.due_at is not None
        assert before <= got.due_at <= after

        many = await s.get_many([second.id, "no-such-id", first.id])
        assert sorted(d.id for d in many) == sorted([first.id, second.id])
        by_id = {d.id: d for d in many}
        assert by_id[first.id] == got
        other = by_id[second.id]
        assert other.mapping == "other"
        assert other.destination == "yotpo"
        assert other.event_id is None
        assert other.request_id is None
        assert other.request == OutboundRequest("PUT", "/api/v2/events", ["x\x00", "é"])
        assert other.status == DeliveryStatus.PENDING

    run(store, scenario)


def test_get_unknown_and_get_many_empty(store: Store) -> None:
    async def scenario(s: Store) -> None:
        assert await s.get("no-such-id") is None
        assert await s.get_many([]) == []
        assert await s.get_many(["no-such-id", "nor-this"]) == []
        assert await s.enqueue([], max_pending=BIG, idempotency_ttl=TTL) == []

    run(store, scenario)


def test_dry_run_is_stored_but_never_leased(store: Store) -> None:
    dry = new(status=DeliveryStatus.DRY_RUN, destination="zendesk", body={"k": "v"})
    real = new(destination="zendesk")

    async def scenario(s: Store) -> None:
        results = await s.enqueue([dry, real], max_pending=BIG, idempotency_ttl=TTL)
        assert results == [
            EnqueueResult(DeliveryStatus.DRY_RUN, dry.id),
            EnqueueResult(ResultStatus.QUEUED, real.id),
        ]
        got = await s.get(dry.id)
        assert got is not None
        assert got.status == DeliveryStatus.DRY_RUN
        assert got.request == OutboundRequest("POST", "/api/v2/events", {"k": "v"})
        assert got.attempts == 0

        leased = await s.lease("zendesk", 10, 30.0)
        assert [d.id for d in leased] == [real.id]
        assert await s.lease("zendesk", 10, 30.0) == []
        assert (await s.get(dry.id)).status == DeliveryStatus.DRY_RUN  # type: ignore[union-attr]
        stats = await s.stats()
        assert stats.pending == {"zendesk": 1}  # the leased one; the dry run is not pending

    run(store, scenario)


def test_dry_run_only_store_has_nothing_due(store: Store) -> None:
    async def scenario(s: Store) -> None:
        dry = new(status=DeliveryStatus.DRY_RUN, destination="zendesk")
        assert await s.enqueue([dry], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(DeliveryStatus.DRY_RUN, dry.id)
        ]
        assert await s.next_due("zendesk") is None
        assert await s.lease("zendesk", 10, 30.0) == []
        assert await s.stats() == StoreStats(pending={}, oldest_pending_at={}, dead=0)

    run(store, scenario)


# -- idempotency ---------------------------------------------------------------------------------


def test_same_mapping_and_event_id_is_a_duplicate_of_the_first(store: Store) -> None:
    first = new(mapping="orders", event_id="evt-1")
    again = new(mapping="orders", event_id="evt-1", body={"other": True})
    third = new(mapping="orders", event_id="evt-1")

    async def scenario(s: Store) -> None:
        assert await s.enqueue([first], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, first.id)
        ]
        assert await s.enqueue([again], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.DUPLICATE, first.id)
        ]
        assert await s.enqueue([third], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.DUPLICATE, first.id)
        ]
        assert await s.get(again.id) is None
        assert await s.get(third.id) is None
        kept = await s.get(first.id)
        assert kept is not None
        assert kept.request.body == {"n": 1}
        assert (await s.stats()).pending == {"zendesk": 1}

    run(store, scenario)


def test_duplicate_within_one_enqueue_call(store: Store) -> None:
    a = new(mapping="orders", event_id="evt-1")
    b = new(mapping="orders", event_id="evt-1")
    c = new(mapping="profiles", event_id="evt-1")

    async def scenario(s: Store) -> None:
        results = await s.enqueue([a, b, c], max_pending=BIG, idempotency_ttl=TTL)
        assert results == [
            EnqueueResult(ResultStatus.QUEUED, a.id),
            EnqueueResult(ResultStatus.DUPLICATE, a.id),
            EnqueueResult(ResultStatus.QUEUED, c.id),
        ]
        assert sorted(d.id for d in await s.get_many([a.id, b.id, c.id])) == sorted([a.id, c.id])

    run(store, scenario)


def test_different_mapping_same_event_id_is_not_a_duplicate(store: Store) -> None:
    a = new(mapping="orders", event_id="evt-1")
    b = new(mapping="profiles", event_id="evt-1")
    # Same event id and destination, different mapping: still two deliveries.
    c = new(mapping="orders-v2", event_id="evt-1", destination="zendesk")

    async def scenario(s: Store) -> None:
        assert await s.enqueue([a], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, a.id)
        ]
        assert await s.enqueue([b], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, b.id)
        ]
        assert await s.enqueue([c], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, c.id)
        ]
        assert len(await s.get_many([a.id, b.id, c.id])) == 3

    run(store, scenario)


def test_no_event_id_is_never_a_duplicate(store: Store) -> None:
    batch = [new(mapping="orders", event_id=None) for _ in range(3)]
    later = new(mapping="orders", event_id=None)

    async def scenario(s: Store) -> None:
        results = await s.enqueue(batch, max_pending=BIG, idempotency_ttl=TTL)
        assert results == [EnqueueResult(ResultStatus.QUEUED, d.id) for d in batch]
        assert await s.enqueue([later], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, later.id)
        ]
        assert (await s.stats()).pending == {"zendesk": 4}

    run(store, scenario)


def test_dry_run_is_remembered_for_idempotency(store: Store) -> None:
    dry = new(mapping="orders", event_id="evt-1", status=DeliveryStatus.DRY_RUN)
    again = new(mapping="orders", event_id="evt-1", status=DeliveryStatus.DRY_RUN)

    async def scenario(s: Store) -> None:
        assert await s.enqueue([dry], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(DeliveryStatus.DRY_RUN, dry.id)
        ]
        assert await s.enqueue([again], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.DUPLICATE, dry.id)
        ]

    run(store, scenario)


def test_after_the_ttl_the_same_key_is_queued_again(store: Store) -> None:
    first = new(mapping="orders", event_id="evt-ttl")

    async def scenario(s: Store) -> None:
        before = time.time()
        assert await s.enqueue([first], max_pending=BIG, idempotency_ttl=1.0) == [
            EnqueueResult(ResultStatus.QUEUED, first.id)
        ]
        early = new(mapping="orders", event_id="evt-ttl")
        [early_result] = await s.enqueue([early], max_pending=BIG, idempotency_ttl=1.0)
        if time.time() < before + 1.0:  # it ran while the key was live (a loaded machine may be slower)
            assert early_result == EnqueueResult(ResultStatus.DUPLICATE, first.id)
        else:
            assert early_result in (
                EnqueueResult(ResultStatus.DUPLICATE, first.id),
                EnqueueResult(ResultStatus.QUEUED, early.id),
            )
        holder = first.id if early_result.status == ResultStatus.DUPLICATE else early.id
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            await asyncio.sleep(0.02)
            later = new(mapping="orders", event_id="evt-ttl")
            [result] = await s.enqueue([later], max_pending=BIG, idempotency_ttl=TTL)
            if result.status == ResultStatus.QUEUED or time.monotonic() > deadline:
                break
            assert result == EnqueueResult(ResultStatus.DUPLICATE, holder)
        assert result == EnqueueResult(ResultStatus.QUEUED, later.id)
        # The new delivery owns the key now, for its own (long) TTL.
        last = new(mapping="orders", event_id="evt-ttl")
        assert await s.enqueue([last], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.DUPLICATE, later.id)
        ]
        assert len(await s.get_many([first.id, later.id])) == 2

    run(store, scenario)


# -- the pending bound ---------------------------------------------------------------------------


def test_overloaded_stores_nothing_from_that_call(store: Store) -> None:
    stored = [new(event_id=f"evt-{i}") for i in range(3)]
    refused = [
        new(event_id="evt-new-a"),
        new(event_id="evt-new-b", status=DeliveryStatus.DRY_RUN),
        new(event_id=None),
    ]

    async def scenario(s: Store) -> None:
        assert await s.enqueue(stored, max_pending=4, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, d.id) for d in stored
        ]
        # 3 pending + 2 new pending > 4: refused as a whole, the dry run included.
        with pytest.raises(Overloaded) as caught:
            await s.enqueue(refused, max_pending=4, idempotency_ttl=TTL)
        assert caught.value.pending == 3
        assert caught.value.bound == 4
        assert await s.get_many([d.id for d in refused]) == []
        assert (await s.stats()).pending == {"zendesk": 3}
        # Nothing of the refused call was remembered: its event ids are new later on.
        retry = [new(event_id="evt-new-a"), new(event_id="evt-new-b", status=DeliveryStatus.DRY_RUN)]
        assert await s.enqueue(retry, max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, retry[0].id),
            EnqueueResult(DeliveryStatus.DRY_RUN, retry[1].id),
        ]

    run(store, scenario)


def test_bound_is_inclusive_and_counts_only_pending(store: Store) -> None:
    async def scenario(s: Store) -> None:
        two = [new(), new()]
        assert await s.enqueue(two, max_pending=2, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, d.id) for d in two
        ]
        with pytest.raises(Overloaded) as caught:
            await s.enqueue([new()], max_pending=2, idempotency_ttl=TTL)
        assert (caught.value.pending, caught.value.bound) == (2, 2)
        # Dry runs are kept only, never sent: they do not count against the bound.
        dry = [new(status=DeliveryStatus.DRY_RUN) for _ in range(5)]
        assert await s.enqueue(dry, max_pending=2, idempotency_ttl=TTL) == [
            EnqueueResult(DeliveryStatus.DRY_RUN, d.id) for d in dry
        ]
        # Other destinations share the bound.
        with pytest.raises(Overloaded):
            await s.enqueue([new(destination="yotpo")], max_pending=2, idempotency_ttl=TTL)
        assert (await s.stats()).pending == {"zendesk": 2}

    run(store, scenario)


def test_finished_deliveries_free_the_bound_and_retries_do_not(store: Store) -> None:
    async def scenario(s: Store) -> None:
        three = [new(), new(), new()]
        await s.enqueue(three, max_pending=3, idempotency_ttl=TTL)
        leased = await s.lease("zendesk", 3, 30.0)
        assert len(leased) == 3
        # In flight still counts.
        with pytest.raises(Overloaded):
            await s.enqueue([new()], max_pending=3, idempotency_ttl=TTL)
        assert await s.mark_retry(leased[0], time.time() + 60, {"code": "upstream_unavailable"}) is True
        with pytest.raises(Overloaded):
            await s.enqueue([new()], max_pending=3, idempotency_ttl=TTL)
        assert await s.mark_delivered(leased[1], {"status": 200}) is True
        assert await s.mark_dead(leased[2], {"code": "bad_request"}) is True
        one = new()
        assert await s.enqueue([one], max_pending=3, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, one.id)
        ]
        assert (await s.stats()).pending == {"zendesk": 2}
        # A replayed dead letter is pending again and counts.
        assert await s.replay(DeadLetterFilter(ids=(leased[2].id,))) == 1
        with pytest.raises(Overloaded) as caught:
            await s.enqueue([new()], max_pending=3, idempotency_ttl=TTL)
        assert caught.value.pending == 3

    run(store, scenario)


def test_duplicates_do_not_count_against_the_bound(store: Store) -> None:
    first = new(mapping="orders", event_id="evt-1")
    again = new(mapping="orders", event_id="evt-1")

    async def scenario(s: Store) -> None:
        await s.enqueue([first], max_pending=1, idempotency_ttl=TTL)
        assert await s.enqueue([again], max_pending=1, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.DUPLICATE, first.id)
        ]

    run(store, scenario)
