"""One draft preview: a request body in, the answer's JSON out (or a ``Problem``)."""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping

import orjson

from app.destinations.base import Destination
from app.mapping.drafts import compile_draft
from app.mapping.loader import MappingLoadError, MappingSet
from app.payloads import PayloadLimits, normalise_within, parse_json
from app.pipeline import as_preview, plan
from app.problems import Problem


def preview_draft(
    body: bytes, destinations: AbcMapping[str, Destination], limits: PayloadLimits, answer_limit: int
) -> bytes:
    """Compile the body's ``mapping`` (YAML text) and answer as ``POST /v1/preview`` would with it
    alone, for its ``payload``; the payload is held to ingest's ``limits``, the answer to
    ``answer_limit`` bytes (``draft_too_costly``)."""
    doc = parse_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("mapping"), str) or "payload" not in doc:
        detail = "Send a JSON object with `mapping` (YAML text) and `payload` (an Adobe payload)"
        raise Problem("invalid_request", detail)
    file_name = doc.get("file")
    payload = doc["payload"]
    if isinstance(payload, str):  # the payload's text, so a page can send what was typed
        text = payload.encode()
        parsed = normalise_within(parse_json(text), text, limits)
    else:
        parsed = normalise_within(payload, body, limits)
    endpoints = {name: d.endpoints for name, d in destinations.items()}
    try:
        draft = compile_draft(doc["mapping"], file_name if isinstance(file_name, str) else None, endpoints)
    except MappingLoadError as exc:
        errors = [{"file": str(i.file), "line": i.line, "reason": i.reason} for i in exc.issues]
        raise Problem("mapping_invalid", str(exc), errors=errors) from None
    outcomes = as_preview(plan(parsed.events, MappingSet((draft,)), destinations))
    answer = {
        "shape": parsed.shape,
        "events": len(parsed.events),
        "results": [o.to_dict(show_request=True) for o in outcomes],
    }
    try:
        data = orjson.dumps(answer)
    except orjson.JSONEncodeError as exc:  # e.g. a string with a lone surrogate, or nesting past 255
        raise Problem("mapping_error", f"The preview cannot be written as JSON: {exc}") from None
    if len(data) > answer_limit:
        detail = f"The preview would be {len(data)} bytes; a draft's preview may be {answer_limit}"
        raise Problem("draft_too_costly", detail)
    return data
