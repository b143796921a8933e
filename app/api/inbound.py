"""What every request gets before a handler sees it: one value per credential header, a
deadline on its body, and no connection kept open behind an answer given before the body.

A pure ASGI middleware around the whole app. Handlers check credentials from the headers
before reading a body (``auth.py``), so a caller without them is answered at once; the body
it promised is never read, so the answer carries ``Connection: close`` and uvicorn closes the
connection behind it, instead of keeping it open for whatever the caller still sends (or
never sends). A body that has not arrived ``body_timeout`` seconds after the headers raises
``request_timeout`` (408) out of ``receive``, which the handlers answer like any other
problem, again with ``Connection: close``.

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
        body = _WatchedBody(receive, send, self.body_timeout)
        await app(scope, body.receive, body.send)


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


class _WatchedBody:
    """``receive`` with the body's deadline, and ``send`` closing the connection when the
    answer starts before the whole body was received."""

    __slots__ = ("_receive", "_send", "_timeout", "complete", "deadline", "responded")

    def __init__(self, receive: Receive, send: Send, timeout: float) -> None:
        self._receive = receive
        self._send = send
        self._timeout = timeout
        self.complete = False
        self.responded = False
        self.deadline = asyncio.get_running_loop().time() + timeout

    async def receive(self) -> Message:
        if self.complete or self.responded:  # e.g. a wait for the caller's disconnect
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            detail = f"The body did not arrive within RELAY_BODY_TIMEOUT ({self._timeout:g} s)"
            raise Problem("request_timeout", detail) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.responded = True
            if not self.complete:
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
        await self._send(message)
