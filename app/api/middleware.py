"""ASGI middleware: request id, one log line per request, and a problem for any crash."""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs
from app.api.responses import problem_response
from app.ids import new_id
from app.problems import Problem

log = structlog.get_logger("app.api")

MAX_REQUEST_ID = 128


class RequestContextMiddleware:
    """Binds a request id (from ``X-Request-Id`` or new), echoes it, and logs the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled_error", path=logs.clip(scope["path"]))
            if not response_started:
                response = problem_response(Problem("internal_error", "The relay failed unexpectedly"))
                await response(scope, receive, send_with_id)
        finally:
            if logs.info_enabled():  # most of a line's cost is building it; skip that when unread
                log.info(
                    "request",
                    method=scope["method"],
                    path=logs.clip(scope["path"]),  # a stranger's path: a bounded line
                    status=status,
                    latency_ms=round((time.perf_counter() - started) * 1000, 2),
                    **scope["state"].get("log_fields", {}),
                )
            structlog.contextvars.unbind_contextvars("request_id")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1").strip()
            if text and len(text) <= MAX_REQUEST_ID and text.isprintable():
                return text
    return new_id()
