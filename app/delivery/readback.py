"""Effectively-once delivery: before sending again a delivery whose last outcome was unknown,
look for it at the destination.

An attempt's outcome is unknown when the request may have been stored although no answer said
so: a read timeout, a connection lost mid-exchange, a 5xx (``outcome_unknown`` in the problem,
set by ``app.destinations.upstream`` and ``zendesk``). The mark stays on the delivery until it
is delivered, so every later attempt looks first. Finding the event records the delivery as
``delivered`` (verified) and nothing is sent; not finding it sends it; a read-back that fails
sends it too: at least once stays the floor. Every read takes a rate-limit slot like a send.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from app.delivery.ratelimit import RateLimiter
from app.delivery.store import Delivery
from app.destinations.base import Delivered, OutboundRequest, ReadsBack
from app.destinations.zendesk_read import find_event
from app.metrics import RelayMetrics
from app.problems import Problem

log = structlog.get_logger("app.delivery")

VERIFIED, RESENT, FAILED = "verified", "resent", "failed"


class LeaseLost(Exception):
    """The delivery was erased, or leased again elsewhere, while this attempt looked for it:
    the attempt must not send (its outcome could not be recorded, and the erasure is final)."""


def outcome_unknown(delivery: Delivery) -> bool:
    """Whether an earlier attempt may have reached the destination without an answer."""
    return bool(delivery.last_problem and delivery.last_problem.get("outcome_unknown"))


class Pace:
    """The rate-limit slots of one attempt: it starts holding the slot the dispatcher took for
    it; every further request (another page, the send after a read-back) takes its own."""

    def __init__(self, limiter: RateLimiter, wait: float, *, held: bool = True) -> None:
        self.limiter = limiter
        self.wait = wait
        self.held = held

    async def take(self) -> None:
        if self.held:
            return
        try:
            await asyncio.wait_for(self.limiter.acquire(1), self.wait)
        except TimeoutError:
            raise Problem("rate_limited", "no rate-limit slot came in time", outcome_unknown=True) from None
        self.held = True

    def done(self) -> None:
        """The request was answered (or failed): it counts in the limiter's window as finished."""
        if self.held:
            self.limiter.finished()
            self.held = False

    def answered(self, answer: Delivered | Problem) -> None:
        """Feed the limiter what an answer said of the rate limit."""
        if isinstance(answer, Problem):
            upstream = answer.extensions.get("upstream") or {}
            status, retry_after = int(upstream.get("status") or 0), answer.retry_after
        else:
            status, retry_after = answer.status, None
        self.limiter.on_response(
            status=status,
            retry_after=retry_after,
            limit_per_minute=answer.rate_limit,
            remaining=answer.rate_remaining,
        )


async def paced_read(destination: ReadsBack, pace: Pace, method: str, path: str) -> Delivered:
    """One read or delete within the rate limit: a slot taken first, given back when answered
    (or cancelled), the answer fed to the limiter. A 429 is left to the caller to feed, once:
    the dispatcher feeds it as the attempt's failure."""
    await pace.take()
    try:
        answer = await destination.read(method, path)
    except BaseException as exc:
        pace.done()
        if isinstance(exc, Problem) and exc.code != "rate_limited":
            pace.answered(exc)
        raise
    pace.done()
    pace.answered(answer)
    return answer


async def look(destination: ReadsBack, request: OutboundRequest, pace: Pace) -> dict[str, Any] | None:
    """The event of a sent request as the destination holds it, None when it holds none (a 404
    included: no such profile). Raises ``Problem`` when a read fails and ``LookupError`` when
    the request cannot be looked for or the pages run out."""
    scope = destination.read_scope(request)
    if scope is None:
        raise LookupError("the request names no event and profile to look for")

    async def get(path: str) -> Any:
        return (await paced_read(destination, pace, "GET", path)).response

    try:
        return await find_event(scope, get)
    except Problem as problem:
        if problem.code == "destination_not_found":
            return None
        raise


async def read_back(
    destination: ReadsBack, delivery: Delivery, pace: Pace, metrics: RelayMetrics, name: str
) -> Delivered | None:
    """``Delivered`` (verified) when the destination holds the delivery's event, None when it
    must be sent. A 429 on the read ends the attempt (``rate_limited``, still unknown)."""
    counted = metrics.readbacks
    try:
        found = await look(destination, delivery.request, pace)
    except Problem as problem:
        if problem.code == "rate_limited":
            problem.extensions["outcome_unknown"] = True
            raise
        counted.labels(name, FAILED).inc()
        log.warning("read_back_failed", destination=name, delivery_id=delivery.id, code=problem.code)
        return None
    except LookupError as exc:
        counted.labels(name, FAILED).inc()
        log.warning("read_back_failed", destination=name, delivery_id=delivery.id, error=str(exc))
        return None
    if found is None:
        counted.labels(name, RESENT).inc()
        return None
    counted.labels(name, VERIFIED).inc()
    response: dict[str, Any] = {"verified": True}
    if found.get("id") is not None:
        response["zendesk_event_id"] = str(found["id"])
    return Delivered(status=200, response=response, verified=True)
