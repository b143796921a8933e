"""The relay's pipeline: normalised events -> match -> render -> validate -> deliver.

``plan`` does everything that needs no network and yields one ``Outcome`` per (event,
mapping); ``deliver`` sends the planned ones (or marks them ``dry_run``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from app.destinations.base import Destination, OutboundRequest, Violation
from app.mapping.expressions import ExpressionError
from app.mapping.loader import Mapping, MappingSet
from app.mapping.templates import RenderError
from app.payloads import Event
from app.problems import Problem

log = structlog.get_logger("app.pipeline")

# Outcome statuses
PLANNED, DELIVERED, DRY_RUN, IGNORED, REJECTED = (
    "planned",
    "delivered",
    "dry_run",
    "ignored",
    "rejected",
)


@dataclass(frozen=True)
class Outcome:
    """The result for one event and one matched mapping (or one unmatched event)."""

    event_index: int
    status: str
    mapping: str | None = None
    destination: str | None = None
    event_id: str | None = None
    request: OutboundRequest | None = None
    violations: tuple[Violation, ...] = ()
    problem: Problem | None = None
    response: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, show_request: bool = False) -> dict[str, Any]:
        """The outcome as a result entry of an API answer."""
        doc: dict[str, Any] = {"event_index": self.event_index, "status": self.status}
        for key in ("mapping", "destination", "event_id"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        if self.response:
            doc.update(self.response)
        if self.request is not None and (show_request or self.status == DRY_RUN):
            doc["endpoint"] = self.request.describe()
            doc["body"] = self.request.body
        if self.problem is not None:
            doc["problem"] = self.problem.to_dict()
        return doc


def plan(
    events: list[Event],
    mappings: MappingSet,
    destinations: AbcMapping[str, Destination],
    *,
    only: Mapping | None = None,
) -> list[Outcome]:
    """Match, render and validate each event; ``only`` forces one mapping and skips its ``when``."""
    outcomes: list[Outcome] = []
    for index, event in enumerate(events):
        matched = 0
        for mapping in (only,) if only is not None else mappings.mappings:
            outcome = plan_one(index, event, mapping, destinations, check_when=only is None)
            if outcome is not None:
                outcomes.append(outcome)
                matched += 1
        if not matched:
            outcomes.append(Outcome(event_index=index, status=IGNORED))
    return outcomes


def plan_one(
    index: int,
    event: Event,
    mapping: Mapping,
    destinations: AbcMapping[str, Destination],
    *,
    check_when: bool = True,
) -> Outcome | None:
    """Plan one (event, mapping) pair: ``None`` when the mapping does not apply."""
    base = Outcome(event_index=index, status=PLANNED, mapping=mapping.name, destination=mapping.destination)
    try:
        if check_when and not mapping.applies_to(event):
            return None
        event_id = _event_id(mapping, event)
        base = replace(base, event_id=event_id)
        body = mapping.render(event)
        params = {key: render(event) for key, render in mapping.endpoint_params.items()}
    except (ExpressionError, RenderError) as exc:
        where = f"body.{exc.path}" if isinstance(exc, RenderError) and exc.path else None
        return replace(base, status=REJECTED, problem=_problem(base, "mapping_error", str(exc), field=where))
    destination = destinations[mapping.destination]
    request, violations = destination.prepare(body, mapping.endpoint, params)
    if violations:
        problem = _problem(
            base,
            "validation_failed",
            "; ".join(f"{v.path or 'body'}: {v.message}" for v in violations),
            violations=[v.to_dict() for v in violations],
        )
        return replace(base, status=REJECTED, request=request, violations=tuple(violations), problem=problem)
    return replace(base, request=request)


def _event_id(mapping: Mapping, event: Event) -> str | None:
    if mapping.event_id is None:
        return None
    value = mapping.event_id.search(event)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _problem(outcome: Outcome, code: str, detail: str, **extensions: Any) -> Problem:
    return Problem(
        code,
        detail,
        mapping=outcome.mapping,
        destination=outcome.destination,
        event_id=outcome.event_id,
        **extensions,
    )


async def deliver(outcomes: list[Outcome], destinations: AbcMapping[str, Destination]) -> list[Outcome]:
    """Send every planned outcome concurrently; the others pass through unchanged."""
    return list(await asyncio.gather(*(deliver_one(o, destinations) for o in outcomes)))


async def deliver_one(outcome: Outcome, destinations: AbcMapping[str, Destination]) -> Outcome:
    """Send one planned outcome, or mark it ``dry_run`` when its destination may not send."""
    if outcome.status != PLANNED or outcome.request is None or outcome.destination is None:
        return outcome
    destination = destinations[outcome.destination]
    if destination.dry_run:
        return replace(outcome, status=DRY_RUN)
    fields = {"mapping": outcome.mapping, "destination": outcome.destination, "event_id": outcome.event_id}
    try:
        delivered = await destination.send(outcome.request)
    except Problem as problem:
        problem.extensions.update({k: v for k, v in fields.items() if v})
        log.warning("delivery", outcome=REJECTED, code=problem.code, detail=problem.detail, **fields)
        return replace(outcome, status=REJECTED, problem=problem)
    log.info("delivery", outcome=DELIVERED, **fields)
    response = dict(delivered.response)
    response.pop("status", None)
    return replace(outcome, status=DELIVERED, response=response)


def as_preview(outcomes: list[Outcome]) -> list[Outcome]:
    """Planned outcomes as a preview shows them: what would be sent, nothing sent."""
    return [replace(o, status=DRY_RUN) if o.status == PLANNED else o for o in outcomes]
