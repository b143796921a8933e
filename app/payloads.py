"""Adobe payload shapes -> normalised events ``{"xdm": ..., "data": ..., "meta": ...}``.

The four shapes (DESIGN section 1): single ``{"xdm": ...}``, wrapped ``{"event": {...}}``,
batch ``{"events": [...], "xdm": {"identityMap": ...}}`` and bare XDM ``{"eventType": ...}``.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
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


# orjson keeps integers from -2**63 to 2**64-1 exactly and silently turns longer ones into
# floats, so a literal of 19 or more digits is looked for. A body is first mapped to three
# classes (digit, what may come before a number, anything else) to find, at C speed, digit
# runs that follow a `:`, `[`, `,`, `-` or a blank: most bodies' long digit runs are ids in
# strings, right after a quote, and need no closer look.
_NUMBER_CLASSES = bytes(
    ord("0") if 48 <= byte <= 57 else ord(":") if byte in b":[,- \t\r\n" else ord("x") for byte in range(256)
)
_LONG_NUMBER_START = b":" + b"0" * 19
# The closer look: strings matched whole so that digits inside them are skipped; a number's
# fraction or exponent (after `.`, `e`, `+` or `-`) is not an integer literal.
_STRING_OR_LONG_INTEGER = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|(?<![\d.eE+-])(-?\d{19,}+)(?![.eE])')
_SMALLEST_EXACT, _LARGEST_EXACT = -(2**63), 2**64 - 1
# For ``check_limits`` at C speed: each bracket as a step in or out (-1 is 255 as a signed
# byte), everything else left out.
_BRACKET_STEPS = bytes(1 if byte in b"[{" else 255 if byte in b"]}" else 0 for byte in range(256))
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
# A batch's request-level `meta` is copied under each event that has a `meta` of its own; the
# copy costs one step per member, so the members are few enough for every event of a batch.
MAX_SHARED_META_MEMBERS = 64


@dataclass(frozen=True)
class PayloadLimits:
    """What one request may hold: events per batch, JSON nesting depth, characters per string,
    and what one event's identity map holds (identities per namespace, namespaces, and
    identities in all)."""

    max_events: int = 1000
    max_depth: int = 64
    max_string_length: int = 65_536
    max_identities_per_namespace: int = 100
    max_identity_namespaces: int = 50
    max_identities: int = 1000


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
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc):  # orjson's own limit (1024 levels)
            raise Problem("json_too_deep", "JSON nesting is deeper than the parser allows") from None
        raise Problem("invalid_json", f"Body is not valid UTF-8 JSON: {exc}") from None
    _check_integers(body)
    return payload


def _check_integers(body: bytes) -> None:
    """``invalid_json`` for an integer literal that orjson would have turned into a float."""
    classes = body.translate(_NUMBER_CLASSES)
    if _LONG_NUMBER_START not in classes and not classes.startswith(_LONG_NUMBER_START[1:]):
        return
    for found in _STRING_OR_LONG_INTEGER.finditer(body):
        literal = found.group(1)
        if literal is None:
            continue
        digits = len(literal) - literal.startswith(b"-")
        if digits > 20 or not _SMALLEST_EXACT <= int(literal) <= _LARGEST_EXACT:
            shown = literal.decode() if len(literal) <= 40 else f"{literal[:37].decode()}..."
            raise Problem(
                "invalid_json",
                f"The integer {shown} is outside the range kept exactly (-2^63 to 2^64-1); "
                "send it as a string",
            )


def normalise(payload: Any, limits: PayloadLimits | None = None) -> ParsedPayload:
    """Recognise the shape of a parsed payload and return its normalised events; with
    ``limits``, each event's identity map is checked against the identity caps."""
    parsed = _recognise(payload, limits)
    if limits is not None and parsed.shape != "batch":  # a batch checks its events as it merges
        for event in parsed.events:
            check_identities(event["xdm"].get("identityMap"), limits)
    return parsed


def _recognise(payload: Any, limits: PayloadLimits | None = None) -> ParsedPayload:
    if not isinstance(payload, dict):
        raise Problem(
            "unsupported_payload",
            f"Expected a JSON object, got {_json_type(payload)}",
        )
    if "events" in payload:
        return ParsedPayload("batch", _normalise_batch(payload, limits))
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
    return normalise(payload, limits)


def check_limits(payload: Any, body: bytes, limits: PayloadLimits) -> None:
    """``json_too_deep`` / ``string_too_long`` when the parsed ``body`` breaks ``limits``.

    Most bodies cannot break either, and are not walked: nesting deeper than N needs more
    than N brackets, and a string longer than N characters needs a body of more than N bytes.
    """
    deep = body.count(b"{") + body.count(b"[") > limits.max_depth
    long = len(body) > limits.max_string_length
    if not (deep or long) or _within_limits_by_bytes(body, limits):
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
            raise _too_deep(max_depth)
        if isinstance(value, dict):
            if long and any(len(key) > max_length for key in value):
                raise _string_too_long(max_length)
            value = value.values()
        for item in value:
            if isinstance(item, dict | list) or (long and isinstance(item, str)):
                stack.append((item, depth + 1))


def _within_limits_by_bytes(body: bytes, limits: PayloadLimits) -> bool:
    """Whether the text of a valid JSON body shows it within ``limits``, told at C speed (the
    walk of a 1 MB body of small objects took 100 ms); ``False`` when it cannot tell.

    Without an escaped quote, every other run between quotes is a string (whose characters
    are at most its bytes) and the rest is outside strings, where the brackets nest.
    """
    if b'\\"' in body:
        return False
    runs = body.split(b'"')
    if max(map(len, runs[1::2]), default=0) > limits.max_string_length:
        return False
    steps = array("b", b"".join(runs[::2]).translate(_BRACKET_STEPS, _NOT_BRACKETS))
    if max(accumulate(steps), default=0) > limits.max_depth:
        raise _too_deep(limits.max_depth)
    return True


def _too_deep(limit: int) -> Problem:
    return Problem("json_too_deep", f"JSON nesting is deeper than RELAY_MAX_JSON_DEPTH ({limit})")


def _string_too_long(limit: int) -> Problem:
    detail = f"A JSON string is longer than RELAY_MAX_STRING_LENGTH ({limit} characters)"
    return Problem("string_too_long", detail)


def _normalise_batch(payload: dict[str, Any], limits: PayloadLimits | None) -> list[Event]:
    """Each event of a batch, with the request-level identity map and ``meta`` added.

    The request-level values are shared, not copied: an event without an identity map (or
    ``meta``) of its own gets the very same object, so a large one costs once per request,
    not once per event. Events are read, never changed, after this.
    """
    events = payload["events"]
    if not isinstance(events, list):
        raise Problem("unsupported_payload", f"`events` must be an array, got {_json_type(events)}")
    request_xdm = payload.get("xdm")
    request_map = request_xdm.get("identityMap") if isinstance(request_xdm, dict) else None
    shared = _shared_identities(request_map)
    request_counts = None
    if shared and limits is not None:
        check_identities(shared, limits)
        request_counts = count_identities(shared)
    request_meta = payload.get("meta")
    if isinstance(request_meta, dict) and len(request_meta) > MAX_SHARED_META_MEMBERS:
        raise Problem(
            "unsupported_payload",
            f"The batch's request-level `meta` has {len(request_meta)} members; "
            f"at most {MAX_SHARED_META_MEMBERS} are shared with its events",
        )
    normalised = []
    for index, item in enumerate(events):
        event = _normalise_event(item, f"events[{index}]")
        own = event["xdm"].get("identityMap")
        if limits is not None:
            check_identities(own, limits, request_counts)
        if shared:
            merged = shared if not isinstance(own, dict) or not own else _merge_identities(own, shared)
            event["xdm"] = {**event["xdm"], "identityMap": merged}
        if isinstance(request_meta, dict) and request_meta:
            own_meta = event["meta"]
            event["meta"] = {**request_meta, **own_meta} if own_meta else request_meta
        normalised.append(event)
    return normalised


def _shared_identities(request_map: Any) -> dict[str, list[Any]]:
    """The request-level identity map's namespaces that hold a list (the others are ignored)."""
    if not isinstance(request_map, dict):
        return {}
    return {namespace: entries for namespace, entries in request_map.items() if isinstance(entries, list)}


@dataclass(frozen=True)
class IdentityCount:
    """How many identities an identity map holds, per namespace (case-folded) and in all."""

    per_namespace: dict[str, int]
    total: int
    namespaces: frozenset[str]


NO_IDENTITIES = IdentityCount({}, 0, frozenset())


def count_identities(identity_map: Any) -> IdentityCount:
    """How many identities a map holds. Namespaces are counted case-insensitively, as mapping
    functions such as ``primary_identity`` read them, and one without identities counts as
    one: the caps bound what a lookup in an event's map may scan, and what merging copies."""
    if not isinstance(identity_map, dict) or not identity_map:
        return NO_IDENTITIES
    per_namespace: dict[str, int] = {}
    total = 0
    for namespace, entries in identity_map.items():
        count = max(len(entries), 1) if isinstance(entries, list) else 1
        folded = namespace.casefold() if isinstance(namespace, str) else str(namespace)
        per_namespace[folded] = per_namespace.get(folded, 0) + count
        total += count
    return IdentityCount(per_namespace, total, frozenset(identity_map))


def check_identities(
    identity_map: Any, limits: PayloadLimits, request_level: IdentityCount | None = None
) -> None:
    """``too_many_identities`` when an identity map, with the ``request_level`` identities
    an event of a batch also gets, breaks the caps (see ``count_identities``)."""
    if not isinstance(identity_map, dict) or not identity_map:
        return  # nothing of its own (a request-level map is checked by itself, once)
    if request_level is None and _clearly_within(identity_map, limits):
        return  # what an ordinary event holds, told at C speed
    own, shared = count_identities(identity_map), request_level or NO_IDENTITIES
    for folded, count in own.per_namespace.items():
        count += shared.per_namespace.get(folded, 0)
        if count > limits.max_identities_per_namespace:
            raise Problem(
                "too_many_identities",
                f"An identity map has {count} identities in namespace {folded[:64]!r}; "
                f"RELAY_MAX_IDENTITIES_PER_NAMESPACE is {limits.max_identities_per_namespace}",
            )
    namespaces = len(shared.namespaces) + len(own.namespaces - shared.namespaces)
    if namespaces > limits.max_identity_namespaces:
        raise Problem(
            "too_many_identities",
            f"An identity map has {namespaces} namespaces; "
            f"RELAY_MAX_IDENTITY_NAMESPACES is {limits.max_identity_namespaces}",
        )
    if own.total + shared.total > limits.max_identities:
        raise Problem(
            "too_many_identities",
            f"An identity map has {own.total + shared.total} identities; "
            f"RELAY_MAX_IDENTITIES is {limits.max_identities}",
        )


def _clearly_within(identity_map: dict[str, Any], limits: PayloadLimits) -> bool:
    """Whether a map is within every cap by a bound: each namespace counts at most its
    length plus one (``len`` of what is not a list overcounts; of a number, it cannot tell)."""
    if len(identity_map) > limits.max_identity_namespaces:
        return False
    try:
        bound = sum(map(len, identity_map.values())) + len(identity_map)
    except TypeError:
        return False
    return bound <= limits.max_identities_per_namespace and bound <= limits.max_identities


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


def merge_identity_maps(own: Any, request_level: Mapping[str, Any]) -> dict[str, Any]:
    """Add the request-level identities to an event's map, never replacing its own entries."""
    return _merge_identities(own, _shared_identities(request_level))


def _merge_identities(own: Any, shared: dict[str, list[Any]]) -> dict[str, Any]:
    """``merge_identity_maps`` with the request-level namespaces that hold lists, ``shared``.

    Only the namespaces both maps have get a new list (the event's own entries, then the
    request's entries with other ids): the work is the event's own map, not the request's.
    Every other list is shared with its map, not copied.
    """
    if not isinstance(own, dict):
        return dict(shared)
    merged: dict[str, Any] = {**own, **shared}  # own keys first, the request's new ones after
    for namespace in own.keys() & shared.keys():
        existing = own[namespace]
        if not isinstance(existing, list):
            continue  # the request's list replaces what is not a list
        seen = {_id_key(entry.get("id")) for entry in existing if isinstance(entry, dict)}
        merged[namespace] = existing + [
            entry
            for entry in shared[namespace]
            if isinstance(entry, dict) and _id_key(entry.get("id")) not in seen
        ]
    return merged


def _id_key(value: Any) -> Any:
    """An identity's id as a set member (ids are strings, but JSON allows any value)."""
    return value if isinstance(value, str | int | float | bool | None) else orjson.dumps(value)


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
