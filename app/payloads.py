"""Adobe payload shapes -> normalised events ``{"xdm": ..., "data": ..., "meta": ...}``.

The four shapes (DESIGN section 1): single ``{"xdm": ...}``, wrapped ``{"event": {...}}``,
batch ``{"events": [...], "xdm": {"identityMap": ...}}`` and bare XDM ``{"eventType": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from app.problems import Problem

Event = dict[str, Any]

# Top-level fields of the XDM ExperienceEvent class and its common field groups; a body
# carrying any of them (or a tenant field such as `_myorg`) is taken as bare XDM.
XDM_KEYS = frozenset(
    {
        "_id", "eventType", "timestamp", "identityMap", "commerce", "productListItems",
        "web", "device", "environment", "placeContext", "marketing", "channel",
        "application", "implementationDetails", "dataSource", "endUserIDs",
        "segmentMemberships", "profileStitch", "search", "media", "advertising",
        "directMarketing", "personID", "eventMergeId", "producedBy",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ParsedPayload:
    """The events of one request and the shape they arrived in."""

    shape: str  # "single" | "wrapped" | "batch" | "bare"
    events: list[Event]


def parse_json(body: bytes) -> Any:
    """Parse a request body as JSON whatever its Content-Type; ``invalid_json`` otherwise."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem("invalid_json", f"Body is not valid UTF-8 JSON: {exc}") from None


def normalise(payload: Any) -> ParsedPayload:
    """Recognise the shape of a parsed payload and return its normalised events."""
    if not isinstance(payload, dict):
        raise Problem(
            "unsupported_payload",
            f"Expected a JSON object, got {_json_type(payload)}",
        )
    if "events" in payload:
        return ParsedPayload("batch", _normalise_batch(payload))
    if "event" in payload:
        event = _normalise_event(payload["event"], "event")
        if isinstance(payload.get("meta"), dict):
            event["meta"] = {**payload["meta"], **event["meta"]}
        return ParsedPayload("wrapped", [event])
    if "xdm" in payload:
        return ParsedPayload("single", [_normalise_event(payload, "")])
    if any(key in XDM_KEYS or key.startswith("_") for key in payload):
        return ParsedPayload("bare", [{"xdm": payload, "data": {}, "meta": {}}])
    raise Problem(
        "unsupported_payload",
        "Object has none of `xdm`, `event`, `events` or XDM fields such as `eventType`",
    )


def parse_payload(body: bytes) -> ParsedPayload:
    """Bytes of a request body -> its normalised events (raises ``Problem``)."""
    return normalise(parse_json(body))


def _normalise_batch(payload: dict[str, Any]) -> list[Event]:
    events = payload["events"]
    if not isinstance(events, list):
        raise Problem("unsupported_payload", f"`events` must be an array, got {_json_type(events)}")
    request_xdm = payload.get("xdm")
    request_identities = request_xdm.get("identityMap") if isinstance(request_xdm, dict) else None
    request_meta = payload.get("meta")
    normalised = []
    for index, item in enumerate(events):
        event = _normalise_event(item, f"events[{index}]")
        if isinstance(request_identities, dict) and request_identities:
            event["xdm"] = {
                **event["xdm"],
                "identityMap": merge_identity_maps(event["xdm"].get("identityMap"), request_identities),
            }
        if isinstance(request_meta, dict) and request_meta:
            event["meta"] = {**request_meta, **event["meta"]}
        normalised.append(event)
    return normalised


def _normalise_event(item: Any, where: str) -> Event:
    """One event object (single shape, or bare XDM inside a batch) -> normalised form."""
    label = f"`{where}`" if where else "the payload"
    if not isinstance(item, dict):
        raise Problem("unsupported_payload", f"{label} must be an object, got {_json_type(item)}")
    if "xdm" not in item:
        if where and any(key in XDM_KEYS or key.startswith("_") for key in item):
            return {"xdm": item, "data": {}, "meta": {}}
        raise Problem("unsupported_payload", f"{label} has no `xdm` object")
    xdm, data, meta = item["xdm"], item.get("data"), item.get("meta")
    if not isinstance(xdm, dict):
        raise Problem("unsupported_payload", f"`xdm` in {label} must be an object")
    for name, value in (("data", data), ("meta", meta)):
        if value is not None and not isinstance(value, dict):
            raise Problem("unsupported_payload", f"`{name}` in {label} must be an object")
    return {"xdm": xdm, "data": data or {}, "meta": meta or {}}


def merge_identity_maps(own: Any, request_level: dict[str, Any]) -> dict[str, Any]:
    """Add the request-level identities to an event's map, never replacing its own entries."""
    merged: dict[str, Any] = dict(own) if isinstance(own, dict) else {}
    for namespace, entries in request_level.items():
        if not isinstance(entries, list):
            continue
        existing = merged.get(namespace)
        if not isinstance(existing, list):
            merged[namespace] = list(entries)
            continue
        seen = {entry.get("id") for entry in existing if isinstance(entry, dict)}
        merged[namespace] = existing + [
            entry for entry in entries if isinstance(entry, dict) and entry.get("id") not in seen
        ]
    return merged


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
