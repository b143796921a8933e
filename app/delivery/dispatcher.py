"""Background delivery: lease due deliveries, send them within the rate limit, record outcomes.

One loop per destination, so a throttled or failing destination never holds up another. An
outcome the store cannot record is kept and recorded once it can (``outcomes.py``), before
anything more is leased.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from app import logs
from app.delivery.circuit import CLOSED, CircuitBreaker
from app.delivery.outcomes import RELEASE, Outcome, UnrecordedOutcomes
from app.delivery.ratelimit import RateLimiter
from app.delivery.readback import VERIFIED, LeaseLost, Pace, outcome_unknown, read_back
from app.delivery.retry import RetryPolicy
from app.delivery.store import AttemptRecord, Delivery, Store, StoreUnavailable
from app.delivery.waiters import OutcomeWaiters
from app.destinations.base import Delivered, Destination, ReadsBack
from app.metrics import RelayMetrics
from app.problems import Problem
from app.status import SUCCESS_CODE, AttemptOutcome, DeliveryStatus

log = structlog.get_logger("app.delivery")

IDLE_POLL_SECONDS = 1.0
LEASE_AHEAD_SECONDS = 0.5
"""A lease takes as many deliveries as the rate limit lets go in this long (one store write for
all of them), at least one and at most the free send slots."""
CLEANUP_EVERY = 3600.0


def lease_batch(rate_per_minute: float) -> int:
    """How many deliveries to lease at once at this pace (see ``LEASE_AHEAD_SECONDS``)."""
    return max(1, int(rate_per_minute / 60.0 * LEASE_AHEAD_SECONDS))


def release_slots(slots: asyncio.Semaphore, count: int) -> None:
    for _ in range(count):
        slots.release()


@dataclass(frozen=True)
class DispatchSettings:
    """How the dispatcher works (from ``Settings``)."""

    lease_seconds: float = 60.0
    concurrency: int = 16
    shutdown_grace: float = 10.0
    retention: float = 7 * 86_400.0
    circuit_failures: int = 5
    circuit_probe_seconds: float = 30.0


class Dispatcher:
    """Runs one delivery loop per destination that may send (dry-run ones are skipped)."""

    def __init__(
        self,
        store: Store,
        destinations: Mapping[str, Destination],
        limiters: Mapping[str, RateLimiter],
        policy: RetryPolicy,
        waiters: OutcomeWaiters,
        settings: DispatchSettings,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.store = store
        self.destinations = destinations
        self.limiters = limiters
        self.policy = policy
        self.waiters = waiters
        self.settings = settings
        self.metrics = metrics or RelayMetrics()
        self.outcomes = UnrecordedOutcomes(store)
        self._wake = {name: asyncio.Event() for name in destinations}
        self.circuits = {
            name: CircuitBreaker(name, settings.circuit_failures, settings.circuit_probe_seconds)
            for name in destinations
        }
        self._loops: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._stopping = False

    def circuit_states(self) -> dict[str, dict[str, str | float]]:
        """The circuit of each destination that sends (not dry-run): ``state`` and ``since``."""
        return {
            name: circuit.snapshot()
            for name, circuit in self.circuits.items()
            if not self.destinations[name].dry_run
        }

    def start(self) -> None:
        for name, destination in self.destinations.items():
            if not destination.dry_run:
                self._loops.append(asyncio.create_task(self._run(name), name=f"dispatch-{name}"))
        self._loops.append(asyncio.create_task(self._cleanup(), name="store-cleanup"))
        self._loops.append(asyncio.create_task(self.outcomes.run(), name="record-outcomes"))

    def notify(self, destination: str) -> None:
        """New deliveries were stored for a destination: look now instead of at the next poll."""
        event = self._wake.get(destination)
        if event is not None:
            event.set()

    async def stop(self) -> None:
        """Stop leasing; let sends in flight finish within the grace period; give back the rest;
        record what the store could not record before (once more, within the grace period)."""
        self._stopping = True
        deadline = time.monotonic() + self.settings.shutdown_grace
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._sends:
            _, late = await asyncio.wait(set(self._sends), timeout=self.settings.shutdown_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self.outcomes:
            try:
                await asyncio.wait_for(self.outcomes.flush(), max(1.0, deadline - time.monotonic()))
            except (StoreUnavailable, TimeoutError) as exc:
                # their leases run out and they are sent again: at least once, never lost
                log.error("outcomes_lost_at_shutdown", count=len(self.outcomes), error=str(exc))

    async def _run(self, name: str) -> None:
        limiter, circuit = self.limiters[name], self.circuits[name]
        waited = self.metrics.ratelimit_wait.labels(name)
        slots = asyncio.Semaphore(self.settings.concurrency)
        # Lease first, then take the tokens: nothing slow (a store write) comes between a grant
        # and its send, which would spend the slot waiting and keep the request in the limiter's
        # window for longer. A lease is given back if its token takes more than half its time.
        token_wait = self.settings.lease_seconds / 2
        while not self._stopping:
            paused = limiter.paused_until  # a 429's pause: lease nothing until it ends
            if paused:
                await asyncio.sleep(max(0.0, paused - time.monotonic()))
            shut = circuit.wait()  # an open circuit: lease nothing until its next probe
            if shut:
                await asyncio.sleep(min(shut, IDLE_POLL_SECONDS))
                continue
            wanted = circuit.allowed(lease_batch(limiter.current_rate_per_minute))
            taken = await self._take_slots(slots, wanted)
            try:
                if self.outcomes:  # first what is known: a lease could take those back
                    await self.outcomes.flush()
                leased = self.outcomes.take_over(
                    await self.store.lease(name, taken, self.settings.lease_seconds)
                )
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                release_slots(slots, taken)
                log.warning("lease_failed", destination=name, error=str(exc))
                await asyncio.sleep(IDLE_POLL_SECONDS)
                continue
            except Exception:
                release_slots(slots, taken)
                log.exception("lease_failed", destination=name)
                await asyncio.sleep(IDLE_POLL_SECONDS)
                continue
            release_slots(slots, taken - len(leased))
            circuit.leased(len(leased))
            if not leased:
                await self._idle(name)
                continue
            deadline = time.monotonic() + token_wait
            for index, delivery in enumerate(leased):
                if index and circuit.state != CLOSED:  # it opened meanwhile: the rest waits for a probe
                    await self._give_back(leased[index:], slots)
                    break
                asked = time.perf_counter()
                try:
                    await asyncio.wait_for(limiter.acquire(1), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    await self._give_back(leased[index:], slots)
                    break
                except asyncio.CancelledError:
                    await self._give_back(leased[index:], slots)
                    raise
                except Exception:
                    await self._give_back(leased[index:], slots)
                    log.exception("rate_limit_failed", destination=name)
                    await asyncio.sleep(IDLE_POLL_SECONDS)
                    break
                waited.observe(time.perf_counter() - asked)
                task = asyncio.create_task(self._send(name, delivery, slots))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

    @staticmethod
    async def _take_slots(slots: asyncio.Semaphore, wanted: int) -> int:
        """Wait for one free send slot, then take up to ``wanted`` in all of those free now."""
        await slots.acquire()
        taken = 1
        while taken < wanted and not slots.locked():
            await slots.acquire()
            taken += 1
        return taken

    async def _give_back(self, deliveries: list[Delivery], slots: asyncio.Semaphore) -> None:
        """Return leased deliveries that were not sent (due at once, their attempt not counted);
        kept to give back later while the store fails."""
        release_slots(slots, len(deliveries))
        await asyncio.shield(asyncio.gather(*(self.outcomes.record(Outcome(d, RELEASE)) for d in deliveries)))

    async def _idle(self, name: str) -> None:
        wake = self._wake[name]
        try:
            due = await self.store.next_due(name)
        except StoreUnavailable:  # the next lease fails too, and waits; this loop must go on
            due = None
        timeout = IDLE_POLL_SECONDS if due is None else min(IDLE_POLL_SECONDS, max(0.0, due - time.time()))
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)
        wake.clear()

    async def _send(self, name: str, delivery: Delivery, slots: asyncio.Semaphore) -> None:
        """One attempt: send, feed the limiter, record the outcome, log one ``delivery`` line."""
        # each send runs in its own task: bind the ingest request's id for its log lines
        structlog.contextvars.bind_contextvars(request_id=delivery.request_id)
        destination, limiter = self.destinations[name], self.limiters[name]
        attempt = Attempt(name, delivery)
        try:
            try:
                delivered = await self._exchange(destination, limiter, delivery)
            except Problem as problem:
                attempt.took(self.metrics)
                self.circuits[name].record(problem.code)
                upstream = problem.extensions.get("upstream") or {}
                attempt.upstream_status = int(upstream.get("status") or 0) or None
                limiter.on_response(
                    status=attempt.upstream_status or 0,
                    retry_after=problem.retry_after,
                    limit_per_minute=problem.rate_limit,
                    remaining=problem.rate_remaining,
                )
                await self._failed(delivery, problem, attempt)
                return
            attempt.took(self.metrics)
            self.circuits[name].record(None)
            attempt.upstream_status = delivered.status
            limiter.on_response(
                status=delivered.status,
                retry_after=None,
                limit_per_minute=delivered.rate_limit,
                remaining=delivered.rate_remaining,
            )
            code = VERIFIED if delivered.verified else SUCCESS_CODE
            noted = self._noted(attempt, AttemptOutcome.DELIVERED, code)
            outcome = Outcome(
                delivery,
                DeliveryStatus.DELIVERED,
                response=delivered.response,
                then=noted,
                attempt=attempt.as_record(AttemptOutcome.DELIVERED, code),
            )
            await self.outcomes.record(outcome)
        except LeaseLost:
            log.info(
                "attempt_abandoned",
                reason="erased or leased again while it was looked for",
                **attempt.fields(),
            )
        except asyncio.CancelledError:
            await asyncio.shield(self.outcomes.record(Outcome(delivery, RELEASE)))
            raise
        except Exception:
            log.exception("delivery_crashed", **attempt.fields())
            due = time.time() + self.policy.backoff(delivery.attempts)
            # it may have crashed after the request left: the next attempt looks first
            crashed = {
                "code": "internal_error",
                "detail": "the relay failed while sending",
                "outcome_unknown": True,
            }
            noted = self._noted(attempt, AttemptOutcome.RETRY, "internal_error")
            record = attempt.as_record(AttemptOutcome.RETRY, "internal_error")
            await self.outcomes.record(
                Outcome(
                    delivery, DeliveryStatus.PENDING, due_at=due, problem=crashed, then=noted, attempt=record
                )
            )
        finally:
            slots.release()

    async def _exchange(
        self, destination: Destination, limiter: RateLimiter, delivery: Delivery
    ) -> Delivered:
        """Send the delivery, or find it already at the destination (``readback``)."""
        pace = Pace(limiter, self.settings.lease_seconds / 2)
        try:
            if outcome_unknown(delivery) and isinstance(destination, ReadsBack):
                found = await read_back(destination, delivery, pace, self.metrics, destination.name)
                if found is not None:
                    return found
                await pace.take()
                # the look and the slot took a while: an erasure may have deleted it meanwhile,
                # or its lease run out and another replica taken it
                if not await self._still_leased(delivery):
                    raise LeaseLost(delivery.id)
            return await destination.send(delivery.request)
        finally:  # it has arrived if it ever will: from now it counts in the 60 s window as answered
            pace.done()

    async def _still_leased(self, delivery: Delivery) -> bool:
        """Whether this attempt still holds the delivery's lease (True when the store cannot
        tell: at least once stays the floor)."""
        try:
            current = await self.store.get(delivery.id)
        except StoreUnavailable:
            return True
        return (
            current is not None
            and current.status == DeliveryStatus.IN_FLIGHT
            and current.lease_token == delivery.lease_token
        )

    async def _failed(self, delivery: Delivery, problem: Problem, attempt: Attempt) -> None:
        problem.extensions.update({"mapping": delivery.mapping, "event_id": delivery.event_id})
        if outcome_unknown(delivery):  # until delivered, every attempt may find the first one there
            problem.extensions["outcome_unknown"] = True
        doc = problem.to_dict()
        now = time.time()
        due = self.policy.next_attempt(problem, delivery.attempts, delivery.created_at, now)
        if due is None:
            noted = self._noted(attempt, AttemptOutcome.DEAD, problem.code, detail=problem.detail)
            record = attempt.as_record(AttemptOutcome.DEAD, problem.code)
            await self.outcomes.record(
                Outcome(delivery, DeliveryStatus.DEAD, problem=doc, then=noted, attempt=record)
            )
            return
        noted = self._noted(attempt, AttemptOutcome.RETRY, problem.code, retry_in=round(due - now, 3))
        record = attempt.as_record(AttemptOutcome.RETRY, problem.code)
        await self.outcomes.record(
            Outcome(delivery, DeliveryStatus.PENDING, due_at=due, problem=doc, then=noted, attempt=record)
        )

    def _noted(self, attempt: Attempt, outcome: str, code: str, **extra: Any) -> Callable[[bool], None]:
        """What to do once an attempt's outcome is recorded (perhaps after a store outage): if
        the lease was still held, count and log the attempt, and tell waiters of a final one."""

        def note(held: bool) -> None:
            if not held:
                return
            attempt.record(self.metrics, outcome, code, **extra)
            delivery = attempt.delivery
            if outcome == AttemptOutcome.DELIVERED:
                self.metrics.delivered(attempt.destination, delivery.mapping)
            elif outcome == AttemptOutcome.DEAD:
                self.metrics.dead_letters.labels(attempt.destination, delivery.mapping, code).inc()
            if outcome in (AttemptOutcome.DELIVERED, AttemptOutcome.DEAD):
                self.waiters.finished(delivery.id)

        return note

    async def _cleanup(self) -> None:
        while True:
            try:
                removed = await self.store.cleanup(time.time() - self.settings.retention)
                if removed:
                    log.info("store_cleanup", removed=removed)
            except Exception:
                log.exception("store_cleanup_failed")
            await asyncio.sleep(CLEANUP_EVERY)


class Attempt:
    """What one send attempt's log line and metrics say (never the body)."""

    def __init__(self, destination: str, delivery: Delivery) -> None:
        self.destination = destination
        self.delivery = delivery
        self.at = time.time()
        self.started = time.perf_counter()
        self.seconds: float | None = None
        self.upstream_status: int | None = None

    def took(self, metrics: RelayMetrics) -> None:
        """The destination answered (or failed to): stop the clock and observe it."""
        self.seconds = time.perf_counter() - self.started
        metrics.upstream_duration.labels(self.destination).observe(self.seconds)

    def as_record(self, outcome: str, code: str) -> AttemptRecord:
        """The attempt as the delivery's history keeps it."""
        seconds = self.seconds if self.seconds is not None else time.perf_counter() - self.started
        return AttemptRecord(self.at, outcome, code, self.upstream_status, round(seconds * 1000, 2))

    def fields(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "mapping": self.delivery.mapping,
            # taken from the event, of any length
            "event_id": None if self.delivery.event_id is None else logs.clip(self.delivery.event_id),
            "delivery_id": self.delivery.id,
            "attempt": self.delivery.attempts,
        }

    def record(self, metrics: RelayMetrics, outcome: str, code: str, **extra: Any) -> None:
        """Count the attempt and log its one line (a warning when it ends in the dead letters)."""
        metrics.delivery_attempts.labels(self.destination, outcome, code).inc()
        seconds = self.seconds if self.seconds is not None else time.perf_counter() - self.started
        emit = log.warning if outcome == AttemptOutcome.DEAD else log.info
        emit(
            "delivery",
            outcome=outcome,
            code=code,
            upstream_status=self.upstream_status,
            latency_ms=round(seconds * 1000, 2),
            **self.fields(),
            **extra,
        )
