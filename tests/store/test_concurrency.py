"""Store protocol: many tasks at once."""

from __future__ import annotations

import asyncio

from app.delivery.store import EnqueueResult, Store
from app.status import DeliveryStatus, ResultStatus
from tests.store.conftest import BIG, TTL, new, run


def test_200_concurrent_enqueues_all_succeed(store: Store) -> None:
    batches = [[new(destination=f"dest-{i % 4}", event_id=f"evt-{i}")] for i in range(200)]

    async def scenario(s: Store) -> None:
        results = await asyncio.gather(
            *(s.enqueue(batch, max_pending=BIG, idempotency_ttl=TTL) for batch in batches)
        )
        assert results == [[EnqueueResult(ResultStatus.QUEUED, batch[0].id)] for batch in batches]
        assert len({r[0].delivery_id for r in results}) == 200
        stored = await s.get_many([batch[0].id for batch in batches])
        assert len(stored) == 200
        assert {d.status for d in stored} == {DeliveryStatus.PENDING}
        assert (await s.stats()).pending == {f"dest-{i}": 50 for i in range(4)}

    run(store, scenario)


def test_concurrent_enqueues_of_one_event_queue_exactly_one(store: Store) -> None:
    racers = [new(mapping="orders", event_id="evt-race") for _ in range(20)]

    async def scenario(s: Store) -> None:
        results = await asyncio.gather(
            *(s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL) for d in racers)
        )
        flat = [r for rs in results for r in rs]
        queued = [r for r in flat if r.status == ResultStatus.QUEUED]
        assert len(queued) == 1
        winner = queued[0].delivery_id
        assert winner in {d.id for d in racers}
        assert sorted(flat, key=lambda r: r.status) == sorted(
            [EnqueueResult(ResultStatus.DUPLICATE, winner)] * 19
            + [EnqueueResult(ResultStatus.QUEUED, winner)],
            key=lambda r: r.status,
        )
        assert [d.id for d in await s.get_many([d.id for d in racers])] == [winner]
        assert (await s.stats()).pending == {"zendesk": 1}

    run(store, scenario)


def test_concurrent_enqueues_respect_the_bound(store: Store) -> None:
    async def scenario(s: Store) -> None:
        calls = [[new(), new()] for _ in range(10)]
        results = await asyncio.gather(
            *(s.enqueue(batch, max_pending=7, idempotency_ttl=TTL) for batch in calls), return_exceptions=True
        )
        accepted = [r for r in results if isinstance(r, list)]
        refused = [r for r in results if not isinstance(r, list)]
        assert len(accepted) == 3
        assert len(refused) == 7
        assert {type(r).__name__ for r in refused} == {"Overloaded"}
        assert (await s.stats()).pending == {"zendesk": 6}

    run(store, scenario)
