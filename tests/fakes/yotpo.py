"""A fake Yotpo Core API (access tokens + custom customer events) for contract and e2e tests.

It is a real HTTP/1.1 server on a free loopback port, served from a daemon thread, with the same
plumbing as :mod:`tests.fakes.zendesk` (:class:`tests.fakes.http_fake.HttpFake`). It follows
the facts in ``shared/reference/yotpo.md``:

* ``POST /core/v3/stores/{store_id}/access_tokens`` with ``{"secret": "..."}`` issues a new
  random ``access_token`` per call (every issued token stays valid until :meth:`expire_tokens`).
* ``POST /core/v3/stores/{store_id}/custom_events`` (the relay's default events path; the real
  method and path are UNCERTAIN) needs ``X-Yotpo-Token``; ``200 {"event": {"id", "type"}}`` on
  success; the same ``id`` again updates the stored event (``updates`` counts that).
* Rate limit: 5 requests per second per store (reference 2.4): at most ``per_second`` accepted
  event calls in any one second, counted when each arrives, above that ``429`` with
  ``RateLimit-Reset: 1``; ``per_second=None`` lifts it. When ``rate_limit`` is set, also at most
  that many per fixed window of ``rate_window`` seconds (aligned to :meth:`start`); above that
  ``429`` with ``RateLimit-Reset``.
* Error bodies: only the shapes the reference shows. The ``status`` object (401 AccessDenied,
  404 RecordNotFound) and ``{"error": "invalid_client"}`` are Yotpo's own; for 429 and 500 no
  body is documented, so none is sent; a refused request (400, and 422 for a body breaking a
  rule: Yotpo's status for that is not documented) answers in the ``{"errors": [...]}`` shape
  Yotpo's public code reads, with entries (``field``, ``message``) of the fake's own.
* Body rules: only what the reference states Yotpo refuses. Snake_case names are a
  recommendation ("should"), the e-mail address has no stated format (any string), the null
  and key-space rules are stated for customer properties only; ``timestamp`` must be an
  RFC 3339 date-time with its offset (checked here on its own, not with the relay's code).

Order of checks for an event call that is not scripted: route (404, no body), store id (404), token (401),
rate limit (429), ``Content-Type`` (400), JSON (400), body rules (422), then 200.

Scripting: :meth:`FakeYotpo.enqueue` / :meth:`FakeYotpo.set_default` answer *event* calls (every
request other than a token call) and bypass every check; token calls are scripted separately with
:meth:`FakeYotpo.enqueue_token`, so a relay that fetches a token first does not eat the script.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections import deque
from typing import Any, ClassVar
from urllib.parse import unquote

from tests.fakes.http_fake import Answer, CannedResponse, HttpFake, ReceivedRequest, is_json

__all__ = [
    "ERROR_BODIES",
    "CannedResponse",
    "FakeYotpo",
    "ReceivedRequest",
    "access_denied_body",
    "event_problems",
    "record_not_found_body",
]

MAX_NAME_LENGTH = 255
# Advertised in RateLimit-Limit when no rate limit is enforced ("effectively unlimited").
UNLIMITED_RATE_LIMIT_HEADER = 1000

_RE_TOKEN_PATH = re.compile(r"^/core/v3/stores/([^/]+)/access_tokens$")
_RE_EVENTS_PATH = re.compile(r"^/core/v3/stores/([^/]+)/custom_events$")
_RE_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# RFC 3339 section 5.6 date-time: full-date "T" full-time, time-offset "Z" or +hh:mm / -hh:mm
_RE_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?P<offset_hour>[0-9]{2}):(?P<offset_minute>[0-9]{2}))"
)


def access_denied_body() -> dict[str, Any]:
    return {
        "status": {
            "message": "You are not authorized to access this page.",
            "code": 401,
            "error_type": "Exceptions::AccessDenied",
        }
    }


def record_not_found_body(store_id: str) -> dict[str, Any]:
    return {
        "status": {
            "message": f"Couldn't find Account with app_key = {store_id}",
            "code": 404,
            "error_type": "Exceptions::RecordNotFound",
        }
    }


# Every error answer of reference section 2.5, each distinctive (see the module docstring).
ERROR_BODIES: dict[str, CannedResponse] = {
    "access_denied_401": CannedResponse(401, access_denied_body()),
    "record_not_found_404": CannedResponse(404, record_not_found_body("store-does-not-exist")),
    "invalid_client_401": CannedResponse(401, {"error": "invalid_client"}),
    "validation_422": CannedResponse(
        422,
        {"errors": [{"field": "customer.phone_number", "message": "must be an E.164 phone number"}]},
    ),
    # the status and the headers are documented, a body is not
    "too_many_requests_429": CannedResponse(
        429, None, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "2"}
    ),
    "server_error_500": CannedResponse(500, None),
    "errors_array_400": CannedResponse(400, {"errors": [{"message": "Bad request: custom event rejected"}]}),
}


# ---------------------------------------------------------------------------------------------
# Body rules (reference section 2.2).


def _check_name(body: dict[str, Any], key: str, required: bool, problems: list[dict[str, str]]) -> None:
    if key not in body:
        if required:
            problems.append({"field": key, "message": "is required"})
        return
    value = body[key]
    if not isinstance(value, str):
        problems.append({"field": key, "message": "must be a string"})
    elif not value:
        problems.append({"field": key, "message": "must not be empty"})
    elif len(value) > MAX_NAME_LENGTH:
        problems.append({"field": key, "message": f"must be at most {MAX_NAME_LENGTH} characters"})
    # snake_case is what the page recommends ("should"), not a rule Yotpo is said to enforce


def _check_properties(value: Any, where: str, problems: list[dict[str, str]], *, customer: bool) -> None:
    """Primitive values; the null and key-space rules are stated for customer properties only."""
    if not isinstance(value, dict):
        problems.append({"field": where, "message": "must be an object"})
        return
    for key, item in value.items():
        field = f"{where}.{key}"
        if customer and " " in key:
            problems.append({"field": field, "message": "key must not contain spaces (use _)"})
        if item is None:
            if customer:
                problems.append({"field": field, "message": "null is not supported"})
        elif not isinstance(item, str | bool | int | float):
            problems.append({"field": field, "message": "must be a string, boolean or number"})
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append({"field": field, "message": "must be a finite number"})


def is_date_time(value: Any) -> bool:
    """An RFC 3339 ``date-time`` (section 5.6) naming a real instant: month and day in range
    (29 February in leap years only), hours to 23, minutes to 59, seconds to 60 (a leap
    second), offsets to 23:59."""
    if not isinstance(value, str):
        return False
    found = _RE_DATE_TIME.fullmatch(value)
    if found is None:
        return False
    part = {name: int(text) for name, text in found.groupdict(default="0").items()}
    year, month = part["year"], part["month"]
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    return (
        1 <= part["day"] <= days
        and part["hour"] <= 23
        and part["minute"] <= 59
        and part["second"] <= 60
        and part["offset_hour"] <= 23
        and part["offset_minute"] <= 59
    )


def event_problems(body: Any) -> list[dict[str, str]]:
    """Every broken body rule, as ``{"field": <path>, "message": ...}`` (empty list: valid)."""
    if not isinstance(body, dict):
        return [{"field": "body", "message": "must be a JSON object"}]
    problems: list[dict[str, str]] = []
    _check_name(body, "type", True, problems)
    _check_name(body, "source", False, problems)

    if "timestamp" not in body:
        problems.append({"field": "timestamp", "message": "is required"})
    elif not is_date_time(body["timestamp"]):
        problems.append({"field": "timestamp", "message": "must be an RFC 3339 date-time with an offset"})

    if "id" not in body:
        problems.append({"field": "id", "message": "is required"})
    elif not isinstance(body["id"], str) or not body["id"].strip():
        problems.append({"field": "id", "message": "must be a non-empty string"})

    if "customer" not in body:
        problems.append({"field": "customer", "message": "is required"})
    elif not isinstance(body["customer"], dict):
        problems.append({"field": "customer", "message": "must be an object"})
    else:
        customer = body["customer"]
        if "external_id" in customer:
            ext = customer["external_id"]
            if not isinstance(ext, str) or not ext.strip():
                problems.append({"field": "customer.external_id", "message": "must be a non-empty string"})
        else:
            has_email, has_phone = "email" in customer, "phone_number" in customer
            if has_email and has_phone:
                problems.append(
                    {
                        "field": "customer",
                        "message": "without external_id send exactly one of email or phone_number, not both",
                    }
                )
            elif not (has_email or has_phone):
                problems.append(
                    {"field": "customer", "message": "requires external_id, email or phone_number"}
                )
        if "email" in customer and not isinstance(customer["email"], str):
            # a string: the reference states no format for the address
            problems.append({"field": "customer.email", "message": "must be a string"})
        if "phone_number" in customer:
            phone = customer["phone_number"]
            if not isinstance(phone, str) or not _RE_E164.fullmatch(phone):
                problems.append(
                    {"field": "customer.phone_number", "message": "must be an E.164 phone number"}
                )
        if "properties" in customer:
            _check_properties(customer["properties"], "customer.properties", problems, customer=True)

    if "properties" in body:
        _check_properties(body["properties"], "properties", problems, customer=False)
    return problems


# ---------------------------------------------------------------------------------------------
# The HTTP server.


class FakeYotpo(HttpFake):
    """A real HTTP server that behaves like the Yotpo Core API (see the module docstring).

    Public state (read it in tests): ``token_requests`` (every call to the token path),
    ``events`` (event id -> last accepted body), ``updates`` (accepted calls that reused an id),
    ``throttled`` (429s from the rate limiter). ``received`` (every request, token calls
    included) and ``accepted`` (the event calls answered 200, scripted 200s included; what
    :meth:`wait_for` counts) return snapshots. After :meth:`stop`, :meth:`start` binds the same
    port again; issued tokens survive that.
    """

    thread_name = "fake-yotpo"
    bad_framing_answer: ClassVar[Answer] = (
        400,
        {"errors": [{"message": "Bad request: malformed body framing"}]},
        {},
    )

    def __init__(
        self,
        store_id: str = "store-123",
        secret: str = "test-yotpo-secret",
        rate_limit: int | None = None,
        rate_window: float = 1.0,
        per_second: int | None = 5,
    ) -> None:
        super().__init__(rate_limit=rate_limit, rate_window=rate_window)
        self.per_second = per_second
        self._accepted_at: deque[float] = deque()  # arrivals of the last second's accepted calls
        self.store_id = store_id
        self.secret = secret
        self.token_requests = 0
        self.events: dict[str, Any] = {}
        self.updates = 0
        self._tokens: set[str] = set()
        self._token_queue: deque[CannedResponse] = deque()

    @property
    def token_path(self) -> str:
        return f"/core/v3/stores/{self.store_id}/access_tokens"

    @property
    def events_path(self) -> str:
        return f"/core/v3/stores/{self.store_id}/custom_events"

    # -- tokens ------------------------------------------------------------------------------

    def issue_token(self) -> str:
        """A new valid token without an HTTP call (does not count in ``token_requests``)."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        return token

    def expire_tokens(self) -> None:
        """Invalidate every issued token: the next event call with an old one gets 401."""
        with self._lock:
            self._tokens.clear()

    @property
    def tokens(self) -> frozenset[str]:
        """The currently valid tokens (a copy)."""
        with self._lock:
            return frozenset(self._tokens)

    # -- scripting ---------------------------------------------------------------------------
    # enqueue() and set_default() script the event calls (any non-token request).

    def enqueue_token(self, *responses: CannedResponse) -> None:
        """The next token calls get these answers, FIFO (still counted in ``token_requests``;
        no token is issued)."""
        with self._lock:
            self._token_queue.extend(responses)

    def reset(self) -> None:
        """Clear received requests, both queues, the default, ``events`` and the counters
        (``token_requests``, ``updates``, ``throttled``, the window count, the last second's
        calls). Tokens stay valid."""
        with self._lock:
            super().reset()
            self._token_queue.clear()
            self.events.clear()
            self.token_requests = 0
            self.updates = 0
            self._accepted_at.clear()

    # -- request handling (handler threads) --------------------------------------------------

    def _arrived(self, record: ReceivedRequest) -> CannedResponse | None:
        token = record.headers.get("x-yotpo-token", "").strip()
        if token and token in self._tokens:
            record.auth = "token"
        if not _is_token_call(record):
            return super()._arrived(record)
        self.token_requests += 1
        return self._token_queue.popleft() if self._token_queue else None

    def _is_accepted(self, record: ReceivedRequest) -> bool:
        return record.status == 200 and not _is_token_call(record)

    def _answer(self, record: ReceivedRequest, parsed: bool) -> Answer:
        if _is_token_call(record):
            return self._token(record, record.body)
        return self._event(record, record.body, parsed)

    def _token(self, record: ReceivedRequest, body: Any) -> Answer:
        m = _RE_TOKEN_PATH.match(record.path)
        assert m is not None
        store_id = unquote(m.group(1))
        if store_id != self.store_id:
            return 404, record_not_found_body(store_id), {}
        given = body.get("secret") if isinstance(body, dict) else None
        if not isinstance(given, str) or not secrets.compare_digest(given.encode(), self.secret.encode()):
            return 401, access_denied_body(), {}
        record.auth = "secret"
        return 200, {"access_token": self.issue_token()}, {}

    def _event(self, record: ReceivedRequest, body: Any, parsed: bool) -> Answer:
        m = _RE_EVENTS_PATH.match(record.path)
        if m is None or record.method != "POST":
            return 404, None, {}
        store_id = unquote(m.group(1))
        if store_id != self.store_id:
            return 404, record_not_found_body(store_id), {}
        if record.auth != "token":
            return 401, access_denied_body(), {}

        with self._lock:
            now = time.monotonic()
            wait = self._throttle(now)
            if wait is None and self._over_per_second(now):
                self.throttled += 1
                wait = 1
            if wait is not None:
                return 429, None, {"RateLimit-Remaining": "0", "RateLimit-Reset": str(wait)}

            if not is_json(record):
                return (
                    400,
                    {"errors": [{"message": "Bad request: Content-Type must be application/json"}]},
                    {},
                )
            if not parsed:
                return 400, {"errors": [{"message": "Bad request: body must be valid JSON"}]}, {}
            problems = event_problems(body)
            if problems:
                return 422, {"errors": problems}, {}

            self._window_count += 1
            self._accepted_at.append(now)
            event_id = body["id"]
            if event_id in self.events:
                self.updates += 1
            self.events[event_id] = body
        return 200, {"event": {"id": event_id, "type": body["type"]}}, {}

    def _over_per_second(self, now: float) -> bool:
        """``per_second`` calls were accepted in the second before ``now`` (lock held)."""
        accepted = self._accepted_at
        while accepted and accepted[0] <= now - 1.0:
            accepted.popleft()
        return self.per_second is not None and len(accepted) >= self.per_second

    def _upstream_headers(self, record: ReceivedRequest, scripted: bool) -> dict[str, str]:
        # Rate-limit headers go on event calls: when scripted, any non-token call; else the events path.
        if scripted:
            event_call = not _is_token_call(record)
        else:
            event_call = _RE_EVENTS_PATH.match(record.path) is not None
        if not event_call:
            return {}
        self._window(time.monotonic())
        limit = self.rate_limit if self.rate_limit is not None else UNLIMITED_RATE_LIMIT_HEADER
        remaining = max(0, limit - self._window_count)
        return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining)}


def _is_token_call(record: ReceivedRequest) -> bool:
    return record.method == "POST" and _RE_TOKEN_PATH.match(record.path) is not None
