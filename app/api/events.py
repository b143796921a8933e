"""``POST /v1/events``, ``POST /v1/events/{mapping}`` and ``POST /v1/preview``.

Each handler lets the request in from its headers (a token, or a signature's headers) before
reading the body, calls the pipeline and shapes its answer. Request ids, the request's log
line and problems raised here are handled for every route alike (``middleware.py``,
``app.py``).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from app import logs, pipeline
from app.api.auth import authenticate_headers, request_path
from app.api.body import read_limited_body
from app.api.openapi import INGEST_OPENAPI, PREVIEW_OPENAPI
from app.api.responses import json_response, problem_response
from app.mapping.loader import Mapping
from app.payloads import parse_payload
from app.pipeline import Outcome, as_preview, plan
from app.problems import Problem
from app.relay import Relay
from app.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from app.status import ResultStatus

MAX_WAIT = 30.0

router = APIRouter()


@router.post("/v1/events", openapi_extra=INGEST_OPENAPI, summary="Ingest Adobe events")
async def ingest(request: Request) -> Response:
    """Match, render, validate and store every event of the payload."""
    return await answer_ingest(request, mapping_name=None)


@router.post(
    "/v1/events/{mapping}",
    openapi_extra=INGEST_OPENAPI,
    summary="Ingest through one mapping, skipping its `when`",
)
async def ingest_one_mapping(request: Request, mapping: str) -> Response:
    """Like ``POST /v1/events`` but only through the named mapping."""
    return await answer_ingest(request, mapping_name=mapping)


@router.post("/v1/preview", openapi_extra=PREVIEW_OPENAPI, summary="Render and validate; never sends")
async def preview(request: Request, mapping: str | None = None) -> Response:
    """What the relay would send for this payload, with every validation problem."""
    relay: Relay = request.app.state.relay
    body = await admitted_body(request, relay)
    only = mapping_named(relay, mapping)
    parsed = parse_payload(body, relay.limits)
    outcomes = as_preview(plan(parsed.events, relay.mappings, relay.destinations, only=only))
    return json_response(
        {
            "shape": parsed.shape,
            "events": len(parsed.events),
            "results": [o.to_dict(show_request=True) for o in outcomes],
        }
    )


async def answer_ingest(request: Request, mapping_name: str | None) -> Response:
    """The answer to one ingest request, problems included (counted by code)."""
    relay: Relay = request.app.state.relay
    started = time.perf_counter()
    request_id = request.scope.get("state", {}).get("request_id")
    try:
        body = await admitted_body(request, relay)
        only = mapping_named(relay, mapping_name)
        wait = requested_wait(request.scope.get("query_string", b""), request.headers.get("prefer"))
        ingested = await pipeline.ingest(relay, body, only=only, wait=wait, request_id=request_id)
    except Problem as problem:
        relay.metrics.ingest_problems.labels(problem.code).inc()
        response = problem_response(problem)
    else:
        response = ingest_response(ingested.outcomes, request_id)
        if wait is not None:
            response.headers["Preference-Applied"] = f"wait={wait:g}"
        if logs.info_enabled():  # the request's log line is the only reader
            request.state.log_fields = {
                "shape": ingested.shape,
                "events": ingested.events,
                "outcomes": _count(ingested.outcomes),
            }
    relay.metrics.ingest_duration.observe(time.perf_counter() - started)
    return response


def ingest_response(outcomes: list[Outcome], request_id: str | None) -> Response:
    """202 when something is still queued and nothing failed, 200 when all is final and
    nothing failed; the first problem (with all results) when everything that matched
    failed (rejected or dead); 207 Multi-Status when results are mixed."""
    results = [outcome.to_dict() for outcome in outcomes]
    failed = [
        o.problem
        for o in outcomes
        if o.status in (ResultStatus.REJECTED, ResultStatus.DEAD) and o.problem is not None
    ]
    if not failed:
        status = 202 if any(o.status == ResultStatus.QUEUED for o in outcomes) else 200
    elif len(failed) == sum(o.status != ResultStatus.IGNORED for o in outcomes):
        return problem_response(failed[0], request_id=request_id, results=results)
    else:
        status = 207
    content = orjson.dumps({"request_id": request_id, "results": results})
    return Response(content, status, media_type="application/json")


async def admitted_body(request: Request, relay: Relay) -> bytes:
    """The body, read only once the headers let the request in, then its signature checked:
    a caller without credentials is answered at once, whatever body it promised."""
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signed = authenticate_headers(
        request.headers.get("authorization"),
        signature=signature,
        timestamp=timestamp,
        tokens=relay.settings.relay_ingest_tokens,
        verifier=relay.signatures,
        allow_open=relay.settings.relay_allow_unauthenticated,
    )
    body = await read_limited_body(request, relay.settings.relay_max_body_bytes)
    if signed:
        relay.signatures.verify(
            signature, timestamp, body, method=request.method, path=request_path(request.scope)
        )
    return body


def mapping_named(relay: Relay, mapping_name: str | None) -> Mapping | None:
    """The mapping a request names (``mapping_not_found`` if none has that name)."""
    if mapping_name is None:
        return None
    mapping = relay.mappings.get(mapping_name)
    if mapping is None:
        raise Problem("mapping_not_found", f"No mapping named {mapping_name!r}")
    return mapping


def requested_wait(query_string: bytes, prefer: str | None) -> float | None:
    """Seconds to wait for outcomes from ``?wait=N`` or ``Prefer: wait=N`` (at most 30)."""
    raw = None
    if query_string:
        values = parse_qs(query_string.decode("latin-1")).get("wait")
        raw = values[-1] if values else None
    if raw is None and prefer:
        for preference in prefer.split(","):
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


def _count(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts
