"""Write health as each store notes it (``/readyz`` reads it), and the Redis store's lease whose
answer was lost, given back before the next lease instead of waiting out its expiry."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.delivery.redis_store import RedisStore
from app.delivery.store import Store, StoreUnavailable
from tests.fakes.redis_server import RedisServer
from tests.fakes.reply_dropping_proxy import ReplyDroppingProxy
from tests.store.conftest import BIG, TTL, new, run


def test_a_write_and_a_probe_are_noted_as_successes(store: Store) -> None:
    async def scenario(store: Store) -> None:
        health = store.write_health
        assert health.failure is None
        await store.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL)
        first = health.last_success_at
        assert first is not None
        await asyncio.sleep(0.01)
        await store.probe()
        assert health.last_success_at is not None and health.last_success_at > first
        assert health.failure is None and health.describe() is None

    run(store, scenario)


def test_redis_a_lease_whose_answer_was_lost_is_given_back_before_the_next(redis_server: RedisServer) -> None:
    """Redis ran the LEASE and went away before answering: the deliveries it took were in
    flight under a lease nobody knew, for the whole lease (60 s by default)."""
    prefix = f"test-{uuid.uuid4().hex}"

    async def scenario(proxy: ReplyDroppingProxy) -> None:
        store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix)
        await store.open()
        try:
            assert await store.lease("zendesk", 10, 60.0) == []  # the script is loaded (EVALSHA)
            stored = new()
            await store.enqueue([stored], max_pending=BIG, idempotency_ttl=TTL)
            proxy.drop_next_reply()
            with pytest.raises(StoreUnavailable):
                await store.lease("zendesk", 10, 60.0)
            assert proxy.dropped == 1
            failure = store.write_health.failure
            assert failure is not None and failure.reason.startswith("Redis: ")
            taken = await store.get(stored.id)
            assert taken is not None and taken.status == "in_flight"  # Redis did run it

            leased = await store.lease("zendesk", 10, 60.0)
            assert [d.id for d in leased] == [stored.id]
            assert leased[0].attempts == 1  # the unanswered attempt is not counted
            assert store.write_health.failure is None
        finally:
            await store.close()

    with ReplyDroppingProxy(redis_server.port) as proxy:
        asyncio.run(scenario(proxy))
