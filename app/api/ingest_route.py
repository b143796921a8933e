"""The ingest hot path: ``POST /v1/events[/{mapping}]`` served below FastAPI's routing.

Adobe sends every event of a site and most are ignored, so ingest cost is what users pay for.
This ASGI layer answers the two ingest routes itself (same handler, same problem documents)
and passes everything else on; ``RelayApp`` puts it in front of FastAPI's stack, and the
FastAPI routes of the same paths remain for OpenAPI.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.events import ingest_request
from app.api.responses import problem_response
from app.problems import Problem

PREFIX = "/v1/events"


class IngestRoute:
    """Answers ingest POSTs directly; any other request goes to the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        rest = path[len(PREFIX) :]
        if rest in ("", "/"):
            mapping = None
        elif rest.startswith("/") and "/" not in rest[1:]:
            mapping = rest[1:]
        else:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await ingest_request(request, mapping)
        except Problem as problem:
            response = problem_response(problem)
        await response(scope, receive, send)
