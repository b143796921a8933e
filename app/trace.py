"""Following one Adobe event: every delivery made of it, each attempt, and (on request) whether
Zendesk holds it now.

``verified`` is true when the destination holds the event, false when it does not (never
arrived, or deleted since: Zendesk keeps events 90 days to 3 years by plan), and null where
the relay cannot tell: a destination it cannot read back (Yotpo), a dry run, a failed read.
"""

from __future__ import annotations

from typing import Any

import structlog

from app.delivery.readback import Pace, look
from app.delivery.store import Traced
from app.destinations.base import ReadsBack
from app.problems import Problem
from app.relay import Relay
from app.status import DeliveryStatus

log = structlog.get_logger("app.trace")

VERIFY_WAIT = 10.0
"""How long a verify waits for each rate-limit slot before it answers null for the rest."""


async def trace(relay: Relay, event_id: str, *, verify: bool = False) -> dict[str, Any]:
    """The trace document of one event id; ``not_found`` when the relay holds no delivery of it."""
    traced = await relay.store.trace(event_id)
    if not traced:
        raise Problem("not_found", "The relay holds no delivery of that event id")
    deliveries = []
    throttled: set[str] = set()  # destinations that gave no slot in time or said 429
    for item in traced:
        doc = item.delivery.to_dict(with_body=True)
        doc["history"] = [attempt.to_dict() for attempt in item.history]
        if verify:
            doc["verified"] = await _verified(relay, item, throttled)
        deliveries.append(doc)
    return {"event_id": event_id, "deliveries": deliveries}


async def _verified(relay: Relay, item: Traced, throttled: set[str]) -> bool | None:
    delivery = item.delivery
    destination = relay.destinations.get(delivery.destination)
    if (
        destination is None
        or destination.dry_run
        or not isinstance(destination, ReadsBack)
        or delivery.status == DeliveryStatus.DRY_RUN
        or delivery.destination in throttled
    ):
        return None
    pace = Pace(relay.dispatcher.limiters[delivery.destination], VERIFY_WAIT, held=False)
    try:
        found = await look(destination, delivery.request, pace)
    except (Problem, LookupError) as exc:
        if isinstance(exc, Problem) and exc.code == "rate_limited":  # ``look`` leaves a 429 to its caller
            pace.answered(exc)
            throttled.add(delivery.destination)
        log.info("trace_verify_failed", delivery_id=delivery.id, error=str(exc))
        return None
    return found is not None
