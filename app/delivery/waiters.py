"""Waiting for delivery outcomes (``Prefer: wait=N``): in-process signals plus store polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from app.delivery.store import Delivery, Store
from app.status import DeliveryStatus

FINAL = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.DEAD, DeliveryStatus.DRY_RUN})
POLL_SECONDS = 0.5  # another replica may finish a delivery; look in the store this often


class OutcomeWaiters:
    """Lets a request wait until its deliveries are final (delivered or dead)."""

    def __init__(self) -> None:
        self._events: dict[str, list[asyncio.Event]] = {}

    def finished(self, delivery_id: str) -> None:
        """Called by the dispatcher when a delivery reaches a final status."""
        for event in self._events.pop(delivery_id, ()):
            event.set()

    async def wait(self, store: Store, delivery_ids: Sequence[str], timeout: float) -> dict[str, Delivery]:
        """The deliveries as they stand when all are final or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        pending = set(delivery_ids)
        latest: dict[str, Delivery] = {}
        event = asyncio.Event()
        for delivery_id in pending:
            self._events.setdefault(delivery_id, []).append(event)
        try:
            while True:
                event.clear()
                for delivery in await store.get_many(sorted(pending)):
                    latest[delivery.id] = delivery
                    if delivery.status in FINAL:
                        pending.discard(delivery.id)
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    return latest
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, POLL_SECONDS))
        finally:
            for delivery_id in delivery_ids:
                events = self._events.get(delivery_id)
                if events is not None and event in events:
                    events.remove(event)
                    if not events:
                        del self._events[delivery_id]
