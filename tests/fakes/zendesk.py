"""A fake Zendesk Events API for contract and end-to-end tests.

It is a real HTTP/1.1 server on a free loopback port, served from a daemon thread (the plumbing
is :class:`tests.fakes.http_fake.HttpFake`). It follows the facts in
``shared/reference/zendesk.md`` and no more: the three ``POST`` event endpoints, the three
``GET .../events`` read endpoints, ``GET``/``DELETE`` of profiles, the three auth forms, the
documented body rules (none stricter than Zendesk's), rate-limit headers on every answer and
``429`` + ``Retry-After``, and only documented error bodies and codes. Tests can also script
the answers to POSTs with :meth:`FakeZendesk.enqueue` (the next N) and
:meth:`FakeZendesk.set_default` (every one until cleared), e.g. with the error bodies in
:data:`ERROR_BODIES` (reads and deletes keep their own answers, so a relay that reads back
between two sends does not take a send's scripted answer), and turn on fault modes (:meth:`FakeZendesk.slow_accept`,
:meth:`FakeZendesk.lose_requests`, :meth:`FakeZendesk.fail_reads`).

Profiles (reference 1.2): an event's profile is the stored one with the same ``source`` and
``type`` that shares any one identifier with it (``google`` is matched as ``email``; ``email``
and ``twitter`` values are lower-cased), and the request's other identifiers are added to it;
without one, a profile is created (and an anonymous user for it). ``?identifier=`` queries find
a profile the same way. ``POST /api/v2/user_profiles/{profile_id}/events`` answers 404 for a
profile that does not exist.

Events (reference 1.1, 1.2): every event answered 202 is stored on its profile and user (the
user in the path of ``POST /users/{user_id}/events``, else the profile's) as posted, with the
read-only ``id`` and ``received_at`` set and ``created_at`` set to the receive time when absent.

Where the reference is silent, the fake chooses (each can be wrong about the real Zendesk):

* When identifiers match several profiles the oldest is taken.
* Ids: profile ids are derived from the first post's source, type and identifiers (so a
  deleted profile posted again gets its old id back); event ids are 26 random Crockford base32
  characters. ``received_at`` and a profile's ``created_at``/``updated_at`` are UTC to the
  millisecond (``2024-05-01T12:00:00.123Z``); a posted ``created_at`` is kept as written.
* A posted profile ``name`` replaces the stored one; posted ``attributes`` are merged into the
  stored ones (key by key); ``updated_at`` moves when identifiers, name or attributes change.
  Without a name, the name shown is the email, else "User " + external_id, else "User " + the
  first identifier's value.
* Read order is ``created_at`` (as an instant), then arrival. ``page[size]`` defaults to 100
  (``page_size``) and larger sizes are served as 100 (``max_page_size``). The cursor is opaque
  and points past the page's last event, so events stored or deleted meanwhile do not shift
  pages. ``links`` holds ``{"next": ...}`` whenever ``after_cursor`` is set, even on the last
  page (only ``has_more`` says whether more follow); an empty page has ``after_cursor`` null
  and no links. Blank query values count as absent; unknown parameters are ignored; the first
  value of a repeated parameter counts. ``filter[start_time]``/``filter[end_time]`` must be RFC
  3339 date-times and are inclusive. Query problems are 400 in the ``errors[]`` shape: a bad
  start time with ZD-events' example code ``StartTimestampNotValid``, the rest ``ClientError``.
* In an ``?identifier=`` query the value is everything after the third ``:`` (so it may hold
  ``:``); fewer than four non-empty parts is a 400 ``ClientError``.
* ``GET /users/{user_id}/events`` knows a user once a profile was created for it, an event was
  posted to its path, or :meth:`FakeZendesk.add_zendesk_event` added one; others get 404.
  Deleting a profile deletes its events, not its user.
* Unknown profiles and users get Zenpy's ``RecordNotFound`` 404 body (as unknown routes do).
* The rate-limit window counts the requests the fake carries out (2xx), reads and deletes
  included; refused ones and scripted answers are not counted.
* ``Content-Type: application/json`` is required on POST and on a DELETE with a body; never on
  GET or on a DELETE without a body.

Order of checks for a request that is not scripted: auth (401), route (404), rate limit (429),
``Content-Type`` (400 plain text), JSON, path parameters (400), body rules or query (400),
lookup (404), then 202/200/204.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from tests.fakes.http_fake import Answer, CannedResponse, HttpFake, Late, ReceivedRequest, is_json
from tests.fakes.rfc3339 import is_rfc3339_date_time, utc_now_text
from tests.fakes.zendesk_events import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    EventStore,
    StoredEvent,
    events_page,
    parse_event_query,
    parse_identifier,
)

__all__ = [
    "ERROR_BODIES",
    "CannedResponse",
    "FakeZendesk",
    "ReceivedRequest",
    "StoredEvent",
    "StoredProfile",
    "is_rfc3339_date_time",
    "payload_problems",
    "profile_id_for",
    "user_id_for",
]

MAX_NAME_LENGTH = 40
MAX_IDENTIFIERS = 20
DEFAULT_RATE_LIMIT_HEADER = 700
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# Every error body of reference sections 1.5 and 1.6 (and nothing else), each distinctive.
ERROR_BODIES: dict[str, CannedResponse] = {
    # ZD-events 400/404 examples (placeholder code reused for every endpoint).
    "errors_array_400": CannedResponse(
        400,
        {
            "errors": [
                {
                    "code": "StartTimestampNotValid",
                    "id": "3b0c4f5e-8a4a-4c5e-9a61-0d0a7f5b2c11",
                    "title": "Start Timestamp not valid",
                }
            ]
        },
    ),
    # ZD-profiles 400/403/404 examples.
    "client_error_403": CannedResponse(
        403,
        {"errors": [{"code": "ClientError", "id": "10001", "title": "Some client caused error"}]},
    ),
    # Legacy custom-objects record cap.
    "too_many_resources_429": CannedResponse(
        429,
        {
            "errors": [
                {
                    "code": "TooManyRequests",
                    "status": "429",
                    "title": "Too Many Requests",
                    "message": "You have exceeded the maximum number of resources for this account",
                }
            ]
        },
        headers={"Retry-After": "11"},
    ),
    # GET users/{id}/events with a non-numeric id.
    "error_object_400": CannedResponse(
        400,
        {
            "error": {
                "title": "Invalid attribute",
                "message": "You passed an invalid value for the id attribute. Invalid parameter: "
                "id must be an integer from api/v2/users/show",
            }
        },
    ),
    # Wrong subdomain.
    "no_help_desk_404": CannedResponse(
        404,
        {
            "error": {
                "title": "No help desk at foo.zendesk.com",
                "message": "There is no help desk configured at this address. This means that "
                "the address is available and that you can claim it at "
                "http://www.zendesk.com/signup",
            }
        },
    ),
    "record_not_found_404": CannedResponse(404, {"error": "RecordNotFound", "description": "Not found"}),
    "record_invalid_422": CannedResponse(
        422,
        {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {
                "email": [
                    {
                        "description": "Email: is already being used by another user",
                        "error": "DuplicateValue",
                    }
                ]
            },
        },
    ),
    "couldnt_authenticate_401": CannedResponse(401, {"error": "Couldn't authenticate you"}),
    # Generic RFC 6750 form for a bad OAuth token (UNCERTAIN for Zendesk).
    "invalid_token_401": CannedResponse(
        401,
        {"error": "invalid_token", "error_description": "The access token provided is expired"},
        headers={"WWW-Authenticate": 'Bearer realm="zendesk", error="invalid_token"'},
    ),
    # Adobe doc list: "error" holding an array (or a bare description/title object).
    "route_not_found_401": CannedResponse(
        401, {"description": "No route found for host x.zendesk.com", "title": "RouteNotFound"}
    ),
    "adobe_error_array_401": CannedResponse(
        401,
        {
            "error": [
                {
                    "code": "MissingOrInvalidAuthentication",
                    "title": "Invalid or Missing Authentication",
                }
            ]
        },
    ),
    "invalid_profile_type_length_400": CannedResponse(
        400,
        {"error": [{"code": "InvalidProfileTypeLength", "title": "Profile type length > 40 chars"}]},
    ),
    "permission_denied_403": CannedResponse(
        403,
        {
            "error": [
                {
                    "code": "PermissionDenied",
                    "title": "Insufficient permisssions to perform operation",
                }
            ]
        },
    ),
    "too_many_requests_429": CannedResponse(
        429,
        {"error": [{"code": "TooManyRequests", "title": "Too Many Requests"}]},
        headers={"Retry-After": "7"},
    ),
    "plain_text_429": CannedResponse(
        429,
        "Number of allowed API requests per minute exceeded",
        headers={"Retry-After": "5"},
        content_type="text/plain; charset=utf-8",
    ),
    "plain_text_400": CannedResponse(
        400,
        "Bad Request: the request could not be parsed",
        content_type="text/plain; charset=utf-8",
    ),
    # "You may get a text/plain response in case of an error" (request-format page); a 503's
    # Retry-After is what Zendesk's own Ruby client sleeps before its one retry.
    "plain_text_500": CannedResponse(500, "Internal Server Error", content_type="text/plain; charset=utf-8"),
    "plain_text_503": CannedResponse(
        503,
        "Service Unavailable",
        headers={"Retry-After": "3"},
        content_type="text/plain; charset=utf-8",
    ),
}


# ---------------------------------------------------------------------------------------------
# Deterministic ids and body rules (public so tests can compute expectations).


def _crockford26(data: bytes) -> str:
    """26 Crockford base32 characters from 128 bits (the ULID layout; first char is 0-7)."""
    number = int.from_bytes(data[:16], "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[number & 31])
        number >>= 5
    return "".join(reversed(chars))


def _identifier_key(profile: dict[str, Any]) -> bytes:
    identifiers = sorted(
        (str(i.get("type")), str(i.get("value")))
        for i in profile.get("identifiers") or []
        if isinstance(i, dict)
    )
    key = {
        "source": profile.get("source"),
        "type": profile.get("type"),
        "identifiers": identifiers,
    }
    return json.dumps(key, sort_keys=True, separators=(",", ":")).encode("utf-8")


def profile_id_for(profile: dict[str, Any]) -> str:
    """The profile_id the fake answers for a profile: from its source, type and identifiers
    (identifier order does not matter)."""
    return _crockford26(hashlib.sha256(b"profile:" + _identifier_key(profile)).digest())


def user_id_for(profile_id: str) -> str:
    """The user_id (a string of digits) the fake answers when the path does not name one."""
    digest = hashlib.sha256(b"user:" + profile_id.encode("utf-8")).digest()
    return str(10**11 + int.from_bytes(digest[:8], "big") % (9 * 10**11))


def _check_name(obj: dict[str, Any], key: str, path: str, problems: list[str]) -> None:
    value = obj.get(key)
    where = f"{path}.{key}"
    if key not in obj:
        problems.append(f"{where}: is required")
    elif not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: must be a non-empty string")
    elif len(value) > MAX_NAME_LENGTH:
        problems.append(f"{where}: must be at most {MAX_NAME_LENGTH} characters")
    elif key == "source" and value == "zendesk":
        problems.append(f"{where}: 'zendesk' is a protected source name")


def payload_problems(body: Any, *, profile: str) -> list[str]:
    """The broken body rules, one title per rule, each naming the field path.

    ``profile`` is "required" (user_profiles/events, users/{id}/events) or "forbidden"
    (user_profiles/{profile_id}/events).
    """
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    problems: list[str] = []
    event = body.get("event")
    if "event" not in body:
        problems.append("event: is required")
    elif not isinstance(event, dict):
        problems.append("event: must be an object")
    else:
        _check_name(event, "source", "event", problems)
        _check_name(event, "type", "event", problems)
        if "properties" not in event:
            problems.append("event.properties: is required")
        elif not isinstance(event["properties"], dict):
            problems.append("event.properties: must be an object")
        if "created_at" in event and not is_rfc3339_date_time(event["created_at"]):
            problems.append("event.created_at: must be an RFC 3339 date-time with an offset")

    if profile == "forbidden":
        if "profile" in body:
            problems.append("profile: not allowed on /api/v2/user_profiles/{profile_id}/events")
        return problems

    prof = body.get("profile")
    if "profile" not in body:
        problems.append("profile: is required")
    elif not isinstance(prof, dict):
        problems.append("profile: must be an object")
    else:
        _check_name(prof, "source", "profile", problems)
        _check_name(prof, "type", "profile", problems)
        identifiers = prof.get("identifiers")
        if "identifiers" not in prof:
            problems.append("profile.identifiers: is required")
        elif not isinstance(identifiers, list):
            problems.append("profile.identifiers: must be an array")
        elif not 1 <= len(identifiers) <= MAX_IDENTIFIERS:
            problems.append(f"profile.identifiers: must hold 1 to {MAX_IDENTIFIERS} identifiers")
        else:
            for n, ident in enumerate(identifiers):
                where = f"profile.identifiers[{n}]"
                if not isinstance(ident, dict):
                    problems.append(f"{where}: must be an object")
                    continue
                for key in ("type", "value"):
                    value = ident.get(key)
                    if not isinstance(value, str) or not value:
                        problems.append(f"{where}.{key}: must be a non-empty string")
    return problems


# ---------------------------------------------------------------------------------------------
# Profiles.


@dataclass
class StoredProfile:
    """One profile the fake holds: its id, source, type, Zendesk user and identifiers, and what
    the profile endpoints show besides (reference 1.3)."""

    id: str
    source: str
    type: str
    user_id: str
    identifiers: list[dict[str, str]] = field(default_factory=list)
    name: str | None = None  # as last posted; None: derived from the identifiers when shown
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""

    def as_json(self) -> dict[str, Any]:
        """The ``profile`` object of the profile endpoints."""
        return {
            "id": self.id,
            "name": self.name if self.name is not None else _derived_name(self.identifiers),
            "source": self.source,
            "type": self.type,
            "identifiers": [dict(i) for i in self.identifiers],
            "attributes": copy.deepcopy(self.attributes),
            "user_id": self.user_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _derived_name(identifiers: list[dict[str, str]]) -> str:
    """Reference 1.2: "email, then "User "+external_id, and so on"; the fake's "so on" is
    "User " + the first identifier's value."""
    for kind, form in (("email", "{}"), ("external_id", "User {}")):
        for identifier in identifiers:
            if identifier["type"] == kind:
                return form.format(identifier["value"])
    return f"User {identifiers[0]['value']}" if identifiers else ""


def _stored_identifier(identifier: dict[str, Any]) -> dict[str, str]:
    """An identifier as Zendesk keeps it: ``email`` and ``twitter`` values lower-cased."""
    kind, value = str(identifier["type"]), str(identifier["value"])
    return {"type": kind, "value": value.lower() if kind in ("email", "twitter") else value}


def _match_key(identifier: dict[str, str]) -> tuple[str, str]:
    """What an identifier is matched on: ``google`` as ``email``, e-mail addresses in any case."""
    kind, value = identifier["type"], identifier["value"]
    if kind == "google":
        return "email", value.lower()
    return kind, value


# ---------------------------------------------------------------------------------------------
# Routes.

# (method, path, route name); the first match wins, so the literal ``events`` path comes first.
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/api/v2/user_profiles/events"), "create"),
    ("POST", re.compile(r"/api/v2/user_profiles/([^/]+)/events"), "create_for_profile"),
    ("POST", re.compile(r"/api/v2/users/([^/]+)/events"), "create_for_user"),
    ("GET", re.compile(r"/api/v2/user_profiles/events"), "events_by_identifier"),
    ("GET", re.compile(r"/api/v2/user_profiles/([^/]+)/events"), "events_of_profile"),
    ("GET", re.compile(r"/api/v2/users/([^/]+)/events"), "events_of_user"),
    ("GET", re.compile(r"/api/v2/user_profiles"), "profile_by_identifier"),
    ("GET", re.compile(r"/api/v2/user_profiles/([^/]+)"), "profile"),
    ("DELETE", re.compile(r"/api/v2/user_profiles/([^/]+)"), "delete_profile"),
]


def _route(method: str, path: str) -> tuple[str, str] | None:
    """The route name and its path parameter ("" when it has none), or None."""
    for route_method, pattern, name in _ROUTES:
        if route_method == method and (found := pattern.fullmatch(path)):
            return name, found.group(1) if pattern.groups else ""
    return None


def _first_values(query: str) -> dict[str, str]:
    """Each query parameter's first value, URL-decoded."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(name, value)
    return params


# ---------------------------------------------------------------------------------------------
# The HTTP server.


class FakeZendesk(HttpFake):
    """A real HTTP server that behaves like the Zendesk Events API (see the module docstring).

    ``accepted`` and :meth:`wait_for` count the requests answered 202 (scripted 202s included).
    ``received`` and ``accepted`` return snapshots (copies); use :meth:`reset` to clear.
    After :meth:`stop`, ``base_url`` keeps pointing at the (now closed) port and :meth:`start`
    binds the same port again, so "Zendesk goes away and comes back" can be simulated.
    """

    thread_name = "fake-zendesk"
    bad_framing_answer: ClassVar[Answer] = (400, "Bad Request: malformed request body framing", {})

    def __init__(
        self,
        *,
        email: str = "agent@example.com",
        api_token: str | None = "test-api-token",
        oauth_token: str | None = "test-oauth-token",
        password: str | None = "test-password",
        rate_limit: int | None = None,
        rate_window: float = 60.0,
        retry_after: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        super().__init__(rate_limit=rate_limit, rate_window=rate_window)
        self.email = email
        self.api_token = api_token
        self.oauth_token = oauth_token
        self.password = password
        self.retry_after = retry_after
        self.page_size = page_size
        self.max_page_size = max_page_size
        self._profiles: dict[str, StoredProfile] = {}  # by id, oldest first
        # (source, type, matched identifier) -> the oldest profile holding it
        self._by_identifier: dict[tuple[str, str, tuple[str, str]], StoredProfile] = {}
        self._users: set[str] = set()  # the Zendesk users the fake knows
        self._events = EventStore()
        # fault modes (see "fault modes" below)
        self._slow_accepts, self._slow_delay = 0, 0.0
        self._lost_posts = 0
        self._failing_reads: CannedResponse | None = None
        self._failing_reads_left: int | None = None

    # -- profiles, users and events ----------------------------------------------------------

    @property
    def posts(self) -> list[ReceivedRequest]:
        """The received POSTs (the sends), without the reads and deletes."""
        return [r for r in self.received if r.method == "POST"]

    @property
    def reads(self) -> list[ReceivedRequest]:
        """The received GETs."""
        return [r for r in self.received if r.method == "GET"]

    @property
    def profiles(self) -> list[StoredProfile]:
        """The profiles the fake holds, oldest first (copies)."""
        with self._lock:
            return [copy.deepcopy(p) for p in self._profiles.values()]

    def add_profile(self, profile: dict[str, Any], user_id: str | None = None) -> str:
        """Store a profile as an event for it would (matched or created); its id."""
        with self._lock:
            return self._profile_for(profile, user_id, utc_now_text()).id

    @property
    def stored_events(self) -> list[StoredEvent]:
        """Every event the fake holds, standard ones included, in arrival order (copies)."""
        with self._lock:
            return [e.copy() for e in self._events.all()]

    def events_of(self, profile_id: str) -> list[dict[str, Any]]:
        """The profile's events as ``GET .../{profile_id}/events`` serves them, in its order
        (``created_at`` as an instant, then arrival), unpaged (copies)."""
        with self._lock:
            return [e.copy().event for e in self._events.of_profile(profile_id)]

    def events_of_user(self, user_id: str) -> list[dict[str, Any]]:
        """The user's events as ``GET /api/v2/users/{user_id}/events`` serves them, unpaged."""
        with self._lock:
            return [e.copy().event for e in self._events.of_user(user_id)]

    def duplicate_count(self, profile_id: str | None = None) -> int:
        """How many stored events repeat an earlier one of the same profile: equal ``source``,
        ``type``, ``created_at`` (the same instant) and ``properties``. One profile, or all."""
        with self._lock:
            return self._events.duplicates(profile_id)

    def forget_events(self, profile_id: str | None = None) -> int:
        """Zendesk loses stored events: one profile's, or every event (standard ones too).
        Profiles and users stay. Returns how many were forgotten."""
        with self._lock:
            return self._events.remove(profile_id)

    def add_zendesk_event(
        self,
        user_id: str,
        event_type: str = "ticket_requested",
        properties: dict[str, Any] | None = None,
        *,
        created_at: str | None = None,
    ) -> dict[str, Any]:
        """Store one of Zendesk's own standard events (source ``zendesk``, no profile) for
        ``user_id`` (a string of digits), who becomes known; the event as served."""
        if not user_id.isdigit():
            raise ValueError(f"a Zendesk user id is a string of digits, not {user_id!r}")
        event: dict[str, Any] = {"source": "zendesk", "type": event_type, "properties": properties or {}}
        if created_at is not None:
            if not is_rfc3339_date_time(created_at):
                raise ValueError(f"created_at must be an RFC 3339 date-time, not {created_at!r}")
            event["created_at"] = created_at
        with self._lock:
            self._users.add(user_id)
            stored = self._events.add(
                event, event_id=_new_id(), received_at=utc_now_text(), profile_id=None, user_id=user_id
            )
            return stored.copy().event

    def reset(self) -> None:
        """Also forget every profile, user and event, and clear the fault modes."""
        with self._lock:
            super().reset()
            self._profiles.clear()
            self._by_identifier.clear()
            self._users.clear()
            self._events.remove()
            self._clear_faults()

    # -- fault modes -------------------------------------------------------------------------

    def slow_accept(self, count: int = 1, delay: float = 5.0) -> None:
        """The next ``count`` POSTs the fake accepts are stored at once (event, profile) but
        answered 202 only ``delay`` seconds later: a client whose read timeout is shorter times
        out although the event is stored. A client gone by then gets no answer (``status``
        stays None, so the request is not in ``accepted``). Replaces an earlier setting."""
        with self._lock:
            self._slow_accepts, self._slow_delay = count, delay

    def lose_requests(self, count: int = 1) -> None:
        """The next ``count`` POSTs (any path) are lost: not checked, not stored, and the
        connection is closed without an answer (the request is in ``received`` with ``status``
        None). Answers queued with :meth:`enqueue` go first. Replaces an earlier setting."""
        with self._lock:
            self._lost_posts = count

    def fail_reads(self, answer: int | CannedResponse = 500, count: int | None = None) -> None:
        """Every GET route (events and profiles) answers ``answer`` for the next ``count`` GETs
        to them, or until :meth:`clear_faults` when ``count`` is None. An int is sent with its
        reason phrase as a plain-text body (reference 1.6); pass a :class:`CannedResponse`
        (e.g. from :data:`ERROR_BODIES`) for anything else. Auth and the rate limit are not
        checked. Replaces an earlier setting."""
        if isinstance(answer, int):
            answer = CannedResponse(
                answer, HTTPStatus(answer).phrase, content_type="text/plain; charset=utf-8"
            )
        with self._lock:
            if count is not None and count <= 0:
                self._failing_reads, self._failing_reads_left = None, None
            else:
                self._failing_reads, self._failing_reads_left = answer, count

    def clear_faults(self) -> None:
        """End every fault mode (slow accepts, lost requests, failing reads)."""
        with self._lock:
            self._clear_faults()

    def _clear_faults(self) -> None:
        self._slow_accepts, self._slow_delay = 0, 0.0
        self._lost_posts = 0
        self._failing_reads = None
        self._failing_reads_left = None

    def _fault(self, record: ReceivedRequest) -> CannedResponse | None:
        """The fault a request meets on arrival (lock held), if any."""
        if record.method == "POST" and self._lost_posts > 0:
            self._lost_posts -= 1
            return _LOST
        failing = self._failing_reads
        if failing is None or record.method != "GET" or _route("GET", record.path) is None:
            return None
        if self._failing_reads_left is not None:
            self._failing_reads_left -= 1
            if self._failing_reads_left <= 0:
                self._failing_reads, self._failing_reads_left = None, None
        return failing

    # -- internals (lock held) ---------------------------------------------------------------

    def _profile_for(self, profile: dict[str, Any], user_id: str | None, now: str) -> StoredProfile:
        """The stored profile an event's profile matches, with its identifiers added and its
        name and attributes updated; else a new one."""
        source, kind = str(profile["source"]), str(profile["type"])
        identifiers = [_stored_identifier(i) for i in profile["identifiers"]]
        matches = [self._by_identifier.get((source, kind, _match_key(i))) for i in identifiers]
        held = [p for p in matches if p is not None]
        if held:
            stored = held[0] if len(held) == 1 else min(held, key=lambda p: list(self._profiles).index(p.id))
        else:
            profile_id = profile_id_for(profile)
            user = user_id or user_id_for(profile_id)
            stored = StoredProfile(profile_id, source, kind, user, created_at=now, updated_at=now)
            self._profiles[profile_id] = stored
            self._users.add(user)
        before = copy.deepcopy((stored.identifiers, stored.name, stored.attributes))
        for identifier in identifiers:
            key = (source, kind, _match_key(identifier))
            if key not in self._by_identifier:
                self._by_identifier[key] = stored
                stored.identifiers.append(identifier)
        if isinstance(profile.get("name"), str):
            stored.name = profile["name"]
        if isinstance(profile.get("attributes"), dict):
            stored.attributes.update(copy.deepcopy(profile["attributes"]))
        if (stored.identifiers, stored.name, stored.attributes) != before:
            stored.updated_at = now
        return stored

    def _find_profile(self, source: str, kind: str, id_type: str, value: str) -> StoredProfile | None:
        """The profile an identifier query names, matched as events' profiles are."""
        identifier = _stored_identifier({"type": id_type, "value": value})
        return self._by_identifier.get((source, kind, _match_key(identifier)))

    def _delete_profile(self, profile: StoredProfile) -> None:
        del self._profiles[profile.id]
        for key in [k for k, p in self._by_identifier.items() if p is profile]:
            del self._by_identifier[key]
        self._events.remove(profile.id)

    def _auth_form(self, header: str | None) -> str | None:
        if not header:
            return None
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        scheme = scheme.lower()
        if scheme == "bearer":
            if self.oauth_token is not None and hmac.compare_digest(
                credentials.encode(), self.oauth_token.encode()
            ):
                return "oauth"
            return None
        if scheme != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        if self.api_token is not None and decoded == f"{self.email}/token:{self.api_token}":
            return "api_token"
        if self.password is not None and decoded == f"{self.email}:{self.password}":
            return "password"
        return None

    # -- hooks -------------------------------------------------------------------------------

    def _arrived(self, record: ReceivedRequest) -> CannedResponse | None:
        # ``enqueue`` and ``set_default`` script the create requests (POST) only: a test that
        # scripts a send's answers keeps them when the relay reads back in between; reads and
        # deletes are scripted with ``fail_reads``
        record.auth = self._auth_form(record.headers.get("authorization"))
        if record.method != "POST":
            return self._fault(record)
        if self._queue:
            return self._queue.popleft()
        return self._fault(record) or self._default

    def _is_accepted(self, record: ReceivedRequest) -> bool:
        return record.status == 202

    def _answer(self, record: ReceivedRequest, parsed: bool) -> Answer | Late:
        if record.auth is None:
            return (
                401,
                {"error": "Couldn't authenticate you"},
                {"WWW-Authenticate": 'Basic realm="Web Password"'},
            )
        route = _route(record.method, record.path)
        if route is None:
            return 404, _NOT_FOUND, {}
        name, param = route

        with self._lock:
            wait = self._throttle(time.monotonic())
            if wait is not None:
                return (
                    429,
                    {"error": [{"code": "TooManyRequests", "title": "Too Many Requests"}]},
                    {"Retry-After": str(self.retry_after if self.retry_after is not None else wait)},
                )
            # Required on POST/PUT/DELETE (reference 1.6); a DELETE without a body has none to type.
            if (record.method == "POST" or (record.method == "DELETE" and record.raw)) and not is_json(
                record
            ):
                return 400, "Bad Request: Content-Type must be application/json", {}
            answer = (
                self._create(record, name, param)
                if record.method == "POST"
                else self._read(record, name, param)
            )
            if 200 <= answer[0] < 300:  # the window counts what the fake carried out
                self._window_count += 1
            if answer[0] == 202 and self._slow_accepts > 0:
                self._slow_accepts -= 1
                return Late(answer, self._slow_delay)
        return answer

    def _create(self, record: ReceivedRequest, name: str, param: str) -> Answer:
        """The three POST routes (lock held)."""
        profile_id = param if name == "create_for_profile" else None
        user_id = param if name == "create_for_user" else None
        if record.body is None:
            return _invalid(["body: must be valid JSON"])
        if user_id is not None and not user_id.isdigit():
            return _INVALID_USER_ID
        stored: StoredProfile | None = None
        if profile_id is not None:
            stored = self._profiles.get(profile_id)
            if stored is None:  # "Returns an error if the profile does not exist"
                return 404, _NOT_FOUND, {}
        problems = payload_problems(record.body, profile="forbidden" if profile_id else "required")
        if problems:
            return _invalid(problems)

        now = utc_now_text()
        if stored is None:
            stored = self._profile_for(record.body["profile"], user_id, now)
        if user_id is not None:
            self._users.add(user_id)
        user = user_id if user_id is not None else stored.user_id
        self._events.add(
            record.body["event"], event_id=_new_id(), received_at=now, profile_id=stored.id, user_id=user
        )
        return 202, {"status": "received", "profile_id": stored.id, "user_id": user}, {}

    def _read(self, record: ReceivedRequest, name: str, param: str) -> Answer:
        """The GET and DELETE routes (lock held)."""
        params = _first_values(record.query)
        if name == "events_of_user" and not param.isdigit():
            return _INVALID_USER_ID
        profile: StoredProfile | None = None
        if name.endswith("_by_identifier"):
            parts = parse_identifier(params.get("identifier", ""))
            if parts is None:
                return _invalid(["identifier: is required, as source:type:identifier_type:value"])
            profile = self._find_profile(*parts)
        elif name != "events_of_user":
            profile = self._profiles.get(param)

        if not name.startswith("events"):
            if profile is None:
                return 404, _NOT_FOUND, {}
            if name == "delete_profile":
                self._delete_profile(profile)
                return 204, None, {}
            return 200, {"profile": profile.as_json()}, {}

        query = parse_event_query(params, default_size=self.page_size, max_size=self.max_page_size)
        if isinstance(query, list):
            errors = [{"code": p.code, "id": str(uuid.uuid4()), "title": p.title} for p in query]
            return 400, {"errors": errors}, {}
        if name == "events_of_user":
            if param not in self._users:
                return 404, _NOT_FOUND, {}
            events = self._events.of_user(param)
        elif profile is None:
            return 404, _NOT_FOUND, {}
        else:
            events = self._events.of_profile(profile.id)
        return 200, events_page(events, query, lambda cursor: self._next_url(record, cursor)), {}

    def _next_url(self, record: ReceivedRequest, cursor: str) -> str:
        """The request's own URL with ``page[after]`` set to ``cursor``."""
        pairs = [(k, v) for k, v in parse_qsl(record.query, keep_blank_values=True) if k != "page[after]"]
        pairs.append(("page[after]", cursor))
        return f"{self.base_url}{record.path}?{urlencode(pairs, safe='[]:')}"

    def _upstream_headers(self, record: ReceivedRequest, scripted: bool) -> dict[str, str]:
        self._window(time.monotonic())
        limit = self.rate_limit if self.rate_limit is not None else DEFAULT_RATE_LIMIT_HEADER
        remaining = max(0, limit - self._window_count)
        if self.rate_limit is not None:  # Zendesk's headers count per minute
            limit = round(limit * 60 / self.rate_window)
            remaining = round(remaining * 60 / self.rate_window)
        return {
            "X-Zendesk-Request-Id": str(uuid.uuid4()),
            "X-Rate-Limit": str(limit),
            "X-Rate-Limit-Remaining": str(remaining),
        }


def _new_id() -> str:
    """A new event id: 26 Crockford base32 characters, like Zendesk's profile ids."""
    return _crockford26(uuid.uuid4().bytes)


# Zenpy's RecordNotFound body (reference 1.6), for an unknown route, profile or user.
_NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}

# ZD-events' documented 400 for ``users/{id}/events`` with a non-numeric id (reference 1.6).
_INVALID_USER_ID: Answer = (
    400,
    {
        "error": {
            "title": "Invalid attribute",
            "message": "You passed an invalid value for the id attribute. "
            "Invalid parameter: id must be an integer from api/v2/users/show",
        }
    },
    {},
)

_LOST = CannedResponse(0, drop=True)


def _invalid(problems: list[str]) -> Answer:
    """A 400 in the documented ``errors[]`` shape with ZD-profiles' generic ``ClientError``
    code (Zendesk's own codes for each rule are not published); the title names the rule."""
    errors = [{"code": "ClientError", "id": str(uuid.uuid4()), "title": title} for title in problems]
    return 400, {"errors": errors}, {}
