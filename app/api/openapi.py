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
        "408": _problem("request_timeout: the body did not arrive within RELAY_BODY_TIMEOUT"),
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
        "408": _problem("request_timeout: the body did not arrive within RELAY_BODY_TIMEOUT"),
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
        "400": _problem("invalid_json, unsupported_payload, invalid_request (no `mapping` or `payload`), "
                        "json_too_deep, string_too_long (the payload, held to ingest's limits)"),
        "401": _problem("unauthorized"),
        "408": _problem("request_timeout: the body did not arrive within RELAY_BODY_TIMEOUT"),
        "413": _problem("payload_too_large, too_many_events"),
        "422": _problem("mapping_invalid: the text does not compile, or is not plain YAML (anchors, "
                        "aliases, tags); `errors` lists `{file, line, reason}`. draft_too_costly: past "
                        "RELAY_DRAFT_TIMEOUT or RELAY_DRAFT_MEMORY_BYTES, or an answer over 8 MiB"),
        "503": _problem("overloaded: too many draft previews waiting"),
    },
}  # fmt: skip

# Every route's answers as documented in /openapi.json (FastAPI alone knows neither our
# problem documents nor the bodies of routes that return a plain Response).
_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
_DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "status",
        "mapping",
        "destination",
        "attempts",
        "created_at",
        "updated_at",
        "endpoint",
    ],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "in_flight", "delivered", "dead", "dry_run"]},
        "mapping": {"type": "string"},
        "destination": {"type": "string"},
        "event_id": {"type": ["string", "null"]},
        "attempts": {"type": "integer", "minimum": 0},
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
        "next_attempt_at": {"type": "number"},
        "endpoint": {"type": "string"},
        "request_id": {"type": "string"},
        "last_problem": _PROBLEM_SCHEMA,
        "response": _OBJECT,
        "body": {},
    },
    "additionalProperties": True,
}
_REPLAYED: dict[str, Any] = {
    "type": "object",
    "required": ["replayed"],
    "properties": {"replayed": {"type": "integer", "minimum": 0}},
}
_CIRCUITS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["state", "since"],
        "properties": {
            "state": {"type": "string", "enum": ["closed", "open", "half_open"]},
            "since": {"type": "number"},
        },
    },
}
_DEAD_LETTERS: dict[str, Any] = {
    "type": "object",
    "required": ["dead_letters", "count"],
    "properties": {
        "dead_letters": {"type": "array", "items": _DELIVERY_SCHEMA},
        "count": {"type": "integer"},
        "circuits": _CIRCUITS,
    },
}
_SUMMARY: dict[str, Any] = {
    "type": "object",
    "required": ["generated_at", "minutes", "dead_window_seconds", "dead_last_hour_capped",
                 "dead_letters", "destinations"],
    "properties": {
        "generated_at": {"type": "number"},
        "minutes": {"type": "integer"},
        "dead_window_seconds": {"type": "integer"},
        "dead_last_hour_capped": {"type": "boolean"},
        "dead_letters": {"type": "integer"},
        "destinations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "dry_run", "pending", "oldest_pending_age_seconds",
                             "delivered_per_minute", "limit_per_minute", "circuit", "dead_last_hour",
                             "dead_last_hour_by_code"],
                "properties": {
                    "name": {"type": "string"},
                    "dry_run": {"type": "boolean"},
                    "pending": {"type": "integer", "minimum": 0},
                    "oldest_pending_age_seconds": {"type": "number", "minimum": 0},
                    "delivered_per_minute": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "limit_per_minute": {"type": ["number", "null"]},
                    "circuit": {"oneOf": [{"type": "null"}, _CIRCUITS["additionalProperties"]]},
                    "dead_last_hour": {"type": "integer", "minimum": 0},
                    "dead_last_hour_by_code": {"type": "object",
                                               "additionalProperties": {"type": "integer"}},
                },
            },
        },
    },
}  # fmt: skip
_HEALTH: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}},
}
_READY: dict[str, Any] = {
    "type": "object",
    "required": ["status", "mappings", "dry_run", "pending", "dead_letters"],
    "properties": {
        "status": {"type": "string"},
        "mappings": {"type": "array", "items": {"type": "string"}},
        "dry_run": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "pending": {"type": "object", "additionalProperties": {"type": "integer"}},
        "dead_letters": {"type": "integer"},
        "circuits": _CIRCUITS,
    },
}
_PREVIEW: dict[str, Any] = {
    "type": "object",
    "required": ["shape", "events", "results"],
    "properties": {
        "shape": {"type": "string", "enum": ["single", "wrapped", "batch", "bare"]},
        "events": {"type": "integer"},
        "results": {"type": "array", "items": _OBJECT},
    },
}
_MAPPINGS: dict[str, Any] = {
    "type": "object",
    "required": ["mappings"],
    "properties": {"mappings": {"type": "array", "items": _OBJECT}},
}
_MAPPING_TEXT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "text"],
    "properties": {"name": {"type": "string"}, "text": {"type": "string"}},
}
_SAMPLES: dict[str, Any] = {
    "type": "object",
    "required": ["samples"],
    "properties": {"samples": {"type": "array", "items": _OBJECT}},
}
_ATTEMPT: dict[str, Any] = {
    "type": "object",
    "required": ["at", "outcome", "code", "upstream_status", "latency_ms"],
    "properties": {
        "at": {"type": "number"},
        "outcome": {"type": "string", "enum": ["delivered", "retry", "dead"]},
        "code": {"type": "string"},
        "upstream_status": {"type": ["integer", "null"]},
        "latency_ms": {"type": ["number", "null"]},
    },
}
_TRACE: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "deliveries"],
    "properties": {
        "event_id": {"type": "string"},
        "deliveries": {
            "type": "array",
            "items": {
                "allOf": [_DELIVERY_SCHEMA],
                "type": "object",
                "required": ["history", "body"],
                "properties": {
                    "history": {"type": "array", "items": _ATTEMPT},
                    "verified": {"type": ["boolean", "null"]},
                },
            },
        },
    },
}
_ERASED: dict[str, Any] = {
    "type": "object",
    "required": ["identifiers", "relay", "zendesk"],
    "properties": {
        "identifiers": {"type": "integer"},
        "relay": {
            "type": "object",
            "required": ["deliveries", "dead_letters", "idempotency_keys"],
            "additionalProperties": {"type": "integer", "minimum": 0},
        },
        "zendesk": {
            "type": "object",
            "required": ["profiles_deleted", "lookups"],
            "properties": {
                "profiles_deleted": {"type": "array", "items": _OBJECT},
                "lookups": {"type": "integer", "minimum": 0},
                "skipped": {"type": "string"},
            },
        },
    },
}
_INGEST_ERRORS = ("400", "401", "404", "408", "409", "413", "422", "429", "502", "503", "504")
_ADMIN_ERRORS = ("401", "403")
# (method, path) -> {success status: body schema}, and the error statuses it may answer
ROUTE_ANSWERS: dict[tuple[str, str], tuple[dict[str, Any], tuple[str, ...]]] = {
    ("post", "/v1/events"): (
        {"200": _RESULTS_SCHEMA, "202": _RESULTS_SCHEMA, "207": _RESULTS_SCHEMA},
        _INGEST_ERRORS,
    ),
    ("post", "/v1/events/{mapping}"): (
        {"200": _RESULTS_SCHEMA, "202": _RESULTS_SCHEMA, "207": _RESULTS_SCHEMA},
        _INGEST_ERRORS,
    ),
    ("post", "/v1/preview"): ({"200": _PREVIEW}, ("400", "401", "404", "408", "413")),
    ("get", "/v1/deliveries/summary"): ({"200": _SUMMARY}, (*_ADMIN_ERRORS, "503")),
    ("get", "/v1/deliveries/{delivery_id}"): ({"200": _DELIVERY_SCHEMA}, ("401", "404")),
    ("get", "/v1/dead-letters"): ({"200": _DEAD_LETTERS}, ("400", *_ADMIN_ERRORS)),
    ("get", "/v1/dead-letters/{delivery_id}"): ({"200": _DELIVERY_SCHEMA}, (*_ADMIN_ERRORS, "404")),
    ("delete", "/v1/dead-letters/{delivery_id}"): ({"204": {}}, (*_ADMIN_ERRORS, "404")),
    ("post", "/v1/dead-letters/{delivery_id}/replay"): ({"202": _REPLAYED}, (*_ADMIN_ERRORS, "404")),
    ("post", "/v1/dead-letters/replay"): ({"202": _REPLAYED}, ("400", *_ADMIN_ERRORS)),
    ("get", "/v1/trace/{event_id}"): ({"200": _TRACE}, ("400", *_ADMIN_ERRORS, "404", "503")),
    ("post", "/v1/erasure"): (
        {"200": _ERASED},
        ("400", *_ADMIN_ERRORS, "408", "413", "422", "429", "502", "503", "504"),
    ),
    ("get", "/healthz"): ({"200": _HEALTH}, ()),
    ("get", "/readyz"): ({"200": _READY}, ("503",)),
    ("get", "/metrics"): ({"200": {"media_type": "text/plain"}}, ()),
    ("get", "/v1/mappings"): ({"200": _MAPPINGS}, ("401",)),
    ("get", "/v1/mappings/{name}"): ({"200": _MAPPING_TEXT}, ("401", "404")),
    ("post", "/v1/preview/draft"): ({"200": _PREVIEW}, ("400", "401", "408", "413", "422")),
    ("get", "/v1/samples"): ({"200": _SAMPLES}, ("401",)),
    ("get", "/v1/samples/{name}"): ({"200": _OBJECT}, ("401", "404")),
}


def complete_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """Document every route's real answers in ``doc`` (in place): success bodies, each error
    as a problem document (never FastAPI's 422 validation shape), and 500 everywhere."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = _PROBLEM_SCHEMA
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            successes, errors = ROUTE_ANSWERS.get((method, path), ({}, ()))
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if "$ref" in str(responses.get("422", "")):  # FastAPI's own validation error
                del responses["422"]
            for status, schema in successes.items():
                responses[status] = _success(responses.get(status, {}), status, schema)
            if successes and "200" not in successes:
                responses.pop("200", None)
            for status in (*errors, "500"):
                if status not in responses:
                    responses[status] = _problem(_ERROR_DESCRIPTIONS.get(status, "A problem document"))
    return doc


_ERROR_DESCRIPTIONS = {
    "400": "invalid_request, invalid_json, unsupported_payload, json_too_deep or string_too_long",
    "401": "unauthorized or invalid_signature",
    "403": "forbidden: admin routes are off without RELAY_ADMIN_TOKEN",
    "404": "not_found or mapping_not_found",
    "408": "request_timeout: the body did not arrive within RELAY_BODY_TIMEOUT",
    "409": "Every matched result failed: destination_conflict",
    "413": "payload_too_large or too_many_events",
    "429": "Every matched result failed: rate_limited",
    "500": "internal_error",
    "502": "Every matched result failed: destination_unavailable, _auth_failed or _not_found",
    "503": "overloaded or store_unavailable (with Retry-After)",
    "504": "Every matched result failed: timeout",
}


def _success(existing: dict[str, Any], status: str, schema: dict[str, Any]) -> dict[str, Any]:
    description = existing.get("description") or "Success"
    if status == "204":
        return {"description": "Done; no body"}
    if "media_type" in schema:
        return {"description": description, "content": {schema["media_type"]: {"schema": {"type": "string"}}}}
    return {"description": description, "content": {"application/json": {"schema": schema}}}
