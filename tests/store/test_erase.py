"""Store protocol: ``erase``, every delivery holding a person's identifier, in any state."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.delivery.store import AttemptRecord, Erased, Identifier, Store
from app.status import AttemptOutcome, DeliveryStatus, ResultStatus
from tests.store.conftest import BIG, TTL, lease_until, new, run

ANN = Identifier("email", "ann@example.com")


def profile_event(*identifiers: tuple[str, str], note: Any = None) -> dict[str, Any]:
    """A Zendesk event body as a mapping renders it, with the profile's identifiers."""
    return {
        "data": {
            "profile": {
                "source": "adobe",
                "type": "customer",
                "identifiers": [{"type": t, "value": v} for t, v in identifiers],
            },
            "event": {"source": "adobe", "type": "purchase", "properties": {"note": note}},
        }
    }


def test_erase_removes_every_state_and_counts(store: Store) -> None:
    email = ("email", "Ann@Example.com")  # as the event carried it; Zendesk lower-cases it
    pending = new(event_id="evt-pending", body=profile_event(email))
    flight = new(event_id="evt-flight", destination="flight", body=profile_event(email))
    done = new(event_id="evt-done", destination="done", body=profile_event(email))
    dead = new(event_id="evt-dead", destination="dead", body=profile_event(email))
    dry = new(event_id="evt-dry", body=profile_event(email), status=DeliveryStatus.DRY_RUN)
    # someone else: a longer address, the address inside a longer string, another type's value
    other_pending = new(body=profile_event(("email", "joann@example.com"), note="from ann@example.com"))
    other_dead = new(destination="dead", body=profile_event(("external_id", "ann@example.co")))
    ours = [pending, flight, done, dead, dry]
    sent = AttemptRecord(time.time(), AttemptOutcome.RETRY, "timeout", None, None)

    async def scenario(s: Store) -> None:
        await s.enqueue([*ours, other_pending], max_pending=BIG, idempotency_ttl=TTL)
        await s.enqueue([other_dead], max_pending=BIG, idempotency_ttl=TTL)
        [in_flight] = await lease_until(s, "flight", 30.0, 1)
        [leased] = await lease_until(s, "done", 30.0, 1)
        assert await s.mark_delivered(leased, {"status": 200}, sent)
        for leased in await lease_until(s, "dead", 30.0, 2):
            assert await s.mark_dead(leased, {"code": "bad_request"}, sent)
        before = await s.stats()
        assert (before.pending, before.dead) == ({"zendesk": 2, "flight": 1}, 2)

        assert await s.erase([ANN]) == Erased(deliveries=4, dead_letters=1, idempotency_keys=5)

        assert await s.get_many([d.id for d in ours]) == []
        for d in ours:
            assert await s.trace(str(d.event_id)) == []
        assert {d.id for d in await s.get_many([other_pending.id, other_dead.id])} == {
            other_pending.id,
            other_dead.id,
        }
        after = await s.stats()
        assert (after.pending, after.dead) == ({"zendesk": 1}, 1)
        # the delivery that was being sent finds its lease lost, and nothing comes back
        assert await s.mark_retry(in_flight, time.time(), {"code": "timeout"}, sent) is False
        assert await s.mark_delivered(in_flight, {"status": 200}, sent) is False
        assert await s.get(flight.id) is None
        assert await s.lease("flight", 10, 30.0) == []
        assert await s.erase([ANN]) == Erased(0, 0, 0)

    run(store, scenario)


def test_an_erased_event_is_new_again_and_the_bound_counts_what_is_left(store: Store) -> None:
    ours = [
        new(mapping="m1", event_id=f"evt-{n}", body=profile_event(("email", "ann@example.com")))
        for n in range(3)
    ]
    theirs = new(mapping="m1", event_id="evt-theirs", body=profile_event(("email", "bob@example.com")))

    async def scenario(s: Store) -> None:
        await s.enqueue([*ours, theirs], max_pending=BIG, idempotency_ttl=TTL)
        assert await s.erase([ANN]) == Erased(3, 0, 3)
        again = [new(mapping="m1", event_id=f"evt-{n}") for n in range(3)]
        # four pending would be over a bound of four only if the erased ones still counted
        results = await s.enqueue(again, max_pending=4, idempotency_ttl=TTL)
        assert [(r.status, r.delivery_id) for r in results] == [(ResultStatus.QUEUED, d.id) for d in again]
        [duplicate] = await s.enqueue(
            [new(mapping="m1", event_id="evt-theirs")], max_pending=BIG, idempotency_ttl=TTL
        )
        assert (duplicate.status, duplicate.delivery_id) == (ResultStatus.DUPLICATE, theirs.id)
        assert (await s.stats()).pending == {"zendesk": 4}

    run(store, scenario)


@pytest.mark.parametrize(
    ("stored", "asked", "erased"),
    [
        (("email", "ANN@example.COM"), Identifier("email", "ann@EXAMPLE.com"), True),
        (("twitter", "@AnnSmith"), Identifier("twitter", "@annsmith"), True),
        (("email", "Ann@Gmail.com"), Identifier("google", "ann@gmail.com"), True),
        (("external_id", "Cust-42"), Identifier("external_id", "cust-42"), False),
        (("external_id", "Cust-42"), Identifier("external_id", "Cust-42"), True),
        (("phone_number", "+15550100"), Identifier("phone_number", "+15550100"), True),
        (("phone_number", "+15550100"), Identifier("phone_number", "15550100"), False),
        (("email", "Émile@exemple.fr"), Identifier("email", "émile@EXEMPLE.fr"), True),
        (("email", "KIKI@X.IO"), Identifier("email", "kiki@x.io"), True),
        (("sdk", 'say "hi"\\'), Identifier("sdk", 'say "hi"\\'), True),
    ],
)
def test_case_is_ignored_only_for_the_types_zendesk_lower_cases(
    store: Store, stored: tuple[str, str], asked: Identifier, erased: bool
) -> None:
    d = new(body=profile_event(stored))

    async def scenario(s: Store) -> Erased:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        return await s.erase([asked])

    assert run(store, scenario) == (Erased(1, 0, 1) if erased else Erased(0, 0, 0))


def test_any_identifier_anywhere_in_the_body_and_each_delivery_once(store: Store) -> None:
    both = new(body=profile_event(("email", "ann@example.com"), ("external_id", "A-1")))
    nested = new(body={"a": [{"b": [[{"c": "A-1"}]]}], "n": 1})
    as_key = new(body={"traits": {"ann@example.com": True}})
    nothing = new(body={"a": ["A-10", "a-1", 1, None, {"ann@example.com ": 1}]}, event_id=None)

    async def scenario(s: Store) -> Erased:
        await s.enqueue([both, nested, as_key, nothing], max_pending=BIG, idempotency_ttl=TTL)
        erased = await s.erase([ANN, Identifier("external_id", "A-1")])
        assert [d.id for d in await s.get_many([both.id, nested.id, as_key.id, nothing.id])] == [nothing.id]
        assert await s.erase([]) == Erased(0, 0, 0)
        return erased

    assert run(store, scenario) == Erased(3, 0, 3)


def test_an_empty_value_is_refused(store: Store) -> None:
    async def scenario(s: Store) -> None:
        await s.enqueue([new(body={"x": ""})], max_pending=BIG, idempotency_ttl=TTL)
        with pytest.raises(ValueError, match="empty"):
            await s.erase([ANN, Identifier("external_id", "")])
        assert (await s.stats()).pending == {"zendesk": 1}

    run(store, scenario)


def test_an_expired_key_is_not_counted(store: Store) -> None:
    d = new(body=profile_event(("email", "ann@example.com")))

    async def scenario(s: Store) -> Erased:
        await s.enqueue([d], max_pending=BIG, idempotency_ttl=0.001)
        await asyncio.sleep(0.01)  # the key's TTL runs out
        return await s.erase([ANN])

    assert run(store, scenario) == Erased(1, 0, 0)
