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
from app.mapping.drafts import compile_draft
from app.mapping.loader import Mapping, MappingLoadError, MappingSet
from app.payloads import normalise, parse_json
from app.pipeline import as_preview, plan
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
    """Compile ``mapping`` (YAML text) and answer as ``POST /v1/preview`` would with it alone."""
    relay = _authorised(request)
    doc = parse_json(await read_limited_body(request, relay.settings.relay_max_body_bytes))
    if not isinstance(doc, dict) or not isinstance(doc.get("mapping"), str) or "payload" not in doc:
        detail = "Send a JSON object with `mapping` (YAML text) and `payload` (an Adobe payload)"
        raise Problem("invalid_request", detail)
    file_name = doc.get("file")
    payload = doc["payload"]
    # the payload's text is accepted too, so a page can send what was typed and get `invalid_json`
    parsed = normalise(parse_json(payload.encode()) if isinstance(payload, str) else payload)
    endpoints = {name: d.endpoints for name, d in relay.destinations.items()}
    try:
        draft = compile_draft(doc["mapping"], file_name if isinstance(file_name, str) else None, endpoints)
    except MappingLoadError as exc:
        errors = [{"file": str(i.file), "line": i.line, "reason": i.reason} for i in exc.issues]
        raise Problem("mapping_invalid", str(exc), errors=errors) from None
    outcomes = as_preview(plan(parsed.events, MappingSet.of((draft,)), relay.destinations))
    return json_response(
        {
            "shape": parsed.shape,
            "events": len(parsed.events),
            "results": [o.to_dict(show_request=True) for o in outcomes],
        }
    )


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
