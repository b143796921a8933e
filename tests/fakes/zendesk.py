"""A fake Zendesk Events API for contract and end-to-end tests.

It is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer``) on a free loopback port, served
from a daemon thread. It follows the facts in ``shared/reference/zendesk.md``: the three
``POST`` event endpoints, the three auth forms, the documented body rules, ``202`` success
bodies, rate-limit headers and ``429`` + ``Retry-After``. Tests can also script answers with
:meth:`FakeZendesk.enqueue` (next N requests) and :meth:`FakeZendesk.set_default` (every
request until cleared), e.g. with the error bodies in :data:`ERROR_BODIES`.

Order of checks for a request that is not scripted: auth (401), route (404), rate limit (429),
``Content-Type`` (400 plain text), JSON, path parameters (400/404), body rules (400), then 202.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import math
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ERROR_BODIES",
    "CannedResponse",
    "FakeZendesk",
    "ReceivedRequest",
    "payload_problems",
    "profile_id_for",
    "user_id_for",
]

MAX_NAME_LENGTH = 40
MAX_IDENTIFIERS = 20
DEFAULT_RATE_LIMIT_HEADER = 700
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

EVENTS_PATH = "/api/v2/user_profiles/events"
_RE_PROFILE_ID = re.compile(r"^/api/v2/user_profiles/([^/]+)/events$")
_RE_USER_ID = re.compile(r"^/api/v2/users/([^/]+)/events$")


@dataclass
class ReceivedRequest:
    """One request as the fake saw it (every request is recorded, rejected ones included)."""

    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: Any  # parsed JSON, or None when empty or not JSON
    raw: bytes
    received_at: float  # time.monotonic()
    auth: str | None = None  # "api_token", "oauth", "password" or None
    query: str = ""
    status: int | None = None  # the status answered; None until answered (or if dropped)


@dataclass
class CannedResponse:
    """A scripted answer. dict/list bodies are JSON-encoded; str/bytes are sent as given."""

    status: int
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds slept in the handler thread before answering
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)

# Every error body shape of reference sections 1.5 and 1.6, each with a distinctive string.
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
    "html_502": CannedResponse(502, _HTML_502, content_type="text/html; charset=utf-8"),
    "unavailable_503": CannedResponse(
        503,
        {
            "error": "ServiceUnavailable",
            "description": "Zendesk is temporarily unavailable for scheduled maintenance",
        },
        headers={"Retry-After": "3"},
    ),
    "server_error_500": CannedResponse(
        500,
        {
            "errors": [
                {
                    "code": "InternalServerError",
                    "title": "Internal Server Error",
                    "id": "b7e3c0de-5e11-4d0e-8f00-500500500500",
                }
            ]
        },
    ),
    # Not documented for Events; Embulk treats 409 as transient.
    "conflict_409": CannedResponse(
        409,
        {
            "error": "Conflict",
            "description": "A conflicting update to this user is in progress (user collision)",
        },
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
        if "created_at" in event:
            created_at = event["created_at"]
            ok = isinstance(created_at, str)
            if ok:
                try:
                    datetime.fromisoformat(created_at)
                except ValueError:
                    ok = False
            if not ok:
                problems.append("event.created_at: must be an ISO-8601 timestamp")

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
# The HTTP server.


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    timeout = 60  # idle keep-alive connections are dropped after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silence the default stderr request log

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeZendesk) -> None:
        self.fake = fake
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can be slow; skip it.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, stop()) are expected; stay quiet

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _BadRequestBody(Exception):
    pass


class FakeZendesk:
    """A real HTTP server that behaves like the Zendesk Events API (see the module docstring).

    ``received`` and ``accepted`` return snapshots (copies); use :meth:`reset` to clear.
    After :meth:`stop`, ``base_url`` keeps pointing at the (now closed) port and :meth:`start`
    binds the same port again, so "Zendesk goes away and comes back" can be simulated.
    """

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
        self.email = email
        self.api_token = api_token
        self.oauth_token = oauth_token
        self.password = password
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.retry_after = retry_after
        self.throttled = 0

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._received: list[ReceivedRequest] = []
        self._queue: deque[CannedResponse] = deque()
        self._default: CannedResponse | None = None
        self._t0 = time.monotonic()
        self._window_index = 0
        self._window_count = 0

        self._port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind 127.0.0.1 (a free port the first time, the same port after a stop) and serve."""
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", self._port), self)
        self._port = int(server.server_address[1])
        self._stopping = threading.Event()
        with self._lock:
            self._t0 = time.monotonic()
            self._window_index = 0
            self._window_count = 0
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"fake-zendesk-{self._port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()

    def stop(self) -> None:
        """Stop serving, drop open (keep-alive) connections, wake sleeping handlers (which then
        hang up without answering). Does not wait for handler threads."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        self._stopping.set()
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeZendesk:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeZendesk has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- inspection and scripting ------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every request, in arrival order (a copy)."""
        with self._lock:
            return list(self._received)

    @property
    def accepted(self) -> list[ReceivedRequest]:
        """The received requests answered 202 (scripted 202s included)."""
        with self._lock:
            return [r for r in self._received if r.status == 202]

    def enqueue(self, *responses: CannedResponse) -> None:
        """The next requests get these answers, FIFO, bypassing auth, rate limit and body rules."""
        with self._lock:
            self._queue.extend(responses)

    def set_default(self, response: CannedResponse | None) -> None:
        """Answer every request (once the queue is empty) with this until set to None/reset."""
        with self._lock:
            self._default = response

    def reset(self) -> None:
        """Clear received requests, the queue, the default, ``throttled`` and the window count."""
        with self._lock:
            self._received.clear()
            self._queue.clear()
            self._default = None
            self.throttled = 0
            self._window_count = 0

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` requests were answered 202; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(1 for r in self._received if r.status == 202) >= count, timeout
            )

    # -- request handling (handler threads) --------------------------------------------------

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

    @staticmethod
    def _read_body(handler: _Handler) -> bytes:
        if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                line = handler.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise _BadRequestBody("bad chunk size") from exc
                if size == 0:
                    while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline(65537)
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise _BadRequestBody("bad Content-Length") from exc
        return handler.rfile.read(length) if length > 0 else b""

    def _window(self, now: float) -> int:
        """Roll the fixed window if needed (call with the lock held); returns its index."""
        index = int((now - self._t0) // self.rate_window)
        if index != self._window_index:
            self._window_index = index
            self._window_count = 0
        return index

    def _handle(self, handler: _Handler) -> None:
        stopping = self._stopping
        now = time.monotonic()
        split = urlsplit(handler.path)
        headers: dict[str, str] = {}
        for name, value in handler.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            raw = self._read_body(handler)
            bad_framing = False
        except _BadRequestBody:
            raw, bad_framing = b"", True
            handler.close_connection = True
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = ReceivedRequest(
            method=handler.command,
            path=split.path,
            headers=headers,
            body=body,
            raw=raw,
            received_at=now,
            auth=self._auth_form(headers.get("authorization")),
            query=split.query,
        )
        with self._lock:
            self._received.append(record)
            canned = self._queue.popleft() if self._queue else self._default

        if canned is not None:
            if canned.delay > 0 and stopping.wait(canned.delay):
                handler.close_connection = True  # stopped while "slow": hang up
                return
            self._send(
                handler,
                record,
                canned.status,
                canned.encode(),
                canned.content_type if canned.body is not None else None,
                canned.headers,
            )
            return
        if bad_framing:
            self._send_text(handler, record, 400, "Bad Request: malformed request body framing")
            return
        status, payload, extra = self._route(record, split.path)
        if isinstance(payload, str):
            self._send_text(handler, record, status, payload, extra)
        else:
            self._send(handler, record, status, _json(payload), JSON_CONTENT_TYPE, extra)

    def _route(self, record: ReceivedRequest, path: str) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
        if record.auth is None:
            return (
                401,
                {"error": "Couldn't authenticate you"},
                {"WWW-Authenticate": 'Basic realm="Web Password"'},
            )
        profile_id: str | None = None
        user_id: str | None = None
        if record.method == "POST" and path == EVENTS_PATH:
            profile_rule = "required"
        elif record.method == "POST" and (m := _RE_PROFILE_ID.match(path)):
            profile_rule, profile_id = "forbidden", m.group(1)
        elif record.method == "POST" and (m := _RE_USER_ID.match(path)):
            profile_rule, user_id = "required", m.group(1)
        else:
            return 404, {"error": "InvalidEndpoint", "description": "Not found"}, {}

        with self._lock:
            now = time.monotonic()
            index = self._window(now)
            if self.rate_limit is not None and self._window_count >= self.rate_limit:
                self.throttled += 1
                if self.retry_after is not None:
                    wait = self.retry_after
                else:
                    window_end = self._t0 + (index + 1) * self.rate_window
                    wait = max(1, math.ceil(window_end - now))
                return (
                    429,
                    {"error": [{"code": "TooManyRequests", "title": "Too Many Requests"}]},
                    {"Retry-After": str(wait)},
                )

            content_type = record.headers.get("content-type", "")
            if content_type.split(";", 1)[0].strip().lower() != "application/json":
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
            if profile_id is not None and profile_id.startswith("missing"):
                return 404, {"error": "RecordNotFound", "description": "Not found"}, {}
            problems = payload_problems(record.body, profile=profile_rule)
            if problems:
                return _invalid(problems)

            self._window_count += 1
        if profile_id is None:
            profile_id = profile_id_for(record.body["profile"])
        return (
            202,
            {
                "status": "received",
                "profile_id": profile_id,
                "user_id": user_id if user_id is not None else user_id_for(profile_id),
            },
            {},
        )

    def _send_text(
        self,
        handler: _Handler,
        record: ReceivedRequest,
        status: int,
        text: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send(
            handler,
            record,
            status,
            text.encode("utf-8"),
            "text/plain; charset=utf-8",
            headers or {},
        )

    def _send(
        self,
        handler: _Handler,
        record: ReceivedRequest,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str],
    ) -> None:
        with self._cond:
            self._window(time.monotonic())
            limit = self.rate_limit if self.rate_limit is not None else DEFAULT_RATE_LIMIT_HEADER
            remaining = max(0, limit - self._window_count)
            if self.rate_limit is not None:  # Zendesk's headers count per minute
                limit = round(limit * 60 / self.rate_window)
                remaining = round(remaining * 60 / self.rate_window)
            record.status = status
            self._cond.notify_all()
        out: dict[str, str] = {
            "X-Zendesk-Request-Id": str(uuid.uuid4()),
            "X-Rate-Limit": str(limit),
            "X-Rate-Limit-Remaining": str(remaining),
        }
        if content_type:
            out["Content-Type"] = content_type
        lowered = {k.lower(): k for k in out}
        for name, value in headers.items():
            out.pop(lowered.get(name.lower(), name), None)
            out[name] = value
        handler.send_response(status)
        for name, value in out.items():
            if name.lower() != "content-length":
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
        handler.wfile.flush()


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _invalid(problems: list[str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    return (
        400,
        {"errors": [{"code": "InvalidEventPayload", "title": title} for title in problems]},
        {},
    )
