"""``POST /v1/events``, ``POST /v1/events/{mapping}`` and ``POST /v1/preview``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.auth import require_ingest_token
from app.api.body import read_limited_body
from app.api.openapi import INGEST_OPENAPI, PREVIEW_OPENAPI
from app.api.responses import json_response, problem_response
from app.delivery.store import DEAD, QUEUED
from app.mapping.loader import Mapping
from app.payloads import parse_payload
from app.pipeline import IGNORED, REJECTED, Outcome, accept, as_preview, plan, settle
from app.problems import Problem
from app.relay import Relay

router = APIRouter()


@router.post("/v1/events", openapi_extra=INGEST_OPENAPI, summary="Ingest Adobe events")
async def ingest(request: Request) -> Response:
    """Match, render, validate and store every event of the payload (served by ``IngestRoute``)."""
    return await ingest_request(request, mapping_name=None)


@router.post(
    "/v1/events/{mapping}",
    openapi_extra=INGEST_OPENAPI,
    summary="Ingest through one mapping, skipping its `when`",
)
async def ingest_one_mapping(request: Request, mapping: str) -> Response:
    """Like ``POST /v1/events`` but only through the named mapping."""
    return await ingest_request(request, mapping_name=mapping)


@router.post("/v1/preview", openapi_extra=PREVIEW_OPENAPI, summary="Render and validate; never sends")
async def preview(request: Request, mapping: str | None = None) -> Response:
    """What the relay would send for this payload, with every validation problem."""
    relay, only = await _authorised(request, mapping)
    parsed = parse_payload(await read_limited_body(request, relay.settings.relay_max_body_bytes))
    outcomes = as_preview(plan(parsed.events, relay.mappings, relay.destinations, only=only))
    return json_response(
        {
            "shape": parsed.shape,
            "events": len(parsed.events),
            "results": [o.to_dict(show_request=True) for o in outcomes],
        }
    )


async def ingest_request(request: Request, mapping_name: str | None) -> Response:
    """The ingest handler: parse, plan, store, optionally wait; raises ``Problem``."""
    relay, only = await _authorised(request, mapping_name)
    wait = requested_wait(request)
    parsed = parse_payload(await read_limited_body(request, relay.settings.relay_max_body_bytes))
    request_id = request.scope["state"].get("request_id")
    outcomes = await accept(
        plan(parsed.events, relay.mappings, relay.destinations, only=only),
        relay.store,
        relay.destinations,
        request_id=request_id,
        max_pending=relay.settings.relay_max_pending,
        idempotency_ttl=relay.settings.relay_idempotency_ttl,
    )
    queued = [o for o in outcomes if o.status == QUEUED and o.delivery_id]
    for destination in {str(o.destination) for o in queued}:
        relay.dispatcher.notify(destination)
    if wait and queued:
        finished = await relay.waiters.wait(relay.store, [str(o.delivery_id) for o in queued], wait)
        outcomes = settle(outcomes, finished)
    request.scope["state"]["log_fields"] = {
        "shape": parsed.shape,
        "events": len(parsed.events),
        "outcomes": _count(outcomes),
    }
    response = ingest_response(outcomes, request_id)
    if wait is not None:
        response.headers["Preference-Applied"] = f"wait={wait:g}"
    return response


MAX_WAIT = 30.0


def requested_wait(request: Request) -> float | None:
    """Seconds to wait for outcomes from ``?wait=N`` or ``Prefer: wait=N`` (at most 30)."""
    if not request.scope.get("query_string") and b"prefer" not in dict(request.scope["headers"]):
        return None  # the common case, without building the query and header objects
    raw = request.query_params.get("wait")
    if raw is None:
        for preference in request.headers.get("prefer", "").split(","):
            name, _, value = preference.strip().partition("=")
            if name.strip().lower() == "wait":
                raw = value.strip().strip('"')
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise Problem("invalid_request", f"wait must be a number of seconds, got {raw!r}") from None
    if not 0 <= seconds < float("inf"):
        raise Problem("invalid_request", f"wait must be between 0 and {MAX_WAIT:g} seconds")
    return min(seconds, MAX_WAIT)


async def _authorised(request: Request, mapping_name: str | None) -> tuple[Relay, Mapping | None]:
    relay: Relay = request.app.state.relay
    require_ingest_token(
        request, relay.settings.relay_ingest_tokens, relay.settings.relay_allow_unauthenticated
    )
    if mapping_name is None:
        return relay, None
    mapping = relay.mappings.get(mapping_name)
    if mapping is None:
        raise Problem("mapping_not_found", f"No mapping named {mapping_name!r}")
    return relay, mapping


def ingest_response(outcomes: list[Outcome], request_id: str | None) -> Response:
    """202 when something is still queued and nothing failed, 200 when all is final and
    nothing failed; the first problem (with all results) when everything that matched
    failed (rejected or dead); 207 Multi-Status when results are mixed."""
    results = [outcome.to_dict() for outcome in outcomes]
    failed = [o for o in outcomes if o.status in (REJECTED, DEAD) and o.problem is not None]
    matched = [o for o in outcomes if o.status != IGNORED]
    body = {"request_id": request_id, "results": results}
    if not failed:
        return json_response(body, status=202 if any(o.status == QUEUED for o in outcomes) else 200)
    if len(failed) == len(matched):
        first = failed[0].problem
        assert first is not None
        return problem_response(first, request_id=request_id, results=results)
    return json_response(body, status=207)


def _count(outcomes: list[Outcome]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts
