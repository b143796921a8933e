"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.responses import json_response, problem_response
from app.delivery.store import Store, StoreUnavailable
from app.problems import Problem
from app.relay import Relay

router = APIRouter()

PROBE_EVERY_SECONDS = 1.0  # while the store fails: a probe write at most this often
PROBE_TIMEOUT_SECONDS = 1.0  # readiness answers within about this, whatever the store does


@router.get("/healthz", summary="Alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Mappings loaded and store reachable and writable")
async def readyz(request: Request) -> Response:
    relay: Relay = request.app.state.relay
    failing = await store_failure(relay.store)
    if failing is not None:
        return failing
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


async def store_failure(store: Store) -> Response | None:
    """503 ``store_unavailable`` while the store's writes fail, saying why; None when they work.

    While failing, a probe write (one a second at most) lets readiness see the store recover
    even when nothing else writes: a replica out of its Service gets no ingest to write."""
    health = store.write_health
    if health.failure is not None and health.probe_due(PROBE_EVERY_SECONDS):
        with contextlib.suppress(StoreUnavailable, TimeoutError):  # noted in write_health
            await asyncio.wait_for(store.probe(), PROBE_TIMEOUT_SECONDS)
    failure = health.failure
    if failure is None:
        return None
    state = {"failed_at": failure.at, "reason": failure.reason, "last_success_at": health.last_success_at}
    return problem_response(Problem("store_unavailable", health.describe(), store=state))
