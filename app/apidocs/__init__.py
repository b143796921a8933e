"""Swagger UI at ``/docs``, from files installed with the relay, under the playground's CSP."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from app.ui import PAGE_HEADERS

# Ships Swagger UI's built files (swagger-ui-bundle.js, swagger-ui.css); pinned in pyproject.toml,
# so the page's scripts change only with a reviewed upgrade, never with a CDN's "latest".
SWAGGER_UI_PACKAGE = "fastapi_offline"


def mount_api_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs``; its files and our start-up script under ``/docs/static/``.

    The app is built with ``docs_url=None`` and ``redoc_url=None``: FastAPI's own page loads
    Swagger UI from a CDN and starts it with an inline script, which this Content-Security-Policy
    refuses, so the page is a static file here and the start-up script a file beside it.
    """
    page = files(__name__).joinpath("static", "docs.html").read_bytes()

    async def docs(_request: Request) -> Response:
        return Response(page, headers=PAGE_HEADERS, media_type="text/html; charset=utf-8")

    app.add_route("/docs", docs, methods=["GET", "HEAD"], include_in_schema=False)
    assets = StaticFiles(packages=[(__name__, "static"), (SWAGGER_UI_PACKAGE, "static")])
    app.mount("/docs/static", assets, name="docs-static")
