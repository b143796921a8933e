"""Store protocol: dead letters (list, replay, purge), stats and cleanup."""

from __future__ import annotations

import time

from app.delivery.store import DeadLetterFilter, Delivery, Store, StoreStats
from app.status import DeliveryStatus
from tests.store.conftest import BIG, TTL, new, run, tick


def problem(code: str) -> dict[str, object]:
    return {"code": code, "status": 400, "detail": f"{code} — détail"}


async def make_dead(s: Store, destination: str, mapping: str, code: str) -> Delivery:
    """Enqueue one delivery, lease it and send it to the dead letters; returns it as stored."""
    d = new(destination=destination, mapping=mapping)
    await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
    leased = [x for x in await s.lease(destination, 100, 30.0) if x.id == d.id]
    assert len(leased) == 1
    assert await s.mark_dead(leased[0], problem(code)) is True
    got = await s.get(d.id)
    assert got is not None
    assert got.status == DeliveryStatus.DEAD
    await tick()
    return got


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.id for d in deliveries]


def test_dead_letters_filters_newest_first(store: Store) -> None:
    async def scenario(s: Store) -> None:
        assert await s.dead_letters(DeadLetterFilter()) == []
        t0 = time.time()
        await tick()
        d1 = await make_dead(s, "zendesk", "orders", "bad_request")
        t1 = time.time()
        await tick()
        d2 = await make_dead(s, "zendesk", "profiles", "not_found")
        d3 = await make_dead(s, "yotpo", "orders", "bad_request")
        t3 = time.time()
        await tick()
        d4 = await make_dead(s, "zendesk", "orders", "unauthorized")
        # Neither pending nor delivered deliveries are dead letters.
        await s.enqueue([new(mapping="orders")], max_pending=BIG, idempotency_ttl=TTL)

        everything = await s.dead_letters(DeadLetterFilter())
        assert ids(everything) == [d4.id, d3.id, d2.id, d1.id]
        assert everything[3] == d1
        assert everything[3].last_problem == problem("bad_request")

        assert ids(await s.dead_letters(DeadLetterFilter(destination="zendesk"))) == [d4.id, d2.id, d1.id]
        assert ids(await s.dead_letters(DeadLetterFilter(destination="yotpo"))) == [d3.id]
        assert ids(await s.dead_letters(DeadLetterFilter(mapping="orders"))) == [d4.id, d3.id, d1.id]
        assert ids(await s.dead_letters(DeadLetterFilter(code="bad_request"))) == [d3.id, d1.id]
        assert ids(await s.dead_letters(DeadLetterFilter(code="nope"))) == []
        assert ids(await s.dead_letters(DeadLetterFilter(destination="zendesk", code="bad_request"))) == [
            d1.id
        ]
        assert ids(await s.dead_letters(DeadLetterFilter(mapping="orders", destination="yotpo"))) == [d3.id]
        assert ids(await s.dead_letters(DeadLetterFilter(since=t1))) == [d4.id, d3.id, d2.id]
        assert ids(await s.dead_letters(DeadLetterFilter(until=t1))) == [d1.id]
        assert ids(await s.dead_letters(DeadLetterFilter(since=t1, until=t3))) == [d3.id, d2.id]
        assert ids(await s.dead_letters(DeadLetterFilter(since=t0, until=t0))) == []
        # since is inclusive, until exclusive, both on the time it became a dead letter.
        assert ids(await s.dead_letters(DeadLetterFilter(since=d2.updated_at, until=d3.updated_at))) == [
            d2.id
        ]
        assert ids(await s.dead_letters(DeadLetterFilter(ids=(d1.id, d3.id, "no-such-id")))) == [d3.id, d1.id]
        assert ids(await s.dead_letters(DeadLetterFilter(ids=(d1.id,), mapping="profiles"))) == []
        assert ids(await s.dead_letters(DeadLetterFilter(limit=2))) == [d4.id, d3.id]
        assert ids(await s.dead_letters(DeadLetterFilter(limit=1, mapping="profiles"))) == [d2.id]

    run(store, scenario)


def test_replay_moves_dead_letters_back_to_pending(store: Store) -> None:
    async def scenario(s: Store) -> None:
        d1 = await make_dead(s, "zendesk", "orders", "bad_request")
        d2 = await make_dead(s, "zendesk", "profiles", "bad_request")
        d3 = await make_dead(s, "yotpo", "orders", "bad_request")
        pending = new()
        await s.enqueue([pending], max_pending=BIG, idempotency_ttl=TTL)

        # Only dead letters are replayed, and only those matching.
        assert await s.replay(DeadLetterFilter(ids=(pending.id,))) == 0
        assert await s.replay(DeadLetterFilter(code="nope")) == 0
        before = time.time()
        assert await s.replay(DeadLetterFilter(destination="zendesk")) == 2
        after = time.time()
        for d in await s.get_many([d1.id, d2.id]):
            assert d.status == DeliveryStatus.PENDING
            assert d.attempts == 0
            assert d.lease_token is None
            assert d.due_at is not None
            assert before <= d.due_at <= after
        assert ids(await s.dead_letters(DeadLetterFilter())) == [d3.id]
        stats = await s.stats()
        assert (stats.pending, stats.dead) == ({"zendesk": 3}, 1)
        leased = await s.lease("zendesk", 10, 30.0)
        assert sorted(ids(leased)) == sorted([d1.id, d2.id, pending.id])
        assert {d.id: d.attempts for d in leased} == {d1.id: 1, d2.id: 1, pending.id: 1}
        assert await s.replay(DeadLetterFilter(ids=(d1.id,))) == 0  # in flight, not dead

    run(store, scenario)


def test_purge_deletes_matching_dead_letters_only(store: Store) -> None:
    async def scenario(s: Store) -> None:
        d1 = await make_dead(s, "zendesk", "orders", "bad_request")
        d2 = await make_dead(s, "zendesk", "orders", "not_found")
        d3 = await make_dead(s, "yotpo", "orders", "not_found")
        pending = new()
        await s.enqueue([pending], max_pending=BIG, idempotency_ttl=TTL)

        assert await s.purge(DeadLetterFilter(ids=(pending.id,))) == 0
        assert await s.get(pending.id) is not None
        assert await s.purge(DeadLetterFilter(code="not_found", destination="zendesk")) == 1
        assert await s.get(d2.id) is None
        assert ids(await s.dead_letters(DeadLetterFilter())) == [d3.id, d1.id]
        assert (await s.stats()).dead == 2
        assert await s.purge(DeadLetterFilter()) == 2
        assert await s.get_many([d1.id, d2.id, d3.id]) == []
        assert await s.dead_letters(DeadLetterFilter()) == []
        assert (await s.stats()).dead == 0
        assert await s.get(pending.id) is not None
        assert await s.purge(DeadLetterFilter()) == 0

    run(store, scenario)


def test_stats_counts_pending_and_in_flight_per_destination_and_dead(store: Store) -> None:
    async def scenario(s: Store) -> None:
        assert await s.stats() == StoreStats(pending={}, oldest_pending_at={}, dead=0)
        z = [new(destination="zendesk") for _ in range(3)]
        await s.enqueue(z, max_pending=BIG, idempotency_ttl=TTL)
        await tick()
        y = [new(destination="yotpo") for _ in range(2)]
        await s.enqueue(
            [*y, new(destination="yotpo", status=DeliveryStatus.DRY_RUN)],
            max_pending=BIG,
            idempotency_ttl=TTL,
        )
        stored = {d.id: d for d in await s.get_many([d.id for d in (*z, *y)])}

        stats = await s.stats()
        assert stats.pending == {"zendesk": 3, "yotpo": 2}
        assert stats.total_pending == 5
        assert stats.dead == 0
        assert stats.oldest_pending_at == {
            "zendesk": min(stored[d.id].created_at for d in z),
            "yotpo": min(stored[d.id].created_at for d in y),
        }

        leased = await s.lease("zendesk", 3, 30.0)
        assert (await s.stats()).pending == {"zendesk": 3, "yotpo": 2}  # in flight counts
        assert await s.mark_delivered(leased[0], {"status": 200}) is True
        assert await s.mark_dead(leased[1], {"code": "bad_request"}) is True
        assert await s.mark_retry(leased[2], time.time() + 60, {"code": "timeout"}) is True
        stats = await s.stats()
        assert stats.pending == {"zendesk": 1, "yotpo": 2}
        assert stats.dead == 1
        assert stats.oldest_pending_at["zendesk"] == stored[leased[2].id].created_at

    run(store, scenario)


def test_cleanup_drops_finished_deliveries_older_than_the_cutoff(store: Store) -> None:
    async def scenario(s: Store) -> None:
        old = [new(), new()]
        old_dry = new(status=DeliveryStatus.DRY_RUN)
        # keys that expire before the cutoff: a live key may keep its delivery (SQLite)
        await s.enqueue([*old, old_dry], max_pending=BIG, idempotency_ttl=0.001)
        leased = {d.id: d for d in await s.lease("zendesk", 10, 30.0)}
        assert await s.mark_delivered(leased[old[0].id], {"status": 200}) is True
        assert await s.mark_dead(leased[old[1].id], {"code": "bad_request"}) is True
        still_pending = new()
        await s.enqueue([still_pending], max_pending=BIG, idempotency_ttl=TTL)
        await tick()
        cutoff = time.time()
        await tick()
        recent = new(destination="yotpo")
        recent_dry = new(status=DeliveryStatus.DRY_RUN)
        await s.enqueue([recent, recent_dry], max_pending=BIG, idempotency_ttl=TTL)
        [leased_recent] = await s.lease("yotpo", 10, 30.0)
        assert await s.mark_delivered(leased_recent, {"status": 200}) is True

        assert await s.cleanup(cutoff) == 2
        assert await s.get(old[0].id) is None
        assert await s.get(old_dry.id) is None
        kept = {
            d.id: d.status for d in await s.get_many([old[1].id, still_pending.id, recent.id, recent_dry.id])
        }
        assert kept[old[1].id] == DeliveryStatus.DEAD  # dead letters wait for a replay or purge
        assert kept[recent_dry.id] == DeliveryStatus.DRY_RUN
        assert kept[still_pending.id] == DeliveryStatus.PENDING
        assert kept[recent.id] == DeliveryStatus.DELIVERED
        assert len(kept) == 4
        assert await s.cleanup(cutoff) == 0

    run(store, scenario)
