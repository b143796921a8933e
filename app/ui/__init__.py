"""The rule playground: a static page at ``/ui`` that uses only the public API."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

# Everything the page loads comes from the relay itself: it works offline, and nothing
# injected into it could load or send anywhere else.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def mount_ui(app: FastAPI) -> None:
    """Serve the page at ``/ui`` and its scripts and styles under ``/ui/static/``."""
    page = files(__name__).joinpath("static", "index.html").read_bytes()

    async def index(_request: Request) -> Response:
        return Response(page, headers=PAGE_HEADERS, media_type="text/html; charset=utf-8")

    async def to_index(_request: Request) -> Response:
        return RedirectResponse("/ui", status_code=308)

    app.add_route("/ui", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route("/ui/", to_index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/ui/static", StaticFiles(packages=[(__name__, "static")]), name="ui-static")
