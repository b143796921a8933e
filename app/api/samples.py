"""``GET /v1/samples[/{name}]``: the sample Adobe payloads shipped next to the mappings."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.auth import require_ingest_token
from app.api.responses import json_response
from app.problems import Problem
from app.relay import Relay
from app.samples import Sample, find_samples

router = APIRouter()


@router.get("/v1/samples", summary="Sample Adobe payloads (the mappings folder's examples/)")
async def list_samples(request: Request) -> Response:
    """Name, shape and event types of each sample payload."""
    samples = await _samples(request)
    return json_response({"samples": [s.describe() for s in samples]})


@router.get("/v1/samples/{name}", summary="One sample Adobe payload, as its file holds it")
async def get_sample(request: Request, name: str) -> Response:
    """The sample's JSON, byte for byte (ready to post to ``/v1/preview`` or ``/v1/events``)."""
    sample = next((s for s in await _samples(request) if s.name == name), None)
    if sample is None:
        raise Problem("not_found", f"No sample payload {name!r}")
    return Response(sample.body, media_type="application/json")


async def _samples(request: Request) -> list[Sample]:
    relay: Relay = request.app.state.relay
    settings = relay.settings
    require_ingest_token(request, settings.relay_ingest_tokens, settings.relay_allow_unauthenticated)
    return await asyncio.to_thread(find_samples, settings.relay_mappings_dir, settings.relay_max_body_bytes)
