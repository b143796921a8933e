"""``GET /v1/deliveries/{id}`` and the dead-letter admin routes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from app.api.auth import admin_relay, bearer_token, require_ingest_token, token_matches
from app.api.responses import json_response
from app.delivery.store import DeadLetterFilter
from app.problems import Problem
from app.relay import Relay
from app.status import DeliveryStatus

router = APIRouter()


@dataclass
class DeadLetterQuery:
    """The dead-letter filters of the query string (times ISO-8601; UTC without an offset)."""

    destination: str | None = None
    mapping: str | None = None
    code: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def filter(self, limit: int) -> DeadLetterFilter:
        return DeadLetterFilter(
            destination=self.destination,
            mapping=self.mapping,
            code=self.code,
            since=_epoch(self.since),
            until=_epoch(self.until),
            limit=limit,
        )


@router.get("/v1/deliveries/{delivery_id}", summary="One delivery: status, attempts, last problem")
async def get_delivery(request: Request, delivery_id: str) -> Response:
    relay = _relay(request)
    admin = relay.settings.relay_admin_token
    if not (admin is not None and token_matches(bearer_token(request), [admin])):
        require_ingest_token(
            request, relay.settings.relay_ingest_tokens, relay.settings.relay_allow_unauthenticated
        )
    delivery = await relay.store.get(delivery_id)
    if delivery is None:
        raise Problem("not_found", f"No delivery {delivery_id!r}")
    return json_response(delivery.to_dict())


@router.get("/v1/dead-letters", summary="List dead letters (admin)")
async def list_dead_letters(
    request: Request,
    query: Annotated[DeadLetterQuery, Depends()],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Filters: destination, mapping, problem code, and ISO-8601 times (dead since / before)."""
    relay = admin_relay(request)
    where = query.filter(limit)
    letters = await relay.store.dead_letters(where)
    return json_response(
        {
            "dead_letters": [d.to_dict() for d in letters],
            "count": len(letters),
            "circuits": relay.dispatcher.circuit_states(),  # why they may be piling up
        }
    )


@router.get(
    "/v1/dead-letters/{delivery_id}", summary="One dead letter with its body and upstream answer (admin)"
)
async def get_dead_letter(request: Request, delivery_id: str) -> Response:
    relay = admin_relay(request)
    delivery = await relay.store.get(delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.DEAD:
        raise Problem("not_found", f"No dead letter {delivery_id!r}")
    return json_response(delivery.to_dict(with_body=True))


@router.post("/v1/dead-letters/{delivery_id}/replay", summary="Replay one dead letter (admin)")
async def replay_one(request: Request, delivery_id: str) -> Response:
    relay = admin_relay(request)
    count = await relay.store.replay(DeadLetterFilter(ids=(delivery_id,)))
    relay.metrics.dead_letters_replayed.inc(count)
    if not count:
        raise Problem("not_found", f"No dead letter {delivery_id!r}")
    delivery = await relay.store.get(delivery_id)
    if delivery is not None:
        relay.dispatcher.notify(delivery.destination)
    return json_response({"replayed": count}, status=202)


@router.post("/v1/dead-letters/replay", summary="Replay every dead letter matching a filter (admin)")
async def replay_matching(request: Request, query: Annotated[DeadLetterQuery, Depends()]) -> Response:
    relay = admin_relay(request)
    count = await relay.store.replay(query.filter(0))
    relay.metrics.dead_letters_replayed.inc(count)
    for name in relay.destinations:
        relay.dispatcher.notify(name)
    return json_response({"replayed": count}, status=202)


@router.delete("/v1/dead-letters/{delivery_id}", summary="Purge one dead letter (admin)")
async def purge_one(request: Request, delivery_id: str) -> Response:
    relay = admin_relay(request)
    if not await relay.store.purge(DeadLetterFilter(ids=(delivery_id,))):
        raise Problem("not_found", f"No dead letter {delivery_id!r}")
    return Response(status_code=204)


def _relay(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    return relay


def _epoch(moment: datetime | None) -> float | None:
    """A query time as epoch seconds; a time without an offset is UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
