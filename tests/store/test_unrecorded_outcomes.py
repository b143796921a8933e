"""Outcomes a failing store could not record (``app/delivery/outcomes.py``), on the real SQLite
store: a closed store fails every call, as one on a full disk fails every write."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.delivery.outcomes import RELEASE, Outcome, UnrecordedOutcomes
from app.delivery.sqlite import SqliteStore
from app.delivery.store import AttemptRecord
from app.status import SUCCESS_CODE, AttemptOutcome, DeliveryStatus
from tests.store.conftest import BIG, TTL, new


def test_kept_outcomes_are_recorded_at_once_when_the_store_works_again(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(str(tmp_path / "relay.db"), owner=False)
        await store.open()
        await store.enqueue([new(), new()], max_pending=BIG, idempotency_ttl=TTL)
        sent, unsent = await store.lease("zendesk", 2, 60.0)
        outcomes = UnrecordedOutcomes(store, retry_seconds=0.05)
        recorder = asyncio.create_task(outcomes.run())
        await store.close()  # the store fails
        noted: list[bool] = []
        delivered = Outcome(sent, DeliveryStatus.DELIVERED, response={"status": 202}, then=noted.append)
        assert await outcomes.record(delivered) is False
        assert await outcomes.record(Outcome(unsent, RELEASE)) is False
        assert len(outcomes) == 2 and noted == []
        await asyncio.sleep(0.2)  # retried meanwhile, in vain
        await store.open()
        for _ in range(100):
            if not outcomes:
                break
            await asyncio.sleep(0.02)
        recorder.cancel()
        assert noted == [True]
        found = {d.id: d for d in await store.get_many([sent.id, unsent.id])}
        assert found[sent.id].status == DeliveryStatus.DELIVERED
        assert (found[unsent.id].status, found[unsent.id].attempts) == (
            DeliveryStatus.PENDING,
            0,
        )  # given back uncounted
        await store.close()

    asyncio.run(main())


def test_a_kept_delivery_leased_again_is_recorded_under_its_new_lease_not_sent(tmp_path: Path) -> None:
    """Its old lease ran out before the store came back; this relay leases it again."""

    async def main() -> None:
        store = SqliteStore(str(tmp_path / "relay.db"), owner=False)
        await store.open()
        await store.enqueue([new(), new()], max_pending=BIG, idempotency_ttl=TTL)
        sent, unsent = await store.lease("zendesk", 2, 0.05)
        outcomes = UnrecordedOutcomes(store)
        await store.close()
        noted: list[bool] = []
        await outcomes.record(
            Outcome(sent, DeliveryStatus.DELIVERED, response={"status": 202}, then=noted.append)
        )
        await outcomes.record(Outcome(unsent, RELEASE))
        await store.open()
        await asyncio.sleep(0.1)  # both leases run out
        again = await store.lease("zendesk", 2, 60.0)
        assert {d.id for d in again} == {sent.id, unsent.id}
        assert [d.id for d in outcomes.take_over(again)] == [unsent.id]  # only the unsent is sent
        await outcomes.flush()
        assert noted == [True] and not outcomes
        found = {d.id: d for d in await store.get_many([sent.id, unsent.id])}
        assert found[sent.id].status == DeliveryStatus.DELIVERED
        assert found[unsent.id].status == DeliveryStatus.IN_FLIGHT  # leased to be sent now
        await store.close()

    asyncio.run(main())


def test_an_outcome_records_its_attempt_with_it_even_when_kept(tmp_path: Path) -> None:
    """The attempt goes into the history with the outcome, also when it is recorded late; a
    release has none."""
    sent = AttemptRecord(1_800_000_000.0, AttemptOutcome.DELIVERED, SUCCESS_CODE, 202, 9.5)

    async def main() -> None:
        store = SqliteStore(str(tmp_path / "relay.db"), owner=False)
        await store.open()
        first, second = new(event_id="evt-1"), new(event_id="evt-2")
        await store.enqueue([first, second], max_pending=BIG, idempotency_ttl=TTL)
        now, kept = await store.lease("zendesk", 2, 60.0)
        outcomes = UnrecordedOutcomes(store)
        assert await outcomes.record(Outcome(now, RELEASE)) is True
        [now] = await store.lease("zendesk", 1, 60.0)
        assert await outcomes.record(
            Outcome(now, DeliveryStatus.PENDING, due_at=0.0, problem={"code": "timeout"}, attempt=sent)
        )
        await store.close()  # the store fails
        assert await outcomes.record(Outcome(kept, DeliveryStatus.DELIVERED, attempt=sent)) is False
        await store.open()
        await outcomes.flush()
        assert [t.history for t in await store.trace("evt-1")] == [(sent,)]
        assert [t.history for t in await store.trace("evt-2")] == [(sent,)]
        await store.close()

    asyncio.run(main())
