"""The running relay's parts, assembled from settings: destinations and the mapping set."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.destinations.base import Destination
from app.destinations.zendesk import ZendeskConfig, ZendeskDestination
from app.mapping.examples import run_examples
from app.mapping.loader import MappingLoadError, MappingSet, load_mappings
from app.settings import ConfigError, Settings


def build_destinations(settings: Settings) -> dict[str, Destination]:
    """Every destination the relay knows, each dry-run when it has no credentials."""
    zendesk = ZendeskConfig.from_settings(settings)
    if settings.relay_dry_run is False and not zendesk.has_credentials:
        raise ConfigError(
            "RELAY_DRY_RUN=false but Zendesk has no credentials: set ZENDESK_SUBDOMAIN (or "
            "ZENDESK_BASE_URL) and ZENDESK_OAUTH_TOKEN, ZENDESK_EMAIL + ZENDESK_API_TOKEN, or "
            "ZENDESK_EMAIL + ZENDESK_PASSWORD"
        )
    dry_run = settings.relay_dry_run if settings.relay_dry_run is not None else not zendesk.has_credentials
    return {"zendesk": ZendeskDestination(zendesk, dry_run=dry_run)}


def load_checked_mappings(settings: Settings, destinations: dict[str, Destination]) -> MappingSet:
    """Load the mapping folder and run its examples; ``MappingLoadError`` if anything fails."""
    endpoints = {name: d.endpoints for name, d in destinations.items()}
    mappings = load_mappings(settings.relay_mappings_dir, endpoints)
    failures = [result.issue() for result in run_examples(mappings, destinations) if not result.passed]
    if failures:
        raise MappingLoadError(failures)
    return mappings


@dataclass
class Relay:
    """What the HTTP app serves with: settings, destinations, and the current mapping set."""

    settings: Settings
    destinations: dict[str, Destination]
    mappings: MappingSet
    secrets: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> Relay:
        """Build and check everything; raises ``ConfigError`` or ``MappingLoadError``."""
        if not settings.relay_ingest_tokens and not settings.relay_allow_unauthenticated:
            raise ConfigError(
                "no RELAY_INGEST_TOKENS set: refusing to start an open relay "
                "(set RELAY_ALLOW_UNAUTHENTICATED=true for development only)"
            )
        destinations = build_destinations(settings)
        mappings = load_checked_mappings(settings, destinations)
        return cls(settings, destinations, mappings, settings.secret_values())

    async def aclose(self) -> None:
        for destination in self.destinations.values():
            await destination.aclose()
