"""``GET /metrics``: the Prometheus exposition of the relay's metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.relay import Relay

router = APIRouter()

METRICS_OPENAPI = {
    "responses": {
        "200": {
            "description": "Prometheus text exposition (OpenMetrics when the scraper asks for it)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
}


@router.get("/metrics", summary="Prometheus metrics", openapi_extra=METRICS_OPENAPI)
async def metrics(request: Request) -> Response:
    """Counters, histograms and gauges; the store's depth is read at most every few seconds."""
    relay: Relay = request.app.state.relay
    await relay.metrics.refresh_store(relay.store, relay.destinations, relay.dispatcher.limiters)
    relay.metrics.show_circuits(relay.dispatcher.circuit_states())
    relay.metrics.show_store_writable(relay.store.write_health.failure is None)
    body, content_type = relay.metrics.exposition(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
