"""The store protocol: durable deliveries, leases, dead letters and idempotency keys.

Every backend (``sqlite.py`` now, Redis for replicas) implements ``Store``; the dispatcher,
the ingest route, the admin API and the CLI use nothing else. Times are epoch seconds
(wall clock), since they outlive the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.delivery.write_health import WriteHealth
from app.destinations.base import OutboundRequest
from app.status import DeliveryStatus


@dataclass(slots=True)  # not frozen: built for every stored event, and frozen costs 2.5x
class NewDelivery:
    """A rendered, validated request to store (status ``pending``, or ``dry_run`` to keep only)."""

    id: str
    mapping: str
    destination: str
    event_id: str | None
    request: OutboundRequest
    request_id: str | None = None
    status: str = DeliveryStatus.PENDING


@dataclass(frozen=True)
class Delivery:
    """A stored delivery as the store returns it."""

    id: str
    mapping: str
    destination: str
    event_id: str | None
    request: OutboundRequest
    status: str
    attempts: int
    created_at: float
    updated_at: float
    due_at: float | None
    request_id: str | None = None
    lease_token: str | None = None
    last_problem: dict[str, Any] | None = None
    response: dict[str, Any] | None = None

    def to_dict(self, *, with_body: bool = False) -> dict[str, Any]:
        """The delivery as the API shows it."""
        doc: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "mapping": self.mapping,
            "destination": self.destination,
            "event_id": self.event_id,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "endpoint": self.request.describe(),
        }
        if self.status in (DeliveryStatus.PENDING, DeliveryStatus.IN_FLIGHT) and self.due_at is not None:
            doc["next_attempt_at"] = self.due_at
        if self.request_id:
            doc["request_id"] = self.request_id
        if self.last_problem is not None:
            doc["last_problem"] = self.last_problem
        if self.response:
            doc["response"] = self.response
        if with_body:
            doc["body"] = self.request.body
        return doc


@dataclass(slots=True)  # not frozen, as NewDelivery
class EnqueueResult:
    """``queued`` (stored now), ``duplicate`` (the id of the first), or ``dry_run``."""

    status: str
    delivery_id: str


@dataclass(frozen=True)
class AttemptRecord:
    """One send attempt as a trace shows it."""

    at: float  # epoch seconds when the attempt started
    outcome: str  # an ``AttemptOutcome``: delivered, retry or dead
    code: str  # "ok", "verified", or the problem code
    upstream_status: int | None
    latency_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "outcome": self.outcome,
            "code": self.code,
            "upstream_status": self.upstream_status,
            "latency_ms": self.latency_ms,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AttemptRecord:
        """The record ``to_dict`` gave (how the Redis store keeps it)."""
        return cls(doc["at"], doc["outcome"], doc["code"], doc["upstream_status"], doc["latency_ms"])


@dataclass(frozen=True)
class Traced:
    """A delivery of a traced event, with its attempts oldest first."""

    delivery: Delivery
    history: tuple[AttemptRecord, ...]


@dataclass(frozen=True)
class Identifier:
    """A person's identifier, as a profile or event carries it (``email``, ``external_id``, ...)."""

    type: str
    value: str


@dataclass(frozen=True)
class Erased:
    """What an erasure removed."""

    deliveries: int  # not dead letters: pending, in flight, delivered, dry run
    dead_letters: int
    idempotency_keys: int  # live keys that went with them

    def to_dict(self) -> dict[str, int]:
        return {
            "deliveries": self.deliveries,
            "dead_letters": self.dead_letters,
            "idempotency_keys": self.idempotency_keys,
        }


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a list, replay or purge applies to (all fields optional)."""

    destination: str | None = None
    mapping: str | None = None
    code: str | None = None
    since: float | None = None
    until: float | None = None
    ids: tuple[str, ...] = ()
    limit: int = 100


@dataclass(frozen=True)
class StoreStats:
    """Depth of the queue: pending (incl. in flight) per destination and the oldest age."""

    pending: dict[str, int] = field(default_factory=dict)
    oldest_pending_at: dict[str, float] = field(default_factory=dict)
    dead: int = 0

    @property
    def total_pending(self) -> int:
        return sum(self.pending.values())


class Overloaded(Exception):
    """The store holds more pending deliveries than its bound; nothing was stored."""

    def __init__(self, pending: int, bound: int) -> None:
        super().__init__(f"{pending} deliveries pending (bound {bound})")
        self.pending = pending
        self.bound = bound


class StoreUnavailable(Exception):
    """The backend cannot be reached; nothing was stored."""


class Store(Protocol):
    """Durable storage of deliveries; every method is safe to call from many tasks at once."""

    write_health: WriteHealth
    """Whether writes work now (``/readyz``): each backend notes its writes' outcomes here."""

    async def open(self) -> None:
        """Create or migrate the schema and start serving."""
        ...

    async def close(self) -> None:
        """Flush and release the backend."""
        ...

    async def enqueue(
        self, deliveries: Sequence[NewDelivery], *, max_pending: int, idempotency_ttl: float
    ) -> list[EnqueueResult]:
        """Store all non-duplicate deliveries durably, all or none; ``Overloaded`` over the bound.

        A delivery whose (mapping, event_id) was stored within the TTL is a ``duplicate``.
        Returns only once the write is durable.
        """
        ...

    async def lease(self, destination: str, limit: int, lease_seconds: float) -> list[Delivery]:
        """Take up to ``limit`` due deliveries of a destination (pending, or with an expired
        lease), mark them in flight with a new lease token, and count an attempt."""
        ...

    async def mark_delivered(
        self, delivery: Delivery, response: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        """Record success; False when the lease was lost (another worker owns it now).

        ``attempt`` (here and in ``mark_retry``, ``mark_dead``) joins the delivery's history in
        the same write, only when the lease was still held."""
        ...

    async def mark_retry(
        self, delivery: Delivery, due_at: float, problem: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        """Put back as pending until ``due_at`` with the last problem."""
        ...

    async def mark_dead(
        self, delivery: Delivery, problem: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        """Move to the dead letters with the problem."""
        ...

    async def release(self, delivery: Delivery) -> bool:
        """Give a leased delivery back (due now) without an outcome, e.g. on shutdown; it
        records no attempt."""
        ...

    async def get(self, delivery_id: str) -> Delivery | None: ...

    async def get_many(self, delivery_ids: Sequence[str]) -> list[Delivery]: ...

    async def next_due(self, destination: str) -> float | None:
        """When the earliest pending delivery of a destination becomes due (None: none)."""
        ...

    async def dead_letters(self, where: DeadLetterFilter) -> list[Delivery]:
        """Dead letters matching the filter, newest first."""
        ...

    async def replay(self, where: DeadLetterFilter) -> int:
        """Dead letters matching the filter back to pending, due now, attempts reset."""
        ...

    async def purge(self, where: DeadLetterFilter) -> int:
        """Delete dead letters matching the filter, with their history."""
        ...

    async def stats(self) -> StoreStats: ...

    async def probe(self) -> None:
        """Make one small durable write, noted in ``write_health``; ``StoreUnavailable`` when it
        fails. Readiness asks for one while the store is failing, so that it sees the store
        recover even when nothing else writes (a replica out of its Service gets no ingest)."""
        ...

    async def cleanup(self, delivered_before: float) -> int:
        """Drop expired idempotency keys and finished deliveries older than a time, with their
        history."""
        ...

    async def trace(self, event_id: str, limit: int = 100) -> list[Traced]:
        """Every stored delivery of one event id (any mapping, destination or status), oldest
        first, each with its attempts (SQLite scans for it on a reader connection, Redis keeps an
        index)."""
        ...

    async def erase(self, identifiers: Sequence[Identifier]) -> Erased:
        """Delete every delivery whose body holds one of the identifiers' values as a whole JSON
        string (``app.delivery.erasure``), in any status, with its history and idempotency key.
        A delivery in flight is deleted too: its outcome then finds the lease lost."""
        ...
