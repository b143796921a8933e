"""The events a fake Zendesk holds, and how its read endpoints select and page them.

:class:`EventStore` keeps every accepted event with its profile and user; it has no lock of
its own (the fake's lock guards it). :func:`parse_event_query` reads the documented query
parameters of the ``GET .../events`` endpoints (reference 1.1) and :func:`events_page` builds
the documented answer. Where the reference is silent, :mod:`tests.fakes.zendesk` says what the
fake chooses.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.fakes.rfc3339 import instant, is_rfc3339_date_time

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "EventQuery",
    "EventStore",
    "QueryProblem",
    "StoredEvent",
    "events_page",
    "parse_event_query",
    "parse_identifier",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100


@dataclass
class StoredEvent:
    """One event Zendesk holds.

    ``event`` is the object the read endpoints serve: the posted event (every key as posted)
    with the read-only ``id`` and ``received_at`` set, and ``created_at`` set to the receive
    time when the post had none. ``profile_id`` is None for Zendesk's own standard events.
    ``seq`` is the arrival order."""

    event: dict[str, Any]
    profile_id: str | None
    user_id: str
    seq: int

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def sort_key(self) -> tuple[Decimal, int]:
        """Read order: ``created_at`` as an instant, then arrival."""
        return instant(self.event["created_at"]), self.seq

    def copy(self) -> StoredEvent:
        return StoredEvent(copy.deepcopy(self.event), self.profile_id, self.user_id, self.seq)


class EventStore:
    """Every event Zendesk holds, in arrival order. Not thread-safe: hold the fake's lock."""

    def __init__(self) -> None:
        self._events: list[StoredEvent] = []
        self._seq = 0

    def add(
        self,
        event: dict[str, Any],
        *,
        event_id: str,
        received_at: str,
        profile_id: str | None,
        user_id: str,
    ) -> StoredEvent:
        """Store a copy of ``event`` (``id`` and ``received_at`` overwritten: they are read-only)."""
        stored = copy.deepcopy(event)
        stored["id"] = event_id
        stored["received_at"] = received_at
        stored.setdefault("created_at", received_at)
        self._seq += 1
        record = StoredEvent(stored, profile_id, user_id, self._seq)
        self._events.append(record)
        return record

    def all(self) -> list[StoredEvent]:
        return list(self._events)

    def of_profile(self, profile_id: str) -> list[StoredEvent]:
        """The profile's events in read order."""
        return sorted((e for e in self._events if e.profile_id == profile_id), key=lambda e: e.sort_key)

    def of_user(self, user_id: str) -> list[StoredEvent]:
        """The user's events (standard ones included) in read order."""
        return sorted((e for e in self._events if e.user_id == user_id), key=lambda e: e.sort_key)

    def remove(self, profile_id: str | None = None) -> int:
        """Drop the events of one profile (every event when None); how many went."""
        kept = [e for e in self._events if profile_id is not None and e.profile_id != profile_id]
        gone = len(self._events) - len(kept)
        self._events = kept
        return gone

    def duplicates(self, profile_id: str | None = None) -> int:
        """Surplus copies: events of one profile equal in ``source``, ``type``, ``created_at``
        (as an instant) and ``properties``, counted beyond the first of each kind. Standard
        events (no profile) are not counted."""
        seen: set[tuple[str, str, str, Decimal, str]] = set()
        surplus = 0
        for e in self._events:
            if e.profile_id is None or (profile_id is not None and e.profile_id != profile_id):
                continue
            key = (
                e.profile_id,
                str(e.event.get("source")),
                str(e.event.get("type")),
                instant(e.event["created_at"]),
                json.dumps(e.event.get("properties"), sort_keys=True),
            )
            if key in seen:
                surplus += 1
            seen.add(key)
        return surplus


# ---------------------------------------------------------------------------------------------
# Reading.


@dataclass(frozen=True)
class QueryProblem:
    """A refused query parameter: an error ``code`` and a ``title`` naming the parameter."""

    code: str
    title: str


@dataclass(frozen=True)
class EventQuery:
    """The documented ``GET .../events`` parameters, checked."""

    source: str | None = None
    type: str | None = None
    start: Decimal | None = None
    end: Decimal | None = None
    size: int = DEFAULT_PAGE_SIZE
    after: tuple[Decimal, int] | None = None  # sort key of the last event already served

    def selects(self, event: StoredEvent) -> bool:
        created = instant(event.event["created_at"])
        return (
            (self.source is None or event.event.get("source") == self.source)
            and (self.type is None or event.event.get("type") == self.type)
            and (self.start is None or created >= self.start)
            and (self.end is None or created <= self.end)
            and (self.after is None or event.sort_key > self.after)
        )


def _cursor(key: tuple[Decimal, int]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}|{key[1]}".encode()).decode().rstrip("=")


def _read_cursor(text: str) -> tuple[Decimal, int] | None:
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        moment, seq = decoded.split("|")
        return Decimal(moment), int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidOperation):
        return None


def parse_event_query(
    params: dict[str, str], *, default_size: int = DEFAULT_PAGE_SIZE, max_size: int = MAX_PAGE_SIZE
) -> EventQuery | list[QueryProblem]:
    """The query, or every problem with it. ``params``: the first value of each parameter.

    Blank values count as absent; ``page[size]`` above ``max_size`` is served as ``max_size``.
    A bad ``filter[start_time]`` gets the ZD-events example code ``StartTimestampNotValid``;
    every other problem the ZD-profiles generic ``ClientError``."""
    problems: list[QueryProblem] = []
    given = {name: value for name, value in params.items() if value != ""}
    source, kind = given.get("filter[source]"), given.get("filter[type]")
    if kind is not None and source is None:
        problems.append(QueryProblem("ClientError", "filter[type]: needs filter[source]"))
    moments: dict[str, Decimal | None] = {}
    for name in ("filter[start_time]", "filter[end_time]"):
        value = given.get(name)
        moments[name] = instant(value) if value is not None and is_rfc3339_date_time(value) else None
        if value is not None and moments[name] is None:
            code = "StartTimestampNotValid" if name == "filter[start_time]" else "ClientError"
            problems.append(QueryProblem(code, f"{name}: must be an RFC 3339 date-time"))
    size = default_size
    if "page[size]" in given:
        raw = given["page[size]"]
        if raw.isascii() and raw.isdigit() and int(raw) >= 1:
            size = min(int(raw), max_size)
        else:
            problems.append(QueryProblem("ClientError", "page[size]: must be a whole number from 1"))
    after = None
    if "page[after]" in given:
        after = _read_cursor(given["page[after]"])
        if after is None:
            problems.append(QueryProblem("ClientError", "page[after]: not a cursor this API gave"))
    if problems:
        return problems
    return EventQuery(source, kind, moments["filter[start_time]"], moments["filter[end_time]"], size, after)


def events_page(
    events: Iterable[StoredEvent], query: EventQuery, next_url: Callable[[str], str]
) -> dict[str, Any]:
    """The documented answer for ``events`` (in read order) under ``query``.

    ``after_cursor`` points past the page's last event (None for an empty page) and the
    ``links`` array holds a ``next`` URL (``next_url(cursor)``) whenever there is a cursor,
    even on the last page: ``has_more`` alone says whether another page has events."""
    selected = [e for e in events if query.selects(e)]
    page = selected[: query.size]
    cursor = _cursor(page[-1].sort_key) if page else None
    return {
        "events": [copy.deepcopy(e.event) for e in page],
        "links": [{"next": next_url(cursor)}] if cursor is not None else [],
        "meta": {"after_cursor": cursor, "has_more": len(selected) > len(page)},
    }


def parse_identifier(text: str) -> tuple[str, str, str, str] | None:
    """``source:type:identifier_type:value`` (all four parts non-empty), or None. The value is
    everything after the third ``:``, so it may hold ``:`` itself (reference 1.2: UNCERTAIN)."""
    parts = text.split(":", 3)
    if len(parts) != 4 or not all(parts):
        return None
    return parts[0], parts[1], parts[2], parts[3]
