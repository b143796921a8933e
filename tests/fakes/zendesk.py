"""A fake Zendesk Events API for contract and end-to-end tests.

It is a real HTTP/1.1 server on a free loopback port, served from a daemon thread (the plumbing
is :class:`tests.fakes.http_fake.HttpFake`). It follows the facts in
``shared/reference/zendesk.md`` and no more: the three ``POST`` event endpoints, the three auth
forms, the documented body rules (none stricter than Zendesk's), ``202`` success bodies,
rate-limit headers on every answer and ``429`` + ``Retry-After``, and only documented error
bodies and codes. Tests can also script answers with :meth:`FakeZendesk.enqueue` (next N
requests) and :meth:`FakeZendesk.set_default` (every request until cleared), e.g. with the error
bodies in :data:`ERROR_BODIES`.

Profiles (reference 1.2): an event's profile is the stored one with the same ``source`` and
``type`` that shares any one identifier with it (``google`` is matched as ``email``; ``email``
and ``twitter`` values are lower-cased), and the request's other identifiers are added to it;
without one, a profile is created (and an anonymous user for it). When identifiers match
several profiles the oldest is taken (Zendesk's pages do not say). ``POST
/api/v2/user_profiles/{profile_id}/events`` answers 404 for a profile that does not exist.

Order of checks for a request that is not scripted: auth (401), route (404), rate limit (429),
``Content-Type`` (400 plain text), JSON, path parameters (400/404), body rules (400), then 202.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests.fakes.http_fake import Answer, CannedResponse, HttpFake, ReceivedRequest, is_json

__all__ = [
    "ERROR_BODIES",
    "CannedResponse",
    "FakeZendesk",
    "ReceivedRequest",
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

EVENTS_PATH = "/api/v2/user_profiles/events"
_RE_PROFILE_ID = re.compile(r"^/api/v2/user_profiles/([^/]+)/events$")
_RE_USER_ID = re.compile(r"^/api/v2/users/([^/]+)/events$")

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


# RFC 3339 section 5.6, read here on its own (the relay's check must not be the one that tests it)
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))"
)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def is_rfc3339_date_time(value: Any) -> bool:
    """An RFC 3339 ``date-time``: full date, ``T``, full time with seconds, offset or ``Z``.

    Section 5.7's ranges: month 01-12, the month's days (leap years included), hour 00-23,
    minute 00-59, second 00-60 (a leap second), offset hour 00-23 and minute 00-59."""
    found = _DATE_TIME.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    offset_hour, offset_minute = (int(part or 0) for part in found.groups()[6:])
    return (
        1 <= month <= 12
        and 1 <= day <= _days_in_month(year, month)
        and hour <= 23
        and minute <= 59
        and second <= 60
        and offset_hour <= 23
        and offset_minute <= 59
    )


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
    """One profile the fake holds: its id, source, type, identifiers and Zendesk user."""

    id: str
    source: str
    type: str
    user_id: str
    identifiers: list[dict[str, str]] = field(default_factory=list)


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
    ) -> None:
        super().__init__(rate_limit=rate_limit, rate_window=rate_window)
        self.email = email
        self.api_token = api_token
        self.oauth_token = oauth_token
        self.password = password
        self.retry_after = retry_after
        self._profiles: dict[str, StoredProfile] = {}  # by id, oldest first
        # (source, type, matched identifier) -> the oldest profile holding it
        self._by_identifier: dict[tuple[str, str, tuple[str, str]], StoredProfile] = {}

    @property
    def profiles(self) -> list[StoredProfile]:
        """The profiles the fake holds, oldest first (copies)."""
        with self._lock:
            return [
                StoredProfile(p.id, p.source, p.type, p.user_id, [dict(i) for i in p.identifiers])
                for p in self._profiles.values()
            ]

    def add_profile(self, profile: dict[str, Any], user_id: str | None = None) -> str:
        """Store a profile as an event for it would (matched or created); its id."""
        with self._lock:
            return self._profile_for(profile, user_id).id

    def reset(self) -> None:
        """Also forget every profile."""
        with self._lock:
            super().reset()
            self._profiles.clear()
            self._by_identifier.clear()

    def _profile_for(self, profile: dict[str, Any], user_id: str | None) -> StoredProfile:
        """The stored profile an event's profile matches, with its identifiers added; else a
        new one (lock held)."""
        source, kind = str(profile["source"]), str(profile["type"])
        identifiers = [_stored_identifier(i) for i in profile["identifiers"]]
        matches = [self._by_identifier.get((source, kind, _match_key(i))) for i in identifiers]
        held = [p for p in matches if p is not None]
        if held:
            stored = held[0] if len(held) == 1 else min(held, key=lambda p: list(self._profiles).index(p.id))
        else:
            profile_id = profile_id_for(profile)
            stored = StoredProfile(profile_id, source, kind, user_id or user_id_for(profile_id))
            self._profiles[profile_id] = stored
        for identifier in identifiers:
            key = (source, kind, _match_key(identifier))
            if key not in self._by_identifier:
                self._by_identifier[key] = stored
                stored.identifiers.append(identifier)
        return stored

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

    def _arrived(self, record: ReceivedRequest) -> CannedResponse | None:
        record.auth = self._auth_form(record.headers.get("authorization"))
        return super()._arrived(record)

    def _is_accepted(self, record: ReceivedRequest) -> bool:
        return record.status == 202

    def _answer(self, record: ReceivedRequest, parsed: bool) -> Answer:
        if record.auth is None:
            return (
                401,
                {"error": "Couldn't authenticate you"},
                {"WWW-Authenticate": 'Basic realm="Web Password"'},
            )
        path = record.path
        profile_id: str | None = None
        user_id: str | None = None
        if record.method == "POST" and path == EVENTS_PATH:
            profile_rule = "required"
        elif record.method == "POST" and (m := _RE_PROFILE_ID.match(path)):
            profile_rule, profile_id = "forbidden", m.group(1)
        elif record.method == "POST" and (m := _RE_USER_ID.match(path)):
            profile_rule, user_id = "required", m.group(1)
        else:
            return 404, _NOT_FOUND, {}

        with self._lock:
            wait = self._throttle(time.monotonic())
            if wait is not None:
                return (
                    429,
                    {"error": [{"code": "TooManyRequests", "title": "Too Many Requests"}]},
                    {"Retry-After": str(self.retry_after if self.retry_after is not None else wait)},
                )

            if not is_json(record):
                return 400, "Bad Request: Content-Type must be application/json", {}
            if record.body is None:
                return _invalid(["body: must be valid JSON"])
            if user_id is not None and not user_id.isdigit():
                return (
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
            stored: StoredProfile | None = None
            if profile_id is not None:
                stored = self._profiles.get(profile_id)
                if stored is None:  # "Returns an error if the profile does not exist"
                    return 404, _NOT_FOUND, {}
            problems = payload_problems(record.body, profile=profile_rule)
            if problems:
                return _invalid(problems)

            self._window_count += 1
            if stored is None:
                stored = self._profile_for(record.body["profile"], user_id)
        return (
            202,
            {
                "status": "received",
                "profile_id": stored.id,
                "user_id": user_id if user_id is not None else stored.user_id,
            },
            {},
        )

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


# Zenpy's RecordNotFound body (reference 1.6), for an unknown route or profile.
_NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}


def _invalid(problems: list[str]) -> Answer:
    """A 400 in the documented ``errors[]`` shape with ZD-profiles' generic ``ClientError``
    code (Zendesk's own codes for each rule are not published); the title names the rule."""
    errors = [{"code": "ClientError", "id": str(uuid.uuid4()), "title": title} for title in problems]
    return 400, {"errors": errors}, {}
