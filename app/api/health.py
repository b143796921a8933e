"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.responses import json_response, problem_response
from app.delivery.store import StoreUnavailable
from app.problems import Problem
from app.relay import Relay

router = APIRouter()


@router.get("/healthz", summary="Alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Mappings loaded and store reachable")
async def readyz(request: Request) -> Response:
    relay: Relay = request.app.state.relay
    try:
        stats = await relay.store.stats()
    except StoreUnavailable as exc:
        return problem_response(Problem("store_unavailable", str(exc)))
    return json_response(
        {
            "status": "ready",
            "mappings": [m.name for m in relay.mappings.mappings],
            "dry_run": {name: d.dry_run for name, d in relay.destinations.items()},
            "pending": stats.pending,
            "dead_letters": stats.dead,
            # Shown, never a reason to be unready: with a destination down the relay still
            # accepts and stores events, which is what the load balancer routes here for.
            "circuits": relay.dispatcher.circuit_states(),
        }
    )
