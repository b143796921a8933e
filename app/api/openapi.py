"""Hand-written OpenAPI fragments for routes that read the raw body (any Content-Type)."""

from __future__ import annotations

from typing import Any

_PAYLOAD_SCHEMA: dict[str, Any] = {
    "description": (
        "One of the four Adobe shapes: single `{xdm, data, meta}`, wrapped `{event: {...}}`, "
        "batch `{events: [...], xdm: {identityMap}}`, or bare XDM `{eventType, ...}`. "
        "Parsed as JSON whatever the Content-Type."
    ),
    "type": "object",
    "additionalProperties": True,
}
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "retryable": {"type": "boolean"},
        "detail": {"type": "string"},
    },
    "additionalProperties": True,
}
_RESULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "results": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    },
}
_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _PAYLOAD_SCHEMA},
        "text/plain": {"schema": {"type": "string"}},
    },
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM_SCHEMA}},
    }


INGEST_OPENAPI: dict[str, Any] = {
    "requestBody": _BODY,
    "responses": {
        "200": {"description": "Every result delivered, dry_run or ignored",
                "content": {"application/json": {"schema": _RESULTS_SCHEMA}}},
        "207": {"description": "Mixed results: some rejected",
                "content": {"application/json": {"schema": _RESULTS_SCHEMA}}},
        "400": _problem("invalid_json or unsupported_payload"),
        "401": _problem("unauthorized"),
        "404": _problem("mapping_not_found"),
        "413": _problem("payload_too_large"),
        "422": _problem("Every matched result rejected: the first problem, with `results`"),
    },
}  # fmt: skip

PREVIEW_OPENAPI: dict[str, Any] = {
    "requestBody": _BODY,
    "responses": {
        "200": {"description": "Rendered bodies and validation problems per (event, mapping)",
                "content": {"application/json": {"schema": _RESULTS_SCHEMA}}},
        "400": _problem("invalid_json or unsupported_payload"),
        "401": _problem("unauthorized"),
        "404": _problem("mapping_not_found"),
        "413": _problem("payload_too_large"),
    },
}  # fmt: skip

_DRAFT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mapping", "payload"],
    "properties": {
        "mapping": {"type": "string",
                    "description": "The YAML text of one mapping file (its `examples` are not run)"},
        "payload": _PAYLOAD_SCHEMA,
        "file": {"type": "string",
                 "description": "A file name for issues and the default `name` (`draft.yaml`)"},
    },
}  # fmt: skip

DRAFT_OPENAPI: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _DRAFT_SCHEMA}}},
    "responses": {
        "200": {"description": "As `POST /v1/preview`, for the draft mapping alone (its `when` is checked)",
                "content": {"application/json": {"schema": _RESULTS_SCHEMA}}},
        "400": _problem("invalid_json, unsupported_payload, invalid_request (no `mapping` or `payload`)"),
        "401": _problem("unauthorized"),
        "413": _problem("payload_too_large"),
        "422": _problem("mapping_invalid: the text does not compile; `errors` lists `{file, line, reason}`"),
    },
}  # fmt: skip
