"""An event's id, the idempotency key of its deliveries: what the mapping's ``event_id`` gives,
or, when it has none or that is null or empty (Adobe's Web SDK sends no ``xdm._id``), one
derived from the event's content.

The derived id hashes the event's ``xdm`` and ``data``, not its ``meta``: ``meta`` describes
the request, not the event, and changes from one send to the next (the Web SDK's
``meta.state`` cookies appear after a visitor's first request, ``meta.queueTimeMillis`` differs
on every request), while ``xdm.timestamp`` (to the millisecond) tells two events apart.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

if TYPE_CHECKING:
    from app.mapping.loader import Mapping

# Keys sorted; a mapping example read from YAML may have keys that are not text
_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
# Where an id came from (`event_id_source` in a result)
MAPPING, DERIVED = "mapping", "derived"


class EventId(NamedTuple):
    value: str
    source: str  # MAPPING or DERIVED


def identify(mapping: Mapping, event: dict[str, Any]) -> EventId:
    """The event's id for ``mapping``: its ``event_id`` expression's value as text, or else
    ``derived_event_id``. Raises ``ExpressionError`` when the expression fails."""
    if mapping.event_id is not None:
        value = mapping.event_id.search(event)
        if value is not None and value != "":
            return EventId(value if isinstance(value, str) else str(value), MAPPING)
    return EventId(derived_event_id(event), DERIVED)


def derived_event_id(event: dict[str, Any]) -> str:
    """A UUID made from the SHA-256 of the event's ``xdm`` and ``data`` as canonical JSON
    (keys sorted, no whitespace): its first 128 bits, with RFC 9562's version 8 and variant
    bits set (the name-based SHA-256 UUID of RFC 9562, appendix B.2)."""
    content = {"data": event.get("data"), "xdm": event.get("xdm")}
    try:
        canonical = orjson.dumps(content, option=_CANONICAL)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (RELAY_MAX_JSON_DEPTH > 254)
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        canonical = text.encode("utf-8", "surrogatepass")
    digest = bytearray(hashlib.sha256(canonical).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # variant 10
    return str(uuid.UUID(bytes=bytes(digest)))
