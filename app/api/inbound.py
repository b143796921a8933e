"""What every request gets before a handler sees it: one value per credential header, a
deadline on its body, and no connection kept open behind an answer given before the body.

A pure ASGI middleware around the whole app (the raw ingest route and FastAPI's routes
alike). Handlers check credentials from the headers before reading a body (``auth.py``), so a
caller without them is answered at once; the body it promised is never read, so the answer
carries ``Connection: close`` and uvicorn closes the connection behind it, instead of keeping
it open for whatever the caller still sends (or never sends). A body that has not arrived
``body_timeout`` seconds after the headers raises ``request_timeout`` (408) out of ``receive``,
which the handlers answer like any other problem, again with ``Connection: close``.

uvicorn has no deadline for the headers themselves: the front proxy must enforce one
(docs/operations.md).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.middleware import RequestContextMiddleware
from app.api.responses import problem_response
from app.problems import Problem

CLOSE = (b"connection", b"close")


class InboundGuard:
    """Refuses repeated credential headers, puts a deadline on bodies, closes unread ones."""

    def __init__(self, app: ASGIApp, *, body_timeout: float) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self._deadlines = BodyDeadlines(body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        repeated, announced = scan(scope["headers"])
        app = self.app
        if repeated is not None:
            # ingest kept the last value of a header and Starlette the first: refuse, not guess
            detail = f"Send the {repeated} header once; it came several times"
            app = RequestContextMiddleware(problem_response(Problem("invalid_request", detail)))
        if not announced:
            await app(scope, receive, send)
            return
        body = _WatchedBody(receive, send, self._deadlines)
        try:
            await app(scope, body.receive, body.send)
        finally:
            self._deadlines.forget(body)


def scan(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, bool]:
    """The name of an ``Authorization`` or ``X-Relay-*`` header sent more than once (if any),
    and whether the request announces a body (a non-zero ``Content-Length``, or a transfer
    coding)."""
    by_name = dict(headers)  # in C: the usual request, with no header twice, costs no loop here
    length = by_name.get(b"content-length")
    announced = b"transfer-encoding" in by_name or (length is not None and length.strip() not in (b"0", b""))
    if len(by_name) == len(headers):
        return None, announced
    seen: set[bytes] = set()
    for name, _ in headers:
        if name == b"authorization" or name.startswith(b"x-relay-"):
            if name in seen:
                return name.decode("latin-1"), announced
            seen.add(name)
    return None, announced


class BodyDeadlines:
    """The bodies still arriving, checked by one timer per process instead of one per request.

    A timer per ``receive`` (``asyncio.timeout``) cost about 6 microseconds a request, 3-5 % of
    an ingest, though nearly every body has arrived with its headers. Here a body is put in a
    set when its request starts and taken out when it is complete; while the set is not empty,
    a sweep every ``interval`` seconds (a quarter of the timeout, at most one second) marks the
    bodies past their deadline and cancels the ``receive`` each one is waiting in, which
    ``_WatchedBody`` turns into ``request_timeout``. A deadline is met within ``interval``.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.interval = min(1.0, timeout / 4)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active: set[_WatchedBody] = set()
        self._sweeping: asyncio.TimerHandle | None = None

    def start(self, body: _WatchedBody) -> float:
        """Watch ``body`` from now; its deadline."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # one loop at a time (a test client may bring a new one)
            self._loop, self._active, self._sweeping = loop, set(), None
        self._active.add(body)
        if self._sweeping is None:
            self._sweeping = loop.call_later(self.interval, self._sweep)
        return loop.time() + self.timeout

    def forget(self, body: _WatchedBody) -> None:
        self._active.discard(body)

    def _sweep(self) -> None:
        loop = self._loop
        if loop is None:  # not reached: the `start` that scheduled this set it
            return
        now = loop.time()
        for body in [b for b in self._active if b.deadline <= now]:
            self._active.discard(body)
            body.expire()
        self._sweeping = loop.call_later(self.interval, self._sweep) if self._active else None


class _WatchedBody:
    """``receive`` with the body's deadline, and ``send`` closing the connection when the
    answer starts before the whole body was received."""

    __slots__ = (
        "_cancelling",
        "_deadlines",
        "_receive",
        "_send",
        "_waiting",
        "complete",
        "deadline",
        "expired",
        "responded",
    )

    def __init__(self, receive: Receive, send: Send, deadlines: BodyDeadlines) -> None:
        self._receive = receive
        self._send = send
        self._deadlines = deadlines
        self._waiting: asyncio.Task[object] | None = None
        self._cancelling = 0
        self.complete = False
        self.expired = False
        self.responded = False
        self.deadline = deadlines.start(self)

    def expire(self) -> None:
        self.expired = True
        if self._waiting is not None:
            self._cancelling = self._waiting.cancelling()
            self._waiting.cancel()

    async def receive(self) -> Message:
        if self.complete or self.responded:  # e.g. a wait for the caller's disconnect
            return await self._receive()
        if self.expired:
            raise self._timed_out()
        task = self._waiting = asyncio.current_task()
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            # ours (the deadline), unless someone else cancelled the task too, as asyncio.timeout decides
            if self.expired and task is not None and task.uncancel() <= self._cancelling:
                raise self._timed_out() from None
            raise
        finally:
            self._waiting = None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
            self._deadlines.forget(self)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.responded = True
            self._deadlines.forget(self)
            if not self.complete:
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
        await self._send(message)

    def _timed_out(self) -> Problem:
        detail = f"The body did not arrive within RELAY_BODY_TIMEOUT ({self._deadlines.timeout:g} s)"
        return Problem("request_timeout", detail)
