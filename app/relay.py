"""The running relay's parts, assembled from settings: destinations and the mapping set."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.delivery import open_store
from app.delivery.dispatcher import Dispatcher, DispatchSettings
from app.delivery.ratelimit import AdaptiveRateLimiter, RateLimiter
from app.delivery.retry import RetryPolicy
from app.delivery.sqlite import SqliteStore
from app.delivery.store import Store
from app.delivery.waiters import OutcomeWaiters
from app.destinations.base import Destination
from app.destinations.registry import BY_NAME, KINDS
from app.drafts.runner import DraftRunner
from app.mapping.examples import run_examples
from app.mapping.loader import MappingLoadError, MappingSet, load_mappings
from app.metrics import RelayMetrics
from app.payloads import PayloadLimits
from app.reload import MappingReloader, fingerprint
from app.settings import ConfigError, Settings
from app.signing import SignatureVerifier


def build_destinations(settings: Settings) -> dict[str, Destination]:
    """Every destination of the table, each dry-run when it has no credentials.

    ``RELAY_DRY_RUN=false`` asks every destination that some mapping may use to send, so it
    refuses to start for the one without credentials (checked by ``check_credentials``).
    """
    return {kind.name: kind.build(settings) for kind in KINDS}


def check_credentials(settings: Settings, mappings: MappingSet) -> None:
    """``RELAY_DRY_RUN=false`` with a mapping for a destination that cannot send: refuse."""
    if settings.relay_dry_run is not False:
        return
    for name in sorted({m.destination for m in mappings.mappings}):
        kind = BY_NAME[name]
        if not kind.can_send(settings):
            raise ConfigError(f"RELAY_DRY_RUN=false but {name} has no credentials: {kind.credentials}")


def load_checked_mappings(settings: Settings, destinations: dict[str, Destination]) -> MappingSet:
    """Load the mapping folder, run its examples and check that its destinations can send:
    ``MappingLoadError`` or ``ConfigError`` if anything fails (at start-up and on reload)."""
    endpoints = {name: d.endpoints for name, d in destinations.items()}
    mappings = load_mappings(settings.relay_mappings_dir, endpoints)
    failures = [result.issue() for result in run_examples(mappings, destinations) if not result.passed]
    if failures:
        raise MappingLoadError(failures)
    check_credentials(settings, mappings)
    return mappings


def build_limiters(destinations: dict[str, Destination], store: Store) -> dict[str, RateLimiter]:
    """One rate limiter per destination account (destinations on one account share it); with
    the Redis store it is shared by every replica, else it lives in this process."""
    by_account: dict[str, RateLimiter] = {}
    limiters: dict[str, RateLimiter] = {}
    for name, destination in destinations.items():
        account, rate = destination.account, destination.rate_limit_per_minute
        per_second = destination.rate_limit_per_second
        if account not in by_account:
            shared = None
            if not isinstance(store, SqliteStore):
                shared = _shared_limiter(store, account, rate, per_second)
            by_account[account] = shared or AdaptiveRateLimiter(rate, per_second=per_second)
        limiters[name] = by_account[account]
    return limiters


def _shared_limiter(store: Store, account: str, rate: int, per_second: float | None) -> RateLimiter | None:
    """The limiter every replica on a Redis store shares; None for any other store."""
    # imported here so that a relay on SQLite (the default) never loads redis-py
    from app.delivery.redis_ratelimit import RedisRateLimiter
    from app.delivery.redis_store import RedisStore

    if not isinstance(store, RedisStore):
        return None
    return RedisRateLimiter(store, store.shared_key(f"rl:{account}"), rate, per_second=per_second)


@dataclass
class Relay:
    """What the HTTP app serves with: settings, destinations, mappings, store and dispatcher."""

    settings: Settings
    destinations: dict[str, Destination]
    mappings: MappingSet
    store: Store
    dispatcher: Dispatcher
    waiters: OutcomeWaiters
    secrets: list[str] = field(default_factory=list)
    metrics: RelayMetrics = field(default_factory=RelayMetrics)
    reloader: MappingReloader | None = None
    limits: PayloadLimits = field(default_factory=PayloadLimits)
    signatures: SignatureVerifier = field(default_factory=lambda: SignatureVerifier([]))
    drafts: DraftRunner | None = None  # previews of drafts (``from_settings`` makes one)

    @classmethod
    def from_settings(cls, settings: Settings) -> Relay:
        """Build and check everything; raises ``ConfigError`` or ``MappingLoadError``."""
        open_relay = not settings.relay_ingest_tokens and not settings.relay_signing_secrets
        if open_relay and not settings.relay_allow_unauthenticated:
            raise ConfigError(
                "no RELAY_INGEST_TOKENS (nor RELAY_SIGNING_SECRETS) set: refusing to start an open relay "
                "(set RELAY_ALLOW_UNAUTHENTICATED=true for development only)"
            )
        destinations = build_destinations(settings)
        served = fingerprint(settings.relay_mappings_dir)  # before loading: a change meanwhile is seen
        mappings = load_checked_mappings(settings, destinations)
        store = open_store(settings)
        waiters = OutcomeWaiters()
        policy = RetryPolicy(
            max_attempts=settings.relay_max_attempts,
            max_age=settings.relay_max_age,
            base=settings.relay_retry_base_seconds,
            cap=settings.relay_retry_cap_seconds,
        )
        dispatch = DispatchSettings(
            lease_seconds=settings.relay_lease_seconds,
            concurrency=settings.relay_dispatch_concurrency,
            shutdown_grace=settings.relay_shutdown_grace,
            retention=settings.relay_retention_seconds,
            circuit_failures=settings.relay_circuit_failures,
            circuit_probe_seconds=settings.relay_circuit_probe_seconds,
        )
        metrics = RelayMetrics()
        metrics.mappings_loaded.set(len(mappings))
        limiters = build_limiters(destinations, store)
        dispatcher = Dispatcher(store, destinations, limiters, policy, waiters, dispatch, metrics)
        relay = cls(
            settings,
            destinations,
            mappings,
            store,
            dispatcher,
            waiters,
            settings.secret_values(),
            metrics,
            limits=PayloadLimits(
                max_events=settings.relay_max_batch_events,
                max_depth=settings.relay_max_json_depth,
                max_string_length=settings.relay_max_string_length,
                max_identities_per_namespace=settings.relay_max_identities_per_namespace,
                max_identity_namespaces=settings.relay_max_identity_namespaces,
                max_identities=settings.relay_max_identities,
            ),
            signatures=SignatureVerifier(
                settings.relay_signing_secrets,
                body_only_until=settings.relay_signing_body_only_until,
                on_accepted=metrics.signature_accepted,
            ),
            drafts=DraftRunner(settings),
        )
        relay.reloader = MappingReloader(
            settings.relay_mappings_dir,
            relay.load_mappings,
            relay.serve_mappings,
            metrics,
            interval=settings.relay_reload_interval,
            served=served,
        )
        return relay

    def load_mappings(self) -> MappingSet:
        """Compile and check the mapping folder as start-up does (``MappingLoadError``, ``ConfigError``)."""
        return load_checked_mappings(self.settings, self.destinations)

    def serve_mappings(self, mappings: MappingSet) -> None:
        """Put a checked set in service; requests read ``self.mappings`` once, so this is atomic."""
        self.mappings = mappings

    async def start(self) -> None:
        """Open the store, start delivering and watching the mappings."""
        await self.store.open()
        self.dispatcher.start()
        if self.reloader is not None:
            self.reloader.start()

    async def aclose(self) -> None:
        """Finish sends in flight (within the grace period), then close everything."""
        if self.reloader is not None:
            await self.reloader.stop()
        await self.dispatcher.stop()
        await self.store.close()
        for destination in self.destinations.values():
            await destination.aclose()
        if self.drafts is not None:
            await self.drafts.aclose()
