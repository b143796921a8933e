"""The relay's Prometheus metrics: one registry per relay, label children bound ahead of time.

Labels are bounded: shape, mapping, destination, outcome, result and problem code, never an
event id, a delivery id, a request id or anything taken from an event. What every metric
means and the alert it supports: ``docs/operations.md`` (Metrics and alerts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from app.delivery.circuit import STATES as CIRCUIT_STATES
from app.delivery.delivered_minutes import DeliveredMinutes
from app.delivery.store import Store
from app.status import Routing

log = structlog.get_logger("app.metrics")

SHAPES = ("single", "wrapped", "batch", "bare")

STORE_CACHE_SECONDS = 5.0
INGEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RENDER_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
UPSTREAM_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Rate(Protocol):
    @property
    def current_rate_per_minute(self) -> float: ...


class RelayMetrics:
    """Every metric of one relay, in its own registry (so several relays can live in one test)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.events_received = Counter(
            "aep_relay_events_received", "Events parsed out of ingest requests, by payload shape",
            ["shape"], registry=reg,
        )  # fmt: skip
        self.events_routed = Counter(
            "aep_relay_events_routed",
            "Received events by result: matched (at least one mapping planned a delivery), "
            "ignored (no mapping applied) or rejected (every mapping that applied failed)",
            ["result"], registry=reg,
        )  # fmt: skip
        self.mapping_events = Counter(
            "aep_relay_mapping_events",
            "Events a mapping applied to, by result: matched, or the problem code that rejected it",
            ["mapping", "result"], registry=reg,
        )  # fmt: skip
        self.mapping_render = Histogram(
            "aep_relay_mapping_render_duration_seconds", "Time to render one mapping's body for one event",
            ["mapping"], buckets=RENDER_BUCKETS, registry=reg,
        )  # fmt: skip
        self.ingest_duration = Histogram(
            "aep_relay_ingest_duration_seconds",
            "Ingest requests from first byte read to answer sent (POST /v1/events)",
            buckets=INGEST_BUCKETS, registry=reg,
        )  # fmt: skip
        self.ingest_problems = Counter(
            "aep_relay_ingest_problems", "Ingest requests refused as a whole, by problem code",
            ["code"], registry=reg,
        )  # fmt: skip
        self.deliveries_accepted = Counter(
            "aep_relay_deliveries_accepted",
            "Matched deliveries by what the store did: stored (to send), duplicate, dry_run (kept only)",
            ["destination", "mapping", "result"], registry=reg,
        )  # fmt: skip
        self.delivery_attempts = Counter(
            "aep_relay_delivery_attempts",
            "Send attempts by outcome (delivered, retry, dead) and code (ok or the problem code)",
            ["destination", "outcome", "code"], registry=reg,
        )  # fmt: skip
        self.readbacks = Counter(
            "aep_relay_readbacks",
            "Read-backs before resending a delivery whose outcome was unknown: verified (found, "
            "not resent), resent (not found), failed (the read failed or could not tell; resent)",
            ["destination", "result"], registry=reg,
        )  # fmt: skip
        self.deliveries_delivered = Counter(
            "aep_relay_deliveries_delivered", "Deliveries the destination accepted",
            ["destination", "mapping"], registry=reg,
        )  # fmt: skip
        self.dead_letters = Counter(
            "aep_relay_dead_letters", "Deliveries moved to the dead letters, by problem code",
            ["destination", "mapping", "code"], registry=reg,
        )  # fmt: skip
        self.dead_letters_replayed = Counter(
            "aep_relay_dead_letters_replayed", "Dead letters put back to pending through the admin API",
            registry=reg,
        )  # fmt: skip
        self.upstream_duration = Histogram(
            "aep_relay_upstream_duration_seconds",
            "One send to a destination, from request to classified answer (token refreshes included)",
            ["destination"], buckets=UPSTREAM_BUCKETS, registry=reg,
        )  # fmt: skip
        self.ratelimit_wait = Histogram(
            "aep_relay_ratelimit_wait_seconds", "Time a send waited for its destination's rate limiter",
            ["destination"], buckets=WAIT_BUCKETS, registry=reg,
        )  # fmt: skip
        self.ratelimit_rate = Gauge(
            "aep_relay_ratelimit_rate_per_minute", "The pace the rate limiter allows right now",
            ["destination"], registry=reg,
        )  # fmt: skip
        self.circuit_state = Gauge(
            "aep_relay_circuit_state",
            "1 for each destination's circuit breaker state (closed, open, half_open), 0 for the others",
            ["destination", "state"], registry=reg,
        )  # fmt: skip
        self.store_pending = Gauge(
            "aep_relay_store_pending_deliveries", "Deliveries waiting or in flight, per destination",
            ["destination"], registry=reg,
        )  # fmt: skip
        self.store_oldest_age = Gauge(
            "aep_relay_store_oldest_pending_age_seconds",
            "Age of the oldest waiting delivery per destination (0 when none)",
            ["destination"], registry=reg,
        )  # fmt: skip
        self.store_dead = Gauge("aep_relay_store_dead_letters", "Dead letters in the store", registry=reg)
        self.store_stats_age = Gauge(
            "aep_relay_store_stats_age_seconds", "Age of the store figures above (cached between scrapes)",
            registry=reg,
        )  # fmt: skip
        self.store_writable = Gauge(
            "aep_relay_store_writable",
            "1 while the store's writes work, 0 from a failed write until a later one succeeds "
            "(/readyz answers 503 meanwhile)", registry=reg,
        )  # fmt: skip
        self.mapping_reloads = Counter(
            "aep_relay_mapping_reloads", "Mapping reloads (SIGHUP or folder change) by result",
            ["result"], registry=reg,
        )  # fmt: skip
        self.mapping_reload_ok = Gauge(
            "aep_relay_mapping_last_reload_successful",
            "1 when the last mapping reload was applied, 0 when it was refused", registry=reg,
        )  # fmt: skip
        self.mapping_reload_time = Gauge(
            "aep_relay_mapping_last_reload_success_timestamp_seconds",
            "When the mapping set being served was loaded (epoch seconds)", registry=reg,
        )  # fmt: skip
        self.mappings_loaded = Gauge("aep_relay_mappings_loaded", "Mappings being served", registry=reg)
        self.signatures_accepted = Counter(
            "aep_relay_signatures_accepted",
            "Signed requests let in, by what was signed: method_path, or body_only (the older "
            "form, accepted until RELAY_SIGNING_BODY_ONLY_UNTIL)",
            ["form"], registry=reg,
        )  # fmt: skip
        for form in ("method_path", "body_only"):
            self.signatures_accepted.labels(form)
        for result in ("succeeded", "failed"):
            self.mapping_reloads.labels(result)
        self.mapping_reload_ok.set(1)
        self.store_writable.set(1)
        self.mapping_reload_time.set(time.time())

        # series that exist at zero from the start, so that rates and alerts see them
        for shape in SHAPES:
            self.events_received.labels(shape)
        for result in Routing:
            self.events_routed.labels(result)
        self._store_refreshed = 0.0
        self._store_lock = asyncio.Lock()
        self.delivered_minutes = DeliveredMinutes()  # the playground's chart (GET /v1/deliveries/summary)
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: the library validates the values and
        takes a lock on each call, and ingest asks for five children a request."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    # -- ingest ------------------------------------------------------------------------------

    def received(self, shape: str, events: int) -> None:
        self.child(self.events_received, shape).inc(events)

    def routed(self, matched: int, ignored: int, rejected: int) -> None:
        """Count each received event once: matched, ignored or rejected."""
        for result, count in (
            (Routing.MATCHED, matched),
            (Routing.IGNORED, ignored),
            (Routing.REJECTED, rejected),
        ):
            if count:
                self.child(self.events_routed, result).inc(count)

    def mapping_result(self, mapping: str, result: str) -> None:
        """One event a mapping applied to: ``matched`` or the problem code that rejected it."""
        self.child(self.mapping_events, mapping, result).inc()

    def observe_render(self, mapping: str, seconds: float) -> None:
        self.child(self.mapping_render, mapping).observe(seconds)

    def accepted(self, destination: str, mapping: str, result: str) -> None:
        self.child(self.deliveries_accepted, destination, mapping, result).inc()

    def delivered(self, destination: str, mapping: str) -> None:
        """One delivery the destination accepted: the counter and the per-minute chart."""
        self.deliveries_delivered.labels(destination, mapping).inc()
        self.delivered_minutes.delivered(destination)

    def signature_accepted(self, form: str) -> None:
        self.signatures_accepted.labels(form).inc()

    # -- store depth, read on scrape -----------------------------------------------------------

    async def refresh_store(
        self, store: Store, destinations: Iterable[str], limiters: Mapping[str, _Rate]
    ) -> None:
        """Read the store's depth at most every ``STORE_CACHE_SECONDS`` (scrapes share one read)."""
        for name, limiter in limiters.items():
            self.ratelimit_rate.labels(name).set(limiter.current_rate_per_minute)
        async with self._store_lock:
            if time.monotonic() - self._store_refreshed >= STORE_CACHE_SECONDS:
                try:
                    stats = await store.stats()
                except Exception as exc:  # a scrape must answer; the age gauge shows staleness
                    log.warning("store_stats_failed", error=type(exc).__name__)
                else:
                    now = time.time()
                    for name in {*destinations, *stats.pending}:
                        self.store_pending.labels(name).set(stats.pending.get(name, 0))
                        oldest = stats.oldest_pending_at.get(name, now)
                        self.store_oldest_age.labels(name).set(max(0.0, now - oldest))
                    self.store_dead.set(stats.dead)
                    self._store_refreshed = time.monotonic()
            if self._store_refreshed:
                self.store_stats_age.set(time.monotonic() - self._store_refreshed)

    def show_store_writable(self, writable: bool) -> None:
        """Set the store's write health as ``/readyz`` sees it (read on scrape)."""
        self.store_writable.set(1 if writable else 0)

    def show_circuits(self, circuits: Mapping[str, Mapping[str, str | float]]) -> None:
        """Set the one-hot circuit gauge from each destination's circuit (read on scrape)."""
        for name, circuit in circuits.items():
            for state in CIRCUIT_STATES:
                self.circuit_state.labels(name, state).set(1 if state == circuit["state"] else 0)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (text 0.0.4 unless it asks otherwise)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type
