"""A fake Yotpo Core API (access tokens + custom customer events) for contract and e2e tests.

It is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer``) on a free loopback port, served
from a daemon thread, modelled on :mod:`tests.fakes.zendesk`. It follows the facts in
``shared/reference/yotpo.md``:

* ``POST /core/v3/stores/{store_id}/access_tokens`` with ``{"secret": "..."}`` issues a new
  random ``access_token`` per call (every issued token stays valid until :meth:`expire_tokens`).
* ``POST /core/v3/stores/{store_id}/custom_events`` (the relay's default events path; the real
  method and path are UNCERTAIN) needs ``X-Yotpo-Token``; ``200 {"event": {"id", "type"}}`` on
  success; the same ``id`` again updates the stored event (``updates`` counts that).
* Rate limit (when ``rate_limit`` is set): at most N accepted event calls per fixed window of
  ``rate_window`` seconds (aligned to :meth:`start`); above that ``429`` with ``RateLimit-Reset``.

Order of checks for an event call that is not scripted: route (404), store id (404), token (401),
rate limit (429), ``Content-Type`` (400), JSON (400), body rules (422), then 200.

Scripting: :meth:`FakeYotpo.enqueue` / :meth:`FakeYotpo.set_default` answer *event* calls (every
request other than a token call) and bypass every check; token calls are scripted separately with
:meth:`FakeYotpo.enqueue_token`, so a relay that fetches a token first does not eat the script.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import socket
import threading
import time
from collections import deque
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fakes.zendesk import CannedResponse, ReceivedRequest

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
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

_RE_TOKEN_PATH = re.compile(r"^/core/v3/stores/([^/]+)/access_tokens$")
_RE_EVENTS_PATH = re.compile(r"^/core/v3/stores/([^/]+)/custom_events$")
_RE_SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
_RE_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_RE_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


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


# Every error body shape of reference section 2.5 (+ 429 and a plain-text 503), each distinctive.
ERROR_BODIES: dict[str, CannedResponse] = {
    "access_denied_401": CannedResponse(401, access_denied_body()),
    "record_not_found_404": CannedResponse(404, record_not_found_body("store-does-not-exist")),
    "invalid_client_401": CannedResponse(401, {"error": "invalid_client"}),
    "validation_422": CannedResponse(
        422,
        {"errors": [{"field": "customer.phone_number", "message": "must be an E.164 phone number"}]},
    ),
    "too_many_requests_429": CannedResponse(
        429,
        {"errors": [{"message": "Too Many Requests"}]},
        headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "2"},
    ),
    "server_error_500": CannedResponse(
        500,
        {
            "status": {
                "message": "Internal Server Error",
                "code": 500,
                "error_type": "Exceptions::InternalError",
            }
        },
    ),
    "plain_text_503": CannedResponse(
        503,
        "Service Unavailable",
        headers={"Retry-After": "3"},
        content_type="text/plain; charset=utf-8",
    ),
    "errors_array_400": CannedResponse(
        400,
        {"errors": [{"message": "Bad request: custom event rejected by upstream (YOTPO-FAKE-400)"}]},
    ),
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
    elif len(value) > MAX_NAME_LENGTH:
        problems.append({"field": key, "message": f"must be at most {MAX_NAME_LENGTH} characters"})
    elif not _RE_SNAKE.match(value):
        problems.append({"field": key, "message": "must be snake_case (e.g. order_shipped)"})


def _check_properties(value: Any, where: str, problems: list[dict[str, str]]) -> None:
    if not isinstance(value, dict):
        problems.append({"field": where, "message": "must be an object"})
        return
    for key, item in value.items():
        field = f"{where}.{key}"
        if " " in key:
            problems.append({"field": field, "message": "key must not contain spaces (use _)"})
        if item is None:
            problems.append({"field": field, "message": "null is not supported"})
        elif not isinstance(item, str | bool | int | float):
            problems.append({"field": field, "message": "must be a string, boolean or number"})
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append({"field": field, "message": "must be a finite number"})


def event_problems(body: Any) -> list[dict[str, str]]:
    """Every broken body rule, as ``{"field": <path>, "message": ...}`` (empty list: valid)."""
    if not isinstance(body, dict):
        return [{"field": "body", "message": "must be a JSON object"}]
    problems: list[dict[str, str]] = []
    _check_name(body, "type", True, problems)
    _check_name(body, "source", False, problems)

    if "timestamp" not in body:
        problems.append({"field": "timestamp", "message": "is required"})
    else:
        ts = body["timestamp"]
        ok = isinstance(ts, str) and bool(ts)
        if ok:
            try:
                datetime.fromisoformat(ts)
            except ValueError:
                ok = False
        if not ok:
            problems.append({"field": "timestamp", "message": "must be an ISO-8601 timestamp"})

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
        if "email" in customer:
            email = customer["email"]
            if not isinstance(email, str) or not _RE_EMAIL.match(email):
                problems.append({"field": "customer.email", "message": "must be an email address"})
        if "phone_number" in customer:
            phone = customer["phone_number"]
            if not isinstance(phone, str) or not _RE_E164.match(phone):
                problems.append(
                    {"field": "customer.phone_number", "message": "must be an E.164 phone number"}
                )
        if "properties" in customer:
            _check_properties(customer["properties"], "customer.properties", problems)

    if "properties" in body:
        _check_properties(body["properties"], "properties", problems)
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

    def __init__(self, address: tuple[str, int], fake: FakeYotpo) -> None:
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


_Answer = tuple[int, dict[str, Any] | list[Any], dict[str, str]]


class FakeYotpo:
    """A real HTTP server that behaves like the Yotpo Core API (see the module docstring).

    Public state (read it in tests): ``token_requests`` (every call to the token path),
    ``events`` (event id -> last accepted body), ``updates`` (accepted calls that reused an id),
    ``throttled`` (429s from the rate limiter). ``received``/``accepted`` return snapshots.
    After :meth:`stop`, :meth:`start` binds the same port again; issued tokens survive that.
    """

    def __init__(
        self,
        store_id: str = "store-123",
        secret: str = "test-yotpo-secret",
        rate_limit: int | None = None,
        rate_window: float = 1.0,
    ) -> None:
        self.store_id = store_id
        self.secret = secret
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.token_requests = 0
        self.events: dict[str, Any] = {}
        self.updates = 0
        self.throttled = 0

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._tokens: set[str] = set()
        self._received: list[ReceivedRequest] = []
        self._queue: deque[CannedResponse] = deque()
        self._token_queue: deque[CannedResponse] = deque()
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
            name=f"fake-yotpo-{self._port}",
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

    def __enter__(self) -> FakeYotpo:
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
            raise RuntimeError("FakeYotpo has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

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

    # -- inspection and scripting ------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every request (token calls included), in arrival order (a copy)."""
        with self._lock:
            return list(self._received)

    @property
    def accepted(self) -> list[ReceivedRequest]:
        """The event calls (not token calls) answered 200, scripted 200s included."""
        with self._lock:
            return [r for r in self._received if r.status == 200 and not _is_token_call(r)]

    def enqueue(self, *responses: CannedResponse) -> None:
        """The next event calls (any non-token request) get these answers, FIFO, bypassing
        store id, token, rate limit and body rules."""
        with self._lock:
            self._queue.extend(responses)

    def enqueue_token(self, *responses: CannedResponse) -> None:
        """The next token calls get these answers, FIFO (still counted in ``token_requests``;
        no token is issued)."""
        with self._lock:
            self._token_queue.extend(responses)

    def set_default(self, response: CannedResponse | None) -> None:
        """Answer every event call (once the queue is empty) with this until set to None/reset."""
        with self._lock:
            self._default = response

    def reset(self) -> None:
        """Clear received requests, both queues, the default, ``events`` and the counters
        (``token_requests``, ``updates``, ``throttled``, the window count). Tokens stay valid."""
        with self._lock:
            self._received.clear()
            self._queue.clear()
            self._token_queue.clear()
            self._default = None
            self.events.clear()
            self.token_requests = 0
            self.updates = 0
            self.throttled = 0
            self._window_count = 0

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` event calls were answered 200; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(1 for r in self._received if r.status == 200 and not _is_token_call(r)) >= count,
                timeout,
            )

    # -- request handling (handler threads) --------------------------------------------------

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
            parsed = raw != b""
        except ValueError:
            body, parsed = None, False
        record = ReceivedRequest(
            method=handler.command,
            path=split.path,
            headers=headers,
            body=body,
            raw=raw,
            received_at=now,
            query=split.query,
        )
        token_call = _is_token_call(record)
        with self._lock:
            token = headers.get("x-yotpo-token", "").strip()
            if token and token in self._tokens:
                record.auth = "token"
            self._received.append(record)
            if token_call:
                self.token_requests += 1
                canned = self._token_queue.popleft() if self._token_queue else None
            else:
                canned = self._queue.popleft() if self._queue else self._default

        if canned is not None:
            if canned.delay > 0 and self._stopping.wait(canned.delay):
                handler.close_connection = True  # stopped while "slow": hang up
                return
            self._send(
                handler,
                record,
                canned.status,
                canned.encode(),
                canned.content_type if canned.body is not None else None,
                canned.headers,
                rate_headers=not token_call,
            )
            return
        answer: _Answer
        if bad_framing:
            answer = 400, {"errors": [{"message": "Bad request: malformed body framing"}]}, {}
        elif token_call:
            answer = self._token(record, body)
        else:
            answer = self._event(record, body, parsed)
        status, payload, extra = answer
        is_events = _RE_EVENTS_PATH.match(record.path) is not None
        self._send(handler, record, status, _json(payload), JSON_CONTENT_TYPE, extra, rate_headers=is_events)

    def _token(self, record: ReceivedRequest, body: Any) -> _Answer:
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

    def _event(self, record: ReceivedRequest, body: Any, parsed: bool) -> _Answer:
        m = _RE_EVENTS_PATH.match(record.path)
        if m is None or record.method != "POST":
            return 404, {"errors": [{"message": "Not Found"}]}, {}
        store_id = unquote(m.group(1))
        if store_id != self.store_id:
            return 404, record_not_found_body(store_id), {}
        if record.auth != "token":
            return 401, access_denied_body(), {}

        with self._lock:
            now = time.monotonic()
            index = self._window(now)
            if self.rate_limit is not None and self._window_count >= self.rate_limit:
                self.throttled += 1
                window_end = self._t0 + (index + 1) * self.rate_window
                wait = max(1, math.ceil(window_end - now))
                return (
                    429,
                    {"errors": [{"message": "Too Many Requests"}]},
                    {"RateLimit-Remaining": "0", "RateLimit-Reset": str(wait)},
                )

            content_type = record.headers.get("content-type", "")
            if content_type.split(";", 1)[0].strip().lower() != "application/json":
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
            event_id = body["id"]
            if event_id in self.events:
                self.updates += 1
            self.events[event_id] = body
        return 200, {"event": {"id": event_id, "type": body["type"]}}, {}

    def _send(
        self,
        handler: _Handler,
        record: ReceivedRequest,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str],
        *,
        rate_headers: bool,
    ) -> None:
        out: dict[str, str] = {}
        with self._cond:
            if rate_headers:
                self._window(time.monotonic())
                limit = self.rate_limit if self.rate_limit is not None else UNLIMITED_RATE_LIMIT_HEADER
                out["RateLimit-Limit"] = str(limit)
                out["RateLimit-Remaining"] = str(max(0, limit - self._window_count))
            record.status = status
            self._cond.notify_all()
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


def _is_token_call(record: ReceivedRequest) -> bool:
    return record.method == "POST" and _RE_TOKEN_PATH.match(record.path) is not None


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")
