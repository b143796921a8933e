"""``POST /v1/events``, ``POST /v1/events/{mapping}`` and ``POST /v1/preview``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.auth import authenticate_headers, request_path
from app.api.body import read_limited_body
from app.api.ingest import handle_ingest
from app.api.openapi import INGEST_OPENAPI, PREVIEW_OPENAPI
from app.api.responses import json_response
from app.mapping.loader import Mapping
from app.payloads import parse_payload
from app.pipeline import as_preview, plan
from app.problems import Problem
from app.relay import Relay
from app.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER

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
    relay: Relay = request.app.state.relay
    body = await _admitted_body(request, relay)
    only = _mapping(relay, mapping)
    parsed = parse_payload(body, relay.limits)
    outcomes = as_preview(plan(parsed.events, relay.mappings, relay.destinations, only=only))
    return json_response(
        {
            "shape": parsed.shape,
            "events": len(parsed.events),
            "results": [o.to_dict(show_request=True) for o in outcomes],
        }
    )


async def ingest_request(request: Request, mapping_name: str | None) -> Response:
    """The FastAPI face of ``handle_ingest`` (traffic is served by ``IngestRoute``)."""
    relay: Relay = request.app.state.relay
    answer = await handle_ingest(
        relay,
        lambda: read_limited_body(request, relay.settings.relay_max_body_bytes),
        path=request_path(request.scope),
        mapping_name=mapping_name,
        authorization=request.headers.get("authorization"),
        query_string=request.scope.get("query_string", b""),
        prefer=request.headers.get("prefer"),
        request_id=request.scope.get("state", {}).get("request_id"),
        signature=request.headers.get(SIGNATURE_HEADER),
        timestamp=request.headers.get(TIMESTAMP_HEADER),
    )
    return Response(answer.body, answer.status, answer.headers, media_type=answer.content_type)


async def _admitted_body(request: Request, relay: Relay) -> bytes:
    """The body, read only once the headers let the request in, then its signature checked."""
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


def _mapping(relay: Relay, mapping_name: str | None) -> Mapping | None:
    if mapping_name is None:
        return None
    mapping = relay.mappings.get(mapping_name)
    if mapping is None:
        raise Problem("mapping_not_found", f"No mapping named {mapping_name!r}")
    return mapping
