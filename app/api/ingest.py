"""Ingest without a web framework: from request parts to an answer (status, headers, bytes).

Both the raw ASGI route (``ingest_route.py``, what serves traffic) and the FastAPI route
declarations (for OpenAPI) call ``handle_ingest``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson

from app import logs
from app.api.auth import authenticate_headers
from app.delivery.store import DEAD, DRY_RUN, DUPLICATE, QUEUED
from app.metrics import MATCHED, STORED, RelayMetrics
from app.payloads import parse_payload
from app.pipeline import IGNORED, PLANNED, REJECTED, Outcome, accept, plan_in_slices, settle
from app.problems import PROBLEM_CONTENT_TYPE, Problem
from app.relay import Relay

MAX_WAIT = 30.0
JSON = "application/json"
BodyReader = Callable[[], Awaitable[bytes]]


@dataclass
class Answer:
    """A response as plain parts, plus what the request's log line should say."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    log_fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_problem(cls, problem: Problem, **extra: Any) -> Answer:
        doc = problem.to_dict()
        doc.update(extra)
        return cls(problem.status, orjson.dumps(doc), PROBLEM_CONTENT_TYPE, problem.headers())


async def handle_ingest(
    relay: Relay,
    read_body: BodyReader,
    *,
    path: str,
    mapping_name: str | None,
    authorization: str | None,
    query_string: bytes,
    prefer: str | None,
    request_id: str | None,
    signature: str | None = None,
    timestamp: str | None = None,
) -> Answer:
    """Authenticate (token or signature), parse, plan, store, optionally wait; raises
    ``Problem`` for request errors.

    The body is read (``read_body``) only once the headers have let the request in: a caller
    without credentials is answered at once, whatever body it promised. ``path`` is the
    request's path as sent, which a signature covers."""
    settings, metrics = relay.settings, relay.metrics
    # one mapping set for the whole request, even if a reload swaps in another meanwhile
    mappings = relay.mappings
    signed = authenticate_headers(
        authorization,
        signature=signature,
        timestamp=timestamp,
        tokens=settings.relay_ingest_tokens,
        verifier=relay.signatures,
        allow_open=settings.relay_allow_unauthenticated,
    )
    body = await read_body()
    if signed:
        relay.signatures.verify(signature, timestamp, body, method="POST", path=path)
    only = None
    if mapping_name is not None:
        only = mappings.get(mapping_name)
        if only is None:
            raise Problem("mapping_not_found", f"No mapping named {mapping_name!r}")
    wait = requested_wait(query_string, prefer)
    parsed = parse_payload(body, relay.limits)
    planned = await plan_in_slices(
        parsed.events, mappings, relay.destinations, only=only, observe_render=metrics.observe_render
    )
    metrics.received(parsed.shape, len(parsed.events))
    _count_plan(metrics, planned)
    outcomes = await accept(
        planned,
        relay.store,
        relay.destinations,
        request_id=request_id,
        max_pending=settings.relay_max_pending,
        idempotency_ttl=settings.relay_idempotency_ttl,
    )
    _count_accepted(metrics, outcomes)
    queued = [o for o in outcomes if o.status == QUEUED and o.delivery_id]
    for destination in {str(o.destination) for o in queued}:
        relay.dispatcher.notify(destination)
    if wait and queued:
        finished = await relay.waiters.wait(relay.store, [str(o.delivery_id) for o in queued], wait)
        outcomes = settle(outcomes, finished)
    answer = ingest_answer(outcomes, request_id)
    if logs.info_enabled():  # the request's log line is the only reader
        counts = _count(outcomes)
        answer.log_fields = {"shape": parsed.shape, "events": len(parsed.events), "outcomes": counts}
    if wait is not None:
        answer.headers["Preference-Applied"] = f"wait={wait:g}"
    return answer


def ingest_answer(outcomes: list[Outcome], request_id: str | None) -> Answer:
    """202 when something is still queued and nothing failed, 200 when all is final and
    nothing failed; the first problem (with all results) when everything that matched
    failed (rejected or dead); 207 Multi-Status when results are mixed."""
    results = [outcome.to_dict() for outcome in outcomes]
    failed = [o.problem for o in outcomes if o.status in (REJECTED, DEAD) and o.problem is not None]
    if not failed:
        status = 202 if any(o.status == QUEUED for o in outcomes) else 200
        return Answer(status, orjson.dumps({"request_id": request_id, "results": results}))
    if len(failed) == sum(o.status != IGNORED for o in outcomes):
        return Answer.of_problem(failed[0], request_id=request_id, results=results)
    return Answer(207, orjson.dumps({"request_id": request_id, "results": results}))


def requested_wait(query_string: bytes, prefer: str | None) -> float | None:
    """Seconds to wait for outcomes from ``?wait=N`` or ``Prefer: wait=N`` (at most 30)."""
    raw = None
    if query_string:
        values = parse_qs(query_string.decode("latin-1")).get("wait")
        raw = values[-1] if values else None
    if raw is None and prefer:
        for preference in prefer.split(","):
            name, _, value = preference.strip().partition("=")
            if name.strip().lower() == "wait":
                raw = value.strip().strip('"')
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise Problem("invalid_request", f"wait must be a number of seconds, got {raw!r}") from None
    if not 0 <= seconds < float("inf"):
        raise Problem("invalid_request", f"wait must be between 0 and {MAX_WAIT:g} seconds")
    return min(seconds, MAX_WAIT)


def _count(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def _count_plan(metrics: RelayMetrics, outcomes: list[Outcome]) -> None:
    """Each event once (matched, ignored or rejected), and each mapping's result for it."""
    ignored = 0
    matched: dict[int, bool] = {}  # event index -> did at least one mapping plan a delivery
    for outcome in outcomes:
        if outcome.status == IGNORED:
            ignored += 1
            continue
        planned = outcome.status == PLANNED
        code = MATCHED if planned else outcome.problem.code if outcome.problem else REJECTED
        metrics.mapping_result(str(outcome.mapping), code)
        matched[outcome.event_index] = planned or matched.get(outcome.event_index, False)
    hits = sum(matched.values())
    metrics.routed(hits, ignored, len(matched) - hits)


_ACCEPTED = {QUEUED: STORED, DUPLICATE: DUPLICATE, DRY_RUN: DRY_RUN}


def _count_accepted(metrics: RelayMetrics, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        result = _ACCEPTED.get(outcome.status)
        if result is not None:
            metrics.accepted(str(outcome.destination), str(outcome.mapping), result)
