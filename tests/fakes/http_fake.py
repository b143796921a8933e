"""What the fake upstreams (:mod:`tests.fakes.zendesk`, :mod:`tests.fakes.yotpo`) share.

:class:`HttpFake` is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer``) on a loopback port,
served from a daemon thread: start/stop (same port again after a stop), every request recorded
as a :class:`ReceivedRequest`, scripted answers (:meth:`HttpFake.enqueue`,
:meth:`HttpFake.set_default`) as :class:`CannedResponse`, a fixed-window rate-limit counter and
the writing of answers, late (:class:`Late`) or never (``CannedResponse(drop=True)``). A subclass
says how its upstream authenticates, routes and answers.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

# An unscripted answer: status, payload (str is sent as plain text, anything else as JSON), headers.
Answer = tuple[int, dict[str, Any] | list[Any] | str | None, dict[str, str]]  # None: no body


@dataclass
class ReceivedRequest:
    """One request as the fake saw it (every request is recorded, rejected ones included)."""

    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: Any  # parsed JSON, or None when empty or not JSON
    raw: bytes
    received_at: float  # time.monotonic()
    auth: str | None = None  # the credential form the fake accepted (e.g. "api_token"), or None
    query: str = ""
    status: int | None = None  # the status answered; None until answered (or if dropped)
    answered_at: float | None = None  # time.monotonic() once the answer was written


@dataclass
class CannedResponse:
    """A scripted answer. dict/list bodies are JSON-encoded; str/bytes are sent as given."""

    status: int
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds slept in the handler thread before answering (a client gone by then
    # is not answered: the request stays unanswered, status None)
    content_type: str = "application/json"
    drop: bool = False  # hang up (after the delay) without answering: the request stays unanswered

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json_bytes(self.body)


@dataclass(frozen=True)
class Late:
    """An unscripted answer written only after ``delay`` seconds (a client gone by then is not
    answered), while the work behind it is already done."""

    answer: Answer
    delay: float


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def is_json(record: ReceivedRequest) -> bool:
    """Whether the request's Content-Type is application/json (parameters ignored)."""
    content_type = record.headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


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

    def __init__(self, address: tuple[str, int], fake: HttpFake) -> None:
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


def _hung_up(connection: socket.socket) -> bool:
    """Whether the peer closed ``connection`` (readable at once, and nothing left to read)."""
    previous = connection.gettimeout()
    try:
        connection.settimeout(0.0)
        return connection.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: still connected and waiting
    except OSError:
        return True  # reset by the peer
    finally:
        connection.settimeout(previous)


def _waited(handler: _Handler, stopping: threading.Event, delay: float) -> bool:
    """Sleep ``delay`` before answering; False (and the connection marked for closing) when
    there is nobody to answer any more: the fake stopped, or the client hung up meanwhile."""
    if delay <= 0:
        return True
    if stopping.wait(delay) or _hung_up(handler.connection):
        handler.close_connection = True
        return False
    return True


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


class HttpFake:
    """The server plumbing of a fake upstream; subclasses fill in the hooks at the end.

    ``received`` and ``accepted`` return snapshots (copies); use :meth:`reset` to clear.
    After :meth:`stop`, ``base_url`` keeps pointing at the (now closed) port and :meth:`start`
    binds the same port again, so "the upstream goes away and comes back" can be simulated.
    """

    thread_name: ClassVar[str]  # handler threads are named f"{thread_name}-{port}"
    bad_framing_answer: ClassVar[Answer]  # for a body whose chunks or Content-Length are broken

    def __init__(self, *, rate_limit: int | None, rate_window: float) -> None:
        self.rate_limit = rate_limit
        self.rate_window = rate_window
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
            name=f"{self.thread_name}-{self._port}",
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

    def __enter__(self) -> Self:
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
            raise RuntimeError(f"{type(self).__name__} has not been started")
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
        """The received requests the upstream accepted (scripted successes included)."""
        with self._lock:
            return [r for r in self._received if self._is_accepted(r)]

    def enqueue(self, *responses: CannedResponse) -> None:
        """The next requests get these answers, FIFO, bypassing every check of the fake."""
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
        """Block until at least ``count`` requests were accepted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(1 for r in self._received if self._is_accepted(r)) >= count, timeout
            )

    # -- rate limit (call with the lock held) ------------------------------------------------

    def _window(self, now: float) -> int:
        """Roll the fixed window if needed; returns its index."""
        index = int((now - self._t0) // self.rate_window)
        if index != self._window_index:
            self._window_index = index
            self._window_count = 0
        return index

    def _throttle(self, now: float) -> int | None:
        """None when ``rate_limit`` allows another call in this window; otherwise count it in
        ``throttled`` and return the whole seconds (at least 1) until the window ends."""
        index = self._window(now)
        if self.rate_limit is None or self._window_count < self.rate_limit:
            return None
        self.throttled += 1
        window_end = self._t0 + (index + 1) * self.rate_window
        return max(1, math.ceil(window_end - now))

    # -- request handling (handler threads) --------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        stopping = self._stopping
        now = time.monotonic()
        split = urlsplit(handler.path)
        headers: dict[str, str] = {}
        for name, value in handler.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            raw = _read_body(handler)
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
        with self._lock:
            canned = self._arrived(record)
            self._received.append(record)

        if canned is not None:
            if not _waited(handler, stopping, canned.delay):
                return
            if canned.drop:
                handler.close_connection = True  # the connection closes with no answer on it
                return
            content_type = canned.content_type if canned.body is not None else None
            self._send(
                handler, record, canned.status, canned.encode(), content_type, canned.headers, scripted=True
            )
            return
        answer = self.bad_framing_answer if bad_framing else self._answer(record, parsed)
        if isinstance(answer, Late):
            if not _waited(handler, stopping, answer.delay):
                return
            answer = answer.answer
        status, payload, extra = answer
        if payload is None:
            data, content_type = b"", None
        elif isinstance(payload, str):
            data, content_type = payload.encode("utf-8"), TEXT_CONTENT_TYPE
        else:
            data, content_type = json_bytes(payload), JSON_CONTENT_TYPE
        self._send(handler, record, status, data, content_type, extra, scripted=False)

    def _send(
        self,
        handler: _Handler,
        record: ReceivedRequest,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str],
        *,
        scripted: bool,  # a canned answer rather than the fake's own
    ) -> None:
        with self._cond:
            out = self._upstream_headers(record, scripted)
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
        record.answered_at = time.monotonic()

    # -- hooks -------------------------------------------------------------------------------

    def _arrived(self, record: ReceivedRequest) -> CannedResponse | None:
        """A request came in (lock held, before it is recorded): note its ``auth`` and return
        the scripted answer it takes, if any. By default: the queue, then the default."""
        return self._queue.popleft() if self._queue else self._default

    def _answer(self, record: ReceivedRequest, parsed: bool) -> Answer | Late:
        """The answer to a request that is not scripted (``parsed``: the body was JSON)."""
        raise NotImplementedError

    def _upstream_headers(self, record: ReceivedRequest, scripted: bool) -> dict[str, str]:
        """Headers the upstream adds to an answer (lock held; the answer's own headers win)."""
        return {}

    def _is_accepted(self, record: ReceivedRequest) -> bool:
        """Whether an answered request counts in ``accepted`` and :meth:`wait_for`."""
        raise NotImplementedError
