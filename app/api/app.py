"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.api import deliveries, events, health, mappings, people, samples, summary
from app.api import metrics as metrics_route
from app.api.fast_ingest import IngestShortcut
from app.api.inbound import InboundGuard
from app.api.middleware import RequestContextMiddleware
from app.api.openapi import complete_openapi
from app.api.responses import problem_response
from app.apidocs import mount_api_docs
from app.problems import Problem
from app.relay import Relay
from app.settings import Settings
from app.ui import mount_ui

log = structlog.get_logger("app")
GC_THRESHOLD = 20_000  # allocations between young-generation collections (Python's default: 700)

HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              413: "payload_too_large"}  # fmt: skip


def create_app(settings: Settings | None = None, relay: Relay | None = None) -> FastAPI:
    """Build the app; raises ``ConfigError`` or ``MappingLoadError`` when it cannot serve."""
    relay = relay or Relay.from_settings(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await relay.start()
        _log_start(relay)
        # Everything built so far lives as long as the process: kept out of the cyclic
        # collector, and the young generation collected every 20,000 allocations instead of
        # 700. Matched events grow the heap (the live idempotency keys); without these the
        # collector's passes over it cost 1.26x in throughput and 3.3x in p99 (A/B in
        # docs/performance.md). Cyclic garbage is rare and still reaches the threshold.
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, 20, 20)
        try:
            yield
        finally:
            await relay.aclose()
            log.info("stopped")

    app = FastAPI(
        title="aep-relay",
        version="0.1.0",
        description="Adobe Experience Platform event forwarding -> Zendesk events.",
        lifespan=lifespan,
        # FastAPI's pages load Swagger UI and ReDoc from a CDN: /docs is served by mount_api_docs
        # from the installed package instead, and ReDoc (whose styles are injected inline,
        # which the page's CSP refuses) not at all
        docs_url=None,
        redoc_url=None,
        # no OpenTelemetry here; its per-request checks cost more than a whole ignored event
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.relay = relay
    app.include_router(events.router)
    app.include_router(summary.router)  # before deliveries: /v1/deliveries/{id} would take it
    app.include_router(deliveries.router)
    app.include_router(people.router)
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    app.include_router(mappings.router)
    app.include_router(samples.router)
    mount_ui(app)
    mount_api_docs(app)
    app.add_exception_handler(Problem, _on_problem)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _on_http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    # outermost last: the shortcut runs inside the request context and the inbound guard
    app.add_middleware(IngestShortcut)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(InboundGuard, body_timeout=relay.settings.relay_body_timeout)
    fastapi_openapi = app.openapi
    app.openapi = lambda: complete_openapi(fastapi_openapi())  # type: ignore[method-assign]
    return app


def _log_start(relay: Relay) -> None:
    settings = relay.settings
    if not settings.relay_ingest_tokens and not settings.relay_signing_secrets:
        log.warning("running_open", detail="RELAY_ALLOW_UNAUTHENTICATED: anyone can post events")
    for old, new in settings.deprecated_in_use():
        log.warning("deprecated_setting", setting=old, use=new, detail=f"{old} is deprecated: set {new}")
    for name, destination in relay.destinations.items():
        if destination.dry_run:
            log.warning("dry_run", destination=name, detail="nothing will be sent to this destination")
    log.info("started", mappings=[m.name for m in relay.mappings.mappings])


async def _on_problem(_request: Request, problem: Problem) -> Response:
    return problem_response(problem)


async def _on_http_exception(_request: Request, exc: HTTPException) -> Response:
    code = HTTP_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal_error")
    return problem_response(Problem(code, str(exc.detail)))


async def _on_validation_error(_request: Request, exc: RequestValidationError) -> Response:
    errors = [
        {"path": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
        for e in exc.errors()
    ]
    return problem_response(Problem("invalid_request", "Request parameters are invalid", errors=errors))
