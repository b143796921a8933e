"""The destination protocol: what the pipeline needs from any API it delivers to.

A destination turns a rendered body into a request (checking the API's rules first, so a bad
mapping is caught here with the field path, not by the API), sends it, and classifies the
answer into ``Delivered`` or a ``Problem``. Example::

    request, violations = zendesk.prepare(body, endpoint=None, params={})
    if not violations:
        delivered = await zendesk.send(request)   # raises Problem on any failure
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from app.destinations.zendesk_read import ReadScope
    from app.settings import Settings


@dataclass(frozen=True)
class Violation:
    """One rule of a destination at a field path such as ``event.source``: broken (the API
    would refuse the request, so it is not sent) or, as a ``warning``, only a recommendation
    of the vendor's documents not followed (sent, and the result says so)."""

    path: str
    message: str
    warning: bool = False

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@dataclass(slots=True)  # not frozen: built for every matched event, and frozen costs 2.5x
class OutboundRequest:
    """What will be sent: method, path relative to the destination's base URL, JSON body."""

    method: str
    path: str
    body: Any

    def describe(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Delivered:
    """A success answer: the upstream status and the identifiers it gave back."""

    status: int
    request_id: str | None = None
    response: dict[str, Any] = field(default_factory=dict)
    # What the API said of its rate limit (per minute), for the limiter; None when not told.
    rate_limit: int | None = None
    rate_remaining: int | None = None
    # True when not sent now but found at the destination by a read-back (``ReadsBack``)
    verified: bool = False


class Destination(Protocol):
    """One API the relay delivers to (see ``zendesk.py`` for the reference implementation)."""

    name: str
    # Endpoint names a mapping may choose with `endpoint:`; the first is the default.
    endpoints: tuple[str, ...]
    # True when nothing may be sent (no credentials, or RELAY_DRY_RUN).
    dry_run: bool
    # The account's limit for these calls, and a key naming the account (one bucket each).
    rate_limit_per_minute: int
    # The vendor's limit per second (Yotpo: 5 per store), None when it limits per minute only.
    rate_limit_per_second: float | None
    account: str

    def prepare(
        self, body: Any, endpoint: str | None, params: dict[str, Any]
    ) -> tuple[OutboundRequest, list[Violation]]:
        """Build the request for a rendered body and list every rule it breaks.

        ``params`` holds the mapping's endpoint parameters, its ``event_id`` (None when it has
        none) and its name as ``mapping``."""
        ...

    def stamp(self, request: OutboundRequest, received_at: float) -> OutboundRequest:
        """The request as stored to be sent: what must not change between attempts is fixed
        here, at ingest (Zendesk: ``event.created_at``)."""
        ...

    async def send(self, request: OutboundRequest) -> Delivered:
        """Send one prepared request; raise ``Problem`` for every kind of failure."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class ReadsBack(Protocol):
    """A destination whose sent requests can be read back (Zendesk): an attempt whose outcome
    was unknown is settled by looking before sending again (``app.delivery.readback``)."""

    def read_scope(self, request: OutboundRequest) -> ReadScope | None:
        """Where the request's event would be found, None when it cannot be looked for."""
        ...

    async def read(self, method: str, path: str) -> Delivered:
        """One read (GET) or delete: the decoded body as ``response``; ``Problem`` otherwise."""
        ...


class Config(Protocol):
    """A destination's configuration, read from ``Settings``."""

    @property
    def has_credentials(self) -> bool: ...


@dataclass(frozen=True)
class Kind:
    """One entry of the destination table (``registry.KINDS``): how to configure and build it.

    ``configure`` reads the destination's settings (raising ``ConfigError`` for unusable
    values); ``create`` builds the destination from that config; ``credentials`` names the
    variables that give it credentials, for the error when ``RELAY_DRY_RUN=false`` lacks them.
    """

    name: str
    configure: Callable[[Settings], Any]
    create: Callable[..., Destination]
    credentials: str

    def build(self, settings: Settings) -> Destination:
        """The destination, in dry run when ``RELAY_DRY_RUN`` says so or it has no credentials."""
        config = self.configure(settings)
        dry_run = settings.relay_dry_run if settings.relay_dry_run is not None else not config.has_credentials
        return self.create(config, dry_run=dry_run)

    def can_send(self, settings: Settings) -> bool:
        return bool(self.configure(settings).has_credentials)
