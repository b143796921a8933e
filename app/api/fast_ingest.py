"""A shortcut to the ingest handler past FastAPI's routing: a fast path behind a seam.

Adobe sends every event of a site and most are ignored, so ingest's fixed cost is what users
pay for. This middleware hands ``POST /v1/events[/{mapping}]`` straight to the same handler
FastAPI's route calls (``events.answer_ingest``), skipping the router, dependency solving and
the framework's exception layers; problems are answered by the same function the app's
exception handler uses. Everything else, and ingest too once this file and its one
``add_middleware`` line are deleted, goes through FastAPI unchanged. Its same-run A/B, which
it must keep winning to stay: ``docs/performance.md``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.events import answer_ingest

PREFIX = "/v1/events"


class IngestShortcut:
    """Answers ingest POSTs with ``answer_ingest``; any other request goes to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mapping = _ingest_mapping(scope)
        if mapping is None:
            await self.app(scope, receive, send)
            return
        response = await answer_ingest(Request(scope, receive), mapping_name=mapping or None)
        await response(scope, receive, send)


def _ingest_mapping(scope: Scope) -> str | None:
    """``""`` for ``POST /v1/events``, the name for ``POST /v1/events/{name}``, else None."""
    if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(PREFIX):
        return None
    rest: str = scope["path"][len(PREFIX) :]
    if rest == "":
        return ""
    if rest.startswith("/") and len(rest) > 1 and "/" not in rest[1:]:
        return rest[1:]
    return None  # as FastAPI's routes: `/v1/events/` is redirected, deeper paths are not found
