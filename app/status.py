"""Every status vocabulary of the relay, in one module.

Each is a ``StrEnum``: a member is the very string the API answers, the store keeps and the
metrics label with, so it compares equal to that string and serialises as it.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """A stored delivery's state."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    DEAD = "dead"
    DRY_RUN = "dry_run"


class ResultStatus(StrEnum):
    """One result of an ingest answer: an event and a mapping that applied (or none)."""

    PLANNED = "planned"  # rendered and valid, not yet stored (never in an answer)
    IGNORED = "ignored"  # no mapping applied to the event
    REJECTED = "rejected"  # the mapping failed, or its body breaks the destination's rules
    QUEUED = "queued"  # stored, to be sent
    DUPLICATE = "duplicate"  # the same mapping and event id was accepted before
    DRY_RUN = "dry_run"  # stored, never sent
    DELIVERED = "delivered"  # sent, and the destination accepted it (while the caller waited)
    DEAD = "dead"  # given up on (while the caller waited)


class Routing(StrEnum):
    """What became of a received event, counted once: ``aep_relay_events_routed``."""

    MATCHED = "matched"  # at least one mapping planned a delivery
    IGNORED = "ignored"
    REJECTED = "rejected"


class Acceptance(StrEnum):
    """What the store did with a planned delivery: ``aep_relay_deliveries_accepted``."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    DRY_RUN = "dry_run"


class AttemptOutcome(StrEnum):
    """How a send attempt ended: ``aep_relay_delivery_attempts``."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


SUCCESS_CODE = "ok"  # the `code` label of an attempt that succeeded (the others: problem codes)
