"""Store protocol: what was acknowledged survives closing the store and opening a new one."""

from __future__ import annotations

import time

import pytest

from app.delivery.store import DeadLetterFilter, Delivery, EnqueueResult, Overloaded, Store
from app.status import DeliveryStatus, ResultStatus
from tests.store.conftest import BIG, TTL, Backend, new, run

BODY = {"text": "Grüße \x00 注文 🚀", "n": [1, 2.5, None, True]}


def test_everything_survives_a_restart(backend: Backend) -> None:
    pending = new(destination="zendesk", mapping="orders", event_id="evt-p", body=BODY, request_id="r1")
    retry = new(destination="zendesk", mapping="orders", event_id="evt-r")
    delivered = new(destination="zendesk", mapping="orders", event_id="evt-d")
    dead = new(destination="zendesk", mapping="orders", event_id="evt-x")
    flying = new(destination="yotpo", mapping="reviews", event_id="evt-f", body=BODY)
    dry = new(destination="zendesk", status=DeliveryStatus.DRY_RUN, event_id="evt-dry")
    all_ids = [d.id for d in (pending, retry, delivered, dead, flying, dry)]
    due = time.time() + 600

    async def first_life(s: Store) -> tuple[dict[str, Delivery], Delivery]:
        await s.enqueue([retry, delivered, dead], max_pending=BIG, idempotency_ttl=TTL)
        leased = {d.id: d for d in await s.lease("zendesk", 10, 30.0)}
        assert await s.mark_retry(leased[retry.id], due, {"code": "timeout"}) is True
        assert await s.mark_delivered(leased[delivered.id], {"status": 201, "id": "z1"}) is True
        assert await s.mark_dead(leased[dead.id], {"code": "bad_request"}) is True
        await s.enqueue([pending, flying, dry], max_pending=BIG, idempotency_ttl=TTL)
        [in_flight] = await s.lease("yotpo", 10, 3600.0)
        assert in_flight.id == flying.id
        return {d.id: d for d in await s.get_many(all_ids)}, in_flight

    before, in_flight = run(backend.make(), first_life)
    assert before[flying.id].status == DeliveryStatus.IN_FLIGHT

    async def second_life(s: Store) -> None:
        after = {d.id: d for d in await s.get_many(all_ids)}
        assert sorted(after) == sorted(all_ids)
        for d_id in (pending.id, retry.id, delivered.id, dead.id, dry.id):
            assert after[d_id] == before[d_id]
        assert after[pending.id].request.body == BODY
        assert after[retry.id].due_at == due
        assert after[delivered.id].response == {"status": 201, "id": "z1"}
        assert after[dead.id].last_problem == {"code": "bad_request"}
        assert ([d.id for d in await s.dead_letters(DeadLetterFilter())]) == [dead.id]
        # Idempotency keys survive too.
        again = new(destination="zendesk", mapping="orders", event_id="evt-d")
        assert await s.enqueue([again], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.DUPLICATE, delivered.id)
        ]
        stats = await s.stats()
        assert (stats.pending, stats.dead) == ({"zendesk": 2, "yotpo": 1}, 1)
        assert (after[pending.id].status, after[retry.id].status) == (
            DeliveryStatus.PENDING,
            DeliveryStatus.PENDING,
        )

        if backend.single_owner:
            was_flying = after[flying.id]
            assert was_flying.status == DeliveryStatus.PENDING
            assert was_flying.lease_token is None
            assert was_flying.attempts == 1
            assert was_flying.request.body == BODY
            assert was_flying.due_at is not None
            assert was_flying.due_at <= time.time()
            [again_leased] = await s.lease("yotpo", 10, 30.0)
            assert (again_leased.id, again_leased.attempts) == (flying.id, 2)
            assert again_leased.lease_token != in_flight.lease_token
            # The old process's lease is gone.
            assert await s.mark_delivered(in_flight, {"status": 200}) is False
        [zendesk_due] = await s.lease("zendesk", 10, 30.0)
        assert zendesk_due.id == pending.id  # the retry is not due for 10 minutes
        assert await s.mark_delivered(zendesk_due, {"status": 200}) is True
        assert (await s.get(delivered.id)).status == DeliveryStatus.DELIVERED  # type: ignore[union-attr]
        assert (await s.get(dead.id)).status == DeliveryStatus.DEAD  # type: ignore[union-attr]

    run(backend.make(), second_life)


def test_pending_bound_counts_deliveries_stored_before_a_restart(backend: Backend) -> None:
    async def fill(s: Store) -> None:
        await s.enqueue([new(), new(), new()], max_pending=3, idempotency_ttl=TTL)

    run(backend.make(), fill)

    async def check(s: Store) -> None:
        with pytest.raises(Overloaded) as caught:
            await s.enqueue([new()], max_pending=3, idempotency_ttl=TTL)
        assert (caught.value.pending, caught.value.bound) == (3, 3)

    run(backend.make(), check)
