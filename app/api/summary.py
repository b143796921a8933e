"""``GET /v1/deliveries/summary`` (admin): what the playground's "Deliveries" view draws.

Per destination: the backlog and its oldest age (the store: shared by every replica), the
deliveries of the last minutes and the pace the rate limiter allows (this replica's counts and
limiter: ``app/delivery/delivered_minutes.py``), the circuit, and the dead letters of the last
hour (the store). Registered before ``GET /v1/deliveries/{id}``, which would take "summary".
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.auth import admin_relay
from app.api.responses import json_response
from app.delivery.store import DeadLetterFilter, StoreUnavailable
from app.problems import Problem

router = APIRouter()

DEAD_WINDOW_SECONDS = 3600
DEAD_READ_LIMIT = 1000  # dead letters read to count the last hour's; more shows as "at least"


@router.get("/v1/deliveries/summary", summary="Backlog, pace, circuit and recent dead letters (admin)")
async def deliveries_summary(request: Request) -> Response:
    """Per destination: pending and the oldest pending age, delivered per minute (this replica,
    oldest minute first) against the rate limit, the circuit, and the last hour's dead letters."""
    relay = admin_relay(request)
    now = time.time()
    try:
        stats = await relay.store.stats()
        recent = await relay.store.dead_letters(
            DeadLetterFilter(since=now - DEAD_WINDOW_SECONDS, limit=DEAD_READ_LIMIT)
        )
    except StoreUnavailable as exc:
        raise Problem("store_unavailable", str(exc)) from exc
    dead_by_destination: dict[str, Counter[str]] = {}
    for letter in recent:
        code = str((letter.last_problem or {}).get("code", "unknown"))
        dead_by_destination.setdefault(letter.destination, Counter())[code] += 1
    circuits = relay.dispatcher.circuit_states()
    minutes = relay.metrics.delivered_minutes
    destinations: list[dict[str, Any]] = []
    # a destination no longer configured may still have a backlog or dead letters
    for name in sorted({*relay.destinations, *stats.pending, *dead_by_destination}):
        destination = relay.destinations.get(name)
        limiter = relay.dispatcher.limiters.get(name)
        oldest = stats.oldest_pending_at.get(name, now)
        dead = dead_by_destination.get(name, Counter())
        destinations.append(
            {
                "name": name,
                "dry_run": destination.dry_run if destination is not None else False,
                "pending": stats.pending.get(name, 0),
                "oldest_pending_age_seconds": round(max(0.0, now - oldest), 3),
                "delivered_per_minute": minutes.series(name),
                "limit_per_minute": None if limiter is None else round(limiter.current_rate_per_minute, 3),
                "circuit": circuits.get(name),
                "dead_last_hour": sum(dead.values()),
                "dead_last_hour_by_code": dict(sorted(dead.items())),
            }
        )
    return json_response(
        {
            "generated_at": now,
            "minutes": minutes.minutes,
            "dead_window_seconds": DEAD_WINDOW_SECONDS,
            "dead_last_hour_capped": len(recent) >= DEAD_READ_LIMIT,
            "dead_letters": stats.dead,
            "destinations": destinations,
        }
    )
