"""Outcomes of sends, and the ones the store could not record yet, kept until it can.

When the store fails (Redis away, a full disk), a send that has its answer cannot record it,
and a lease given back unsent cannot be given back. Left alone, each waits out its lease (60 s
by default) and is then sent again. Kept here instead, they are recorded as soon as the store
works again (retried every ``RETRY_SECONDS``), before this replica leases anything more: the
backlog resumes within a second or so of the store's return, and a delivery whose answer is
known is not sent again by this replica. If the lease runs out first and another replica (on
Redis) takes it, that replica sends it again: recording then finds the lease lost, which is
the at-least-once the relay promises (docs/operations.md, "Store outages").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from app.delivery.store import AttemptRecord, Delivery, Store, StoreUnavailable
from app.status import DeliveryStatus

log = structlog.get_logger("app.delivery")

RELEASE = "release"
RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class Outcome:
    """What became of one leased delivery: ``delivered``, ``pending`` (a retry at ``due_at``),
    ``dead``, or ``release`` (given back unsent). ``then`` does the bookkeeping once recorded
    (metrics, the log line, waiters), with whether the lease was still held. ``attempt``: the
    send as the delivery's history keeps it, recorded with the outcome (none on a release)."""

    delivery: Delivery
    status: str
    due_at: float = 0.0
    problem: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    then: Callable[[bool], None] | None = None
    attempt: AttemptRecord | None = None

    async def record(self, store: Store) -> bool:
        """Record it; False when the lease was lost. ``StoreUnavailable`` when it could not."""
        if self.status == DeliveryStatus.DELIVERED:
            done = await store.mark_delivered(self.delivery, self.response or {}, self.attempt)
        elif self.status == DeliveryStatus.PENDING:
            done = await store.mark_retry(self.delivery, self.due_at, self.problem or {}, self.attempt)
        elif self.status == DeliveryStatus.DEAD:
            done = await store.mark_dead(self.delivery, self.problem or {}, self.attempt)
        else:
            done = await store.release(self.delivery)
        if self.then is not None:
            self.then(done)
        return done


class UnrecordedOutcomes:
    """The outcomes a store could not record, by delivery id; ``run`` records them once it can."""

    def __init__(self, store: Store, retry_seconds: float = RETRY_SECONDS) -> None:
        self.store = store
        self.retry_seconds = retry_seconds
        self._kept: dict[str, Outcome] = {}
        self._lock = asyncio.Lock()  # one recording at a time: an outcome is recorded once
        self._kept_one = asyncio.Event()

    def __len__(self) -> int:
        return len(self._kept)

    async def record(self, outcome: Outcome) -> bool:
        """Record an outcome now, or keep it when the store fails (then False, as if lost)."""
        try:
            return await outcome.record(self.store)
        except StoreUnavailable as exc:
            self.keep(outcome, str(exc))
            return False

    def keep(self, outcome: Outcome, error: str) -> None:
        """Keep an outcome the store could not record, to record it when the store works."""
        delivery = outcome.delivery
        self._kept[delivery.id] = outcome
        self._kept_one.set()
        log.warning(
            "outcome_not_recorded",
            outcome=outcome.status,
            error=error,
            destination=delivery.destination,
            mapping=delivery.mapping,
            event_id=delivery.event_id,
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            kept=len(self._kept),
        )

    def take_over(self, leased: list[Delivery]) -> list[Delivery]:
        """Of deliveries just leased, those to send. One whose outcome is kept here (its old
        lease ran out) is not sent again: its outcome is recorded under the new lease; one kept
        as given back is simply sent."""
        if not self._kept:
            return leased
        to_send: list[Delivery] = []
        for delivery in leased:
            kept = self._kept.get(delivery.id)
            if kept is not None and kept.status != RELEASE:
                self._kept[delivery.id] = replace(kept, delivery=delivery)
                self._kept_one.set()
                continue
            if kept is not None:
                del self._kept[delivery.id]
            to_send.append(delivery)
        return to_send

    async def flush(self) -> None:
        """Record every kept outcome now, all at once; ``StoreUnavailable`` (keeping those not
        recorded) while the store still fails."""
        async with self._lock:
            if not self._kept:
                return
            kept = list(self._kept.values())
            results = await asyncio.gather(*(o.record(self.store) for o in kept), return_exceptions=True)
            failed: BaseException | None = None
            recorded = 0
            for outcome, result in zip(kept, results, strict=True):
                if isinstance(result, StoreUnavailable):
                    failed = result
                    continue
                if self._kept.get(outcome.delivery.id) is outcome:  # not taken over meanwhile
                    del self._kept[outcome.delivery.id]
                if isinstance(result, BaseException):
                    log.error("outcome_record_crashed", delivery_id=outcome.delivery.id, error=repr(result))
                else:
                    recorded += 1
            if recorded:
                log.info("outcomes_recorded", recorded=recorded, still_kept=len(self._kept))
            if failed is not None:
                raise failed

    async def run(self) -> None:
        """Record kept outcomes whenever there are some, retrying while the store fails."""
        while True:
            await self._kept_one.wait()
            self._kept_one.clear()
            try:
                await self.flush()
            except StoreUnavailable:
                self._kept_one.set()
                await asyncio.sleep(self.retry_seconds)
