"""The mappings being served and drafts of them: ``GET /v1/mappings[/{name}]``,
``POST /v1/preview/draft``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.auth import require_ingest_token
from app.api.body import read_limited_body
from app.api.openapi import DRAFT_OPENAPI
from app.api.responses import json_response
from app.mapping.loader import Mapping
from app.problems import Problem
from app.relay import Relay

router = APIRouter()


@router.get("/v1/mappings", summary="The mappings being served")
async def list_mappings(request: Request) -> Response:
    """Name, destination, endpoint and file of each mapping, in file-name order."""
    relay = _authorised(request)
    return json_response({"mappings": [_describe(m) for m in relay.mappings.mappings]})


@router.get("/v1/mappings/{name}", summary="One mapping with the YAML text of its file")
async def get_mapping(request: Request, name: str) -> Response:
    """The mapping's description plus ``text``: its file as it is on disk now."""
    relay = _authorised(request)
    mapping = relay.mappings.get(name)
    if mapping is None:
        raise Problem("mapping_not_found", f"No mapping named {name!r}")
    try:
        text = mapping.source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise Problem("not_found", f"The file of mapping {name!r} cannot be read any more") from None
    return json_response({**_describe(mapping), "text": text})


@router.post(
    "/v1/preview/draft",
    openapi_extra=DRAFT_OPENAPI,
    summary="Preview with a mapping's YAML text; never saves, stores or sends",
)
async def preview_draft(request: Request) -> Response:
    """Compile ``mapping`` (YAML text) and answer as ``POST /v1/preview`` would with it alone.

    The draft is compiled and rendered in the relay's draft worker (``app.drafts``), within
    ``RELAY_DRAFT_TIMEOUT`` and ``RELAY_DRAFT_MEMORY_BYTES``; this only passes the body on.
    """
    relay = _authorised(request)
    body = await read_limited_body(request, relay.settings.relay_max_body_bytes)
    if relay.drafts is None:
        raise Problem("not_found", "This relay does not preview drafts")
    answer = await relay.drafts.preview(body)
    return Response(answer, 200, media_type="application/json")


def _authorised(request: Request) -> Relay:
    relay: Relay = request.app.state.relay
    require_ingest_token(
        request, relay.settings.relay_ingest_tokens, relay.settings.relay_allow_unauthenticated
    )
    return relay


def _describe(mapping: Mapping) -> dict[str, Any]:
    return {
        "name": mapping.name,
        "destination": mapping.destination,
        "endpoint": mapping.endpoint,
        "event_type": mapping.event_type,
        "file": mapping.source.name,
    }
