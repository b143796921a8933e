"""The ingest hot path: ``POST /v1/events[/{mapping}]`` as a raw ASGI handler.

Adobe sends every event of a site and most are ignored, so ingest cost is what users pay
for. ``RelayApp`` sends these requests here before FastAPI's stack: the few headers needed
are read in one pass, the body straight from ``receive`` once the credentials in the
headers let the request in, and the answer is sent as two messages. Request id, the
request's log line and the problem documents are the same as on every other route.
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from app import logs
from app.api.auth import request_path
from app.api.body import read_body
from app.api.ingest import Answer, handle_ingest
from app.ids import new_id
from app.problems import Problem
from app.relay import Relay

log = structlog.get_logger("app.api")

PREFIX = "/v1/events"
MAX_REQUEST_ID = 128
WANTED = frozenset(
    {
        b"authorization",
        b"content-length",
        b"prefer",
        b"x-request-id",
        b"x-relay-signature",
        b"x-relay-timestamp",
    }
)


class IngestRoute:
    """Answers ingest POSTs directly; any other request goes to the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rest = scope["path"][len(PREFIX) :]
        if rest in ("", "/"):
            mapping = None
        elif rest.startswith("/") and "/" not in rest[1:]:
            mapping = rest[1:]
        else:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {name: value for name, value in scope["headers"] if name in WANTED}
        request_id = _request_id(headers.get(b"x-request-id"))
        relay: Relay = scope["app"].state.relay
        declared = headers.get(b"content-length")
        limit = relay.settings.relay_max_body_bytes
        try:
            answer = await handle_ingest(
                relay,
                lambda: read_body(receive, declared, limit),
                path=request_path(scope),
                mapping_name=mapping,
                authorization=_text(headers.get(b"authorization")),
                query_string=scope.get("query_string", b""),
                prefer=_text(headers.get(b"prefer")),
                request_id=request_id,
                signature=_text(headers.get(b"x-relay-signature")),
                timestamp=_text(headers.get(b"x-relay-timestamp")),
            )
        except Problem as problem:
            relay.metrics.ingest_problems.labels(problem.code).inc()
            answer = Answer.of_problem(problem)
        except Exception:
            log.exception("unhandled_error", path=logs.clip(scope["path"]), request_id=request_id)
            relay.metrics.ingest_problems.labels("internal_error").inc()
            answer = Answer.of_problem(Problem("internal_error", "The relay failed unexpectedly"))
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", answer.content_type.encode()),
                    (b"content-length", str(len(answer.body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *((name.lower().encode(), value.encode()) for name, value in answer.headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})
        elapsed = time.perf_counter() - started
        relay.metrics.ingest_duration.observe(elapsed)
        if logs.info_enabled():
            log.info(
                "request",
                method="POST",
                path=logs.clip(scope["path"]),
                status=answer.status,
                latency_ms=round(elapsed * 1000, 2),
                request_id=request_id,
                **answer.log_fields,
            )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _request_id(value: bytes | None) -> str:
    if value is not None:
        text = value.decode("latin-1").strip()
        if text and len(text) <= MAX_REQUEST_ID and text.isprintable():
            return text
    return new_id()
