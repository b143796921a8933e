"""The relay's pipeline: request body -> parse -> plan (match, render, validate) -> accept
(store) -> settle (wait for outcomes).

``ingest`` runs it for one ingest request and records its metrics. ``plan`` does everything
that needs no network and yields one ``Outcome`` per (event, mapping); ``accept`` stores the
planned ones (the dispatcher sends them later); ``settle`` folds in what became of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field, replace
from typing import Any

from app.delivery.store import (
    Delivery,
    NewDelivery,
    Overloaded,
    Store,
    StoreUnavailable,
)
from app.destinations.base import Destination, OutboundRequest, Violation
from app.ids import new_id
from app.mapping.event_ids import identify
from app.mapping.expressions import ExpressionError
from app.mapping.loader import Mapping, MappingSet
from app.mapping.templates import RenderError
from app.metrics import RelayMetrics
from app.payloads import Event, parse_payload
from app.problems import Problem
from app.relay import Relay
from app.status import Acceptance, DeliveryStatus, ResultStatus, Routing

OVERLOAD_RETRY_AFTER = 5.0
# Events planned between two yields to the event loop (``plan_in_slices``): a batch of a
# thousand matched events takes 100 ms or more to plan, which every other request would wait.
PLAN_SLICE = 100

RenderObserver = Callable[[str, float], None]


@dataclass(slots=True)
class Outcome:
    """The result for one event and one matched mapping (or one unmatched event)."""

    event_index: int
    status: str
    mapping: str | None = None
    destination: str | None = None
    event_id: str | None = None
    event_id_source: str | None = None  # "mapping" or "derived" (app.mapping.event_ids)
    request: OutboundRequest | None = None
    violations: tuple[Violation, ...] = ()
    warnings: tuple[Violation, ...] = ()
    problem: Problem | None = None
    response: dict[str, Any] = field(default_factory=dict)
    delivery_id: str | None = None

    def to_dict(self, *, show_request: bool = False) -> dict[str, Any]:
        """The outcome as a result entry of an API answer."""
        doc: dict[str, Any] = {"event_index": self.event_index, "status": self.status}
        # spelled out, not a loop of getattr: every answer builds one per (event, mapping)
        if self.mapping is not None:
            doc["mapping"] = self.mapping
        if self.destination is not None:
            doc["destination"] = self.destination
        if self.event_id is not None:
            doc["event_id"] = self.event_id
        if self.event_id_source is not None:
            doc["event_id_source"] = self.event_id_source
        if self.delivery_id is not None:
            doc["delivery_id"] = self.delivery_id
        if self.response:
            doc.update(self.response)
        if self.request is not None and (show_request or self.status == ResultStatus.DRY_RUN):
            doc["endpoint"] = self.request.describe()
            doc["body"] = self.request.body
        if self.warnings:
            doc["warnings"] = [w.to_dict() for w in self.warnings]
        if self.problem is not None:
            doc["problem"] = self.problem.to_dict()
        return doc


def plan(
    events: list[Event],
    mappings: MappingSet,
    destinations: AbcMapping[str, Destination],
    *,
    only: Mapping | None = None,
    observe_render: RenderObserver | None = None,
    first_index: int = 0,
) -> list[Outcome]:
    """Match, render and validate each event; ``only`` forces one mapping and skips its ``when``.

    ``observe_render(mapping_name, seconds)`` is told how long each successful render took;
    the events' ``event_index`` counts from ``first_index``.
    """
    outcomes: list[Outcome] = []
    for index, event in enumerate(events, first_index):
        matched = 0
        for mapping in (only,) if only is not None else mappings.mappings:
            outcome = plan_one(
                index, event, mapping, destinations, check_when=only is None, observe_render=observe_render
            )
            if outcome is not None:
                outcomes.append(outcome)
                matched += 1
        if not matched:
            outcomes.append(Outcome(event_index=index, status=ResultStatus.IGNORED))
    return outcomes


async def plan_in_slices(
    events: list[Event],
    mappings: MappingSet,
    destinations: AbcMapping[str, Destination],
    *,
    only: Mapping | None = None,
    observe_render: RenderObserver | None = None,
    size: int = PLAN_SLICE,
) -> list[Outcome]:
    """``plan``, giving the event loop back after every ``size`` events."""
    if len(events) <= size:
        return plan(events, mappings, destinations, only=only, observe_render=observe_render)
    outcomes: list[Outcome] = []
    for start in range(0, len(events), size):
        if start:
            await asyncio.sleep(0)
        outcomes += plan(
            events[start : start + size],
            mappings,
            destinations,
            only=only,
            observe_render=observe_render,
            first_index=start,
        )
    return outcomes


def plan_one(
    index: int,
    event: Event,
    mapping: Mapping,
    destinations: AbcMapping[str, Destination],
    *,
    check_when: bool = True,
    observe_render: RenderObserver | None = None,
) -> Outcome | None:
    """Plan one (event, mapping) pair: ``None`` when the mapping does not apply."""
    event_id: str | None = None
    source: str | None = None
    try:
        if check_when and not mapping.applies_to(event):
            return None  # the common case, so nothing is built before this
        event_id, source = identify(mapping, event)
        started = time.perf_counter()
        body = mapping.render(event)
        if observe_render is not None:
            observe_render(mapping.name, time.perf_counter() - started)
        params = {key: render(event) for key, render in mapping.endpoint_params.items()}
        params.setdefault("event_id", event_id)  # e.g. Yotpo's event `id` defaults to it
        params["mapping"] = mapping.name  # with the mapping's name, so two mappings differ
    except (ExpressionError, RenderError) as exc:
        where = f"body.{exc.path}" if isinstance(exc, RenderError) and exc.path else None
        problem = _problem(mapping, event_id, "mapping_error", str(exc), field=where)
        return _outcome(index, mapping, event_id, source, ResultStatus.REJECTED, problem=problem)
    request, found = destinations[mapping.destination].prepare(body, mapping.endpoint, params)
    violations = [v for v in found if not v.warning]
    warnings = tuple(v for v in found if v.warning)
    if violations:
        problem = _problem(
            mapping,
            event_id,
            "validation_failed",
            "; ".join(f"{v.path or 'body'}: {v.message}" for v in violations),
            violations=[v.to_dict() for v in violations],
        )
        return _outcome(
            index,
            mapping,
            event_id,
            source,
            ResultStatus.REJECTED,
            request=request,
            violations=tuple(violations),
            warnings=warnings,
            problem=problem,
        )
    return _outcome(
        index, mapping, event_id, source, ResultStatus.PLANNED, request=request, warnings=warnings
    )


def _outcome(
    index: int, mapping: Mapping, event_id: str | None, source: str | None, status: str, **fields: Any
) -> Outcome:
    return Outcome(
        event_index=index,
        status=status,
        mapping=mapping.name,
        destination=mapping.destination,
        event_id=event_id,
        event_id_source=source,
        **fields,
    )


def _problem(mapping: Mapping, event_id: str | None, code: str, detail: str, **extensions: Any) -> Problem:
    return Problem(
        code, detail, mapping=mapping.name, destination=mapping.destination, event_id=event_id, **extensions
    )


async def accept(
    outcomes: list[Outcome],
    store: Store,
    destinations: AbcMapping[str, Destination],
    *,
    request_id: str | None,
    max_pending: int,
    idempotency_ttl: float,
) -> list[Outcome]:
    """Store every planned outcome durably (all or none) and say what became of each
    (``outcomes`` are updated and returned).

    Raises ``Problem`` ``overloaded`` (nothing stored) or ``store_unavailable``.
    """
    planned = [o for o in outcomes if o.status == ResultStatus.PLANNED and o.request is not None]
    if not planned:
        return outcomes
    now = time.time()
    new = []
    for o in planned:
        destination = destinations[str(o.destination)]
        request: OutboundRequest = o.request  # type: ignore[assignment]  # filtered above
        if destination.dry_run:  # kept to show, never sent: as rendered
            status = DeliveryStatus.DRY_RUN
        else:  # as every attempt will send it
            request, status = destination.stamp(request, now), DeliveryStatus.PENDING
        new.append(
            NewDelivery(new_id(), str(o.mapping), str(o.destination), o.event_id, request, request_id, status)
        )
    try:
        results = await store.enqueue(new, max_pending=max_pending, idempotency_ttl=idempotency_ttl)
    except Overloaded as exc:
        detail = f"{exc.pending} deliveries are waiting (RELAY_MAX_PENDING={exc.bound})"
        raise Problem("overloaded", detail, retry_after=OVERLOAD_RETRY_AFTER) from None
    except StoreUnavailable as exc:
        raise Problem("store_unavailable", str(exc), retry_after=OVERLOAD_RETRY_AFTER) from None
    # updated in place (the outcomes are this request's own): a copy each cost more than the rest
    for outcome, result in zip(planned, results, strict=True):
        outcome.status = result.status
        outcome.delivery_id = result.delivery_id
        if result.status == ResultStatus.DUPLICATE:
            outcome.request = None
    return outcomes


def settle(outcomes: list[Outcome], deliveries: AbcMapping[str, Delivery]) -> list[Outcome]:
    """Outcomes updated with what became of their deliveries while the caller waited."""
    settled = []
    for outcome in outcomes:
        delivery = (
            deliveries.get(outcome.delivery_id or "") if outcome.status == ResultStatus.QUEUED else None
        )
        if delivery is None or delivery.status not in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
            settled.append(outcome)
        elif delivery.status == DeliveryStatus.DELIVERED:
            response = {k: v for k, v in (delivery.response or {}).items() if k != "status"}
            settled.append(replace(outcome, status=ResultStatus.DELIVERED, response=response))
        else:
            problem = Problem.from_dict(delivery.last_problem or {"code": "internal_error"})
            settled.append(replace(outcome, status=ResultStatus.DEAD, problem=problem))
    return settled


def as_preview(outcomes: list[Outcome]) -> list[Outcome]:
    """Planned outcomes as a preview shows them: what would be sent, nothing sent."""
    return [
        replace(o, status=ResultStatus.DRY_RUN) if o.status == ResultStatus.PLANNED else o for o in outcomes
    ]


@dataclass(slots=True)
class Ingested:
    """What became of one ingest request's events: their payload shape, count and outcomes."""

    shape: str
    events: int
    outcomes: list[Outcome]


async def ingest(
    relay: Relay,
    body: bytes,
    *,
    only: Mapping | None = None,
    wait: float | None = None,
    request_id: str | None = None,
) -> Ingested:
    """Parse, plan, store and (for up to ``wait`` seconds) settle one ingest request's body.

    Raises ``Problem`` for a body that cannot be taken (nothing stored). ``only`` forces one
    mapping and skips its ``when``. Every metric of the request's events is recorded here.
    """
    metrics = relay.metrics
    mappings = relay.mappings  # one set for the whole request, even if a reload swaps it meanwhile
    parsed = parse_payload(body, relay.limits)
    planned = await plan_in_slices(
        parsed.events, mappings, relay.destinations, only=only, observe_render=metrics.observe_render
    )
    metrics.received(parsed.shape, len(parsed.events))
    _count_plan(metrics, planned)
    settings = relay.settings
    outcomes = await accept(
        planned,
        relay.store,
        relay.destinations,
        request_id=request_id,
        max_pending=settings.relay_max_pending,
        idempotency_ttl=settings.relay_idempotency_ttl,
    )
    _count_accepted(metrics, outcomes)
    queued = [o for o in outcomes if o.status == ResultStatus.QUEUED and o.delivery_id]
    for destination in {str(o.destination) for o in queued}:
        relay.dispatcher.notify(destination)
    if wait and queued:
        finished = await relay.waiters.wait(relay.store, [str(o.delivery_id) for o in queued], wait)
        outcomes = settle(outcomes, finished)
    return Ingested(parsed.shape, len(parsed.events), outcomes)


def _count_plan(metrics: RelayMetrics, outcomes: list[Outcome]) -> None:
    """Each event once (matched, ignored or rejected), and each mapping's result for it."""
    ignored = 0
    matched: dict[int, bool] = {}  # event index -> did at least one mapping plan a delivery
    for outcome in outcomes:
        if outcome.status == ResultStatus.IGNORED:
            ignored += 1
            continue
        planned = outcome.status == ResultStatus.PLANNED
        code = Routing.MATCHED if planned else outcome.problem.code if outcome.problem else Routing.REJECTED
        metrics.mapping_result(str(outcome.mapping), code)
        matched[outcome.event_index] = planned or matched.get(outcome.event_index, False)
    hits = sum(matched.values())
    metrics.routed(hits, ignored, len(matched) - hits)


_ACCEPTED: dict[str, str] = {
    ResultStatus.QUEUED: Acceptance.STORED,
    ResultStatus.DUPLICATE: Acceptance.DUPLICATE,
    ResultStatus.DRY_RUN: Acceptance.DRY_RUN,
}


def _count_accepted(metrics: RelayMetrics, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        result = _ACCEPTED.get(outcome.status)
        if result is not None:
            metrics.accepted(str(outcome.destination), str(outcome.mapping), result)
