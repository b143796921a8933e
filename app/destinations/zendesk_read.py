"""Reading sent events back from Zendesk, and finding and deleting profiles.

Zendesk's Events API takes no idempotency key (an event's ``id`` is read-only), so a send whose
answer never came is ambiguous. Its read endpoints settle it (reference 1.1): the events of the
profile the request named, narrowed by source, type and a window around the event's
``created_at``, are searched for an identical one. What counts as identical is in
``same_event``; docs/delivery.md says why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson

from app.destinations.base import OutboundRequest
from app.destinations.timestamps import is_rfc3339

EVENTS_PATH = "/api/v2/user_profiles/events"
PROFILES_PATH = "/api/v2/user_profiles"
PAGE_SIZE = 100
MAX_PAGES = 20
"""A read-back follows at most this many pages (2,000 events of one source and type within two
seconds of one instant); past that it cannot tell, and the event is sent again."""
WINDOW = timedelta(seconds=1)

Get = Callable[[str], Awaitable[Any]]
"""Fetch one path (query included) and return its decoded JSON body; raises ``Problem``."""


@dataclass(frozen=True)
class ReadScope:
    """Where and what to look for: the GET path of the event's profile (or user) and the
    event as it was sent."""

    path: str
    query: dict[str, str]
    event: dict[str, Any]


def read_scope(request: OutboundRequest) -> ReadScope | None:
    """The read-back of a create request, None when it cannot be read back (no event with
    source, type and created_at, or no identifier to find its profile by)."""
    body = request.body
    if not isinstance(body, dict):
        return None
    event = body.get("event")
    if not isinstance(event, dict) or not all(
        isinstance(event.get(key), str) for key in ("source", "type", "created_at")
    ):
        return None
    query: dict[str, str] = {}
    path = request.path
    if path == EVENTS_PATH:
        identifier = identifier_query(body.get("profile"))
        if identifier is None:
            return None
        query["identifier"] = identifier
    return ReadScope(path, query, event)


def identifier_query(profile: Any) -> str | None:
    """``source:type:identifier_type:value`` for a profile's first identifier (reference 1.2)."""
    if not isinstance(profile, dict):
        return None
    identifiers = profile.get("identifiers")
    first = identifiers[0] if isinstance(identifiers, list) and identifiers else None
    parts = [profile.get("source"), profile.get("type")]
    if isinstance(first, dict):
        parts += [first.get("type"), first.get("value")]
    texts = [part for part in parts if isinstance(part, str) and part]
    return ":".join(texts) if len(texts) == 4 else None


def with_query(path: str, query: dict[str, str]) -> str:
    """A path with its query, every part percent-encoded (identifiers may hold ``:`` or ``+``)."""
    return f"{path}?{urlencode(query, quote_via=quote)}" if query else path


def masked_identifier(path: str) -> str:
    """``path`` for a log line: an ``identifier`` query's value masked, since the redactor
    knows e-mail addresses and phone numbers but not an external_id or a handle."""
    base, mark, query = path.partition("?")
    if not mark:
        return path
    pairs = [(key, "***" if key == "identifier" else value) for key, value in parse_qsl(query)]
    return f"{base}?{urlencode(pairs, safe='[]*', quote_via=quote)}"


async def find_event(scope: ReadScope, get: Get) -> dict[str, Any] | None:
    """The stored event identical to the sent one, or None when Zendesk holds none.

    Raises ``Problem`` when a read fails, and ``LookupError`` when there are more pages than
    ``MAX_PAGES`` (the caller cannot tell, as for a failed read).
    """
    sent = scope.event
    created = parse_instant(sent["created_at"])
    if created is None:
        raise LookupError("created_at is not a date-time")
    try:
        start, end = rfc3339(created - WINDOW), rfc3339(created + WINDOW)
    except OverflowError:  # a valid date-time within a second of year 1 or 9999
        raise LookupError("created_at is too near the ends of the calendar to look around") from None
    query = {
        **scope.query,
        "filter[source]": sent["source"],
        "filter[type]": sent["type"],
        "filter[start_time]": start,
        "filter[end_time]": end,
        "page[size]": str(PAGE_SIZE),
    }
    for _ in range(MAX_PAGES):
        page = await get(with_query(scope.path, query))
        events = page.get("events") if isinstance(page, dict) else None
        for found in events if isinstance(events, list) else ():
            if isinstance(found, dict) and same_event(sent, found):
                return found
        cursor = next_cursor(page)
        if cursor is None:
            return None
        query["page[after]"] = cursor
    raise LookupError(f"more than {MAX_PAGES} pages of candidate events")


def next_cursor(page: Any) -> str | None:
    """The cursor of the next page, None on the last (``meta.has_more`` false or absent)."""
    meta = page.get("meta") if isinstance(page, dict) else None
    if not isinstance(meta, dict) or meta.get("has_more") is not True:
        return None
    cursor = meta.get("after_cursor")
    return cursor if isinstance(cursor, str) and cursor else None


def same_event(sent: dict[str, Any], found: dict[str, Any]) -> bool:
    """Whether a stored event is the one sent: same source, type and instant of ``created_at``,
    same description when one was sent, and the same properties, scalars compared by their
    text ("All event properties are strings, including number values", says Zendesk)."""
    if found.get("source") != sent.get("source") or found.get("type") != sent.get("type"):
        return False
    if not same_instant(sent.get("created_at"), found.get("created_at")):
        return False
    if sent.get("description") is not None and found.get("description") != sent.get("description"):
        return False
    return bool(as_text(found.get("properties")) == as_text(sent.get("properties")))


def as_text(value: Any) -> Any:
    """A JSON value with every scalar as its JSON text (strings as themselves)."""
    if isinstance(value, dict):
        return {str(key): as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_text(item) for item in value]
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def same_instant(sent: Any, found: Any) -> bool:
    """Equal instants; to the second when either side gives whole seconds only (a store that
    keeps seconds still finds the event it was sent with milliseconds)."""
    a, b = parse_instant(sent), parse_instant(found)
    if a is None or b is None:
        return False
    if a == b:
        return True
    if a.microsecond == 0 or b.microsecond == 0:
        return a.replace(microsecond=0) == b.replace(microsecond=0)
    return False


def parse_instant(value: Any) -> datetime | None:
    """An RFC 3339 date-time as an aware datetime (None for anything else)."""
    if not is_rfc3339(value):
        return None
    text = str(value).upper().replace("Z", "+00:00")
    if text[17:19] == "60":
        text = text[:17] + "59" + text[19:]
    return datetime.fromisoformat(text)


def rfc3339(moment: datetime) -> str:
    """An instant as Zendesk's examples write it, in UTC with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_rfc3339(epoch: float) -> str:
    """``created_at`` for an event stamped at ingest."""
    return rfc3339(datetime.fromtimestamp(epoch, UTC))
