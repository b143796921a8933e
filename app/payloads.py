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
class PayloadLimits:
    """What one request may hold: events per batch, JSON nesting depth, characters per string."""

    max_events: int = 1000
    max_depth: int = 64
    max_string_length: int = 65_536


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
        if "depth" in str(exc) or "recursion" in str(exc):  # orjson's own limit (1024 levels)
            raise Problem("json_too_deep", "JSON nesting is deeper than the parser allows") from None
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


def parse_payload(body: bytes, limits: PayloadLimits | None = None) -> ParsedPayload:
    """Bytes of a request body -> its normalised events (raises ``Problem``), within ``limits``."""
    payload = parse_json(body)
    if limits is None:
        return normalise(payload)
    return normalise_within(payload, body, limits)


def normalise_within(payload: Any, body: bytes, limits: PayloadLimits) -> ParsedPayload:
    """``normalise`` a payload parsed from JSON text inside ``body``, within ``limits``."""
    check_limits(payload, body, limits)
    events = payload.get("events") if isinstance(payload, dict) else None
    if isinstance(events, list) and len(events) > limits.max_events:
        raise Problem(
            "too_many_events",
            f"The batch has {len(events)} events; RELAY_MAX_BATCH_EVENTS is {limits.max_events}",
        )
    return normalise(payload)


def check_limits(payload: Any, body: bytes, limits: PayloadLimits) -> None:
    """``json_too_deep`` / ``string_too_long`` when the parsed ``body`` breaks ``limits``.

    Most bodies cannot break either, and are not walked: nesting deeper than N needs more
    than N brackets, and a string longer than N characters needs a body of more than N bytes.
    """
    deep = body.count(b"{") + body.count(b"[") > limits.max_depth
    long = len(body) > limits.max_string_length
    if not (deep or long):
        return
    max_depth, max_length = limits.max_depth, limits.max_string_length
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if len(value) > max_length:
                raise _string_too_long(max_length)
            continue
        if not isinstance(value, dict | list):  # a scalar body: nothing inside
            continue
        if depth > max_depth:
            raise Problem("json_too_deep", f"JSON nesting is deeper than RELAY_MAX_JSON_DEPTH ({max_depth})")
        if isinstance(value, dict):
            if long and any(len(key) > max_length for key in value):
                raise _string_too_long(max_length)
            value = value.values()
        for item in value:
            if isinstance(item, dict | list) or (long and isinstance(item, str)):
                stack.append((item, depth + 1))


def _string_too_long(limit: int) -> Problem:
    detail = f"A JSON string is longer than RELAY_MAX_STRING_LENGTH ({limit} characters)"
    return Problem("string_too_long", detail)


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
