"""Inbound bearer tokens, compared in constant time, and how they combine with signatures."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from pydantic import SecretStr
from starlette.requests import Request
from starlette.types import Scope

from app.problems import Problem
from app.signing import SignatureVerifier

if TYPE_CHECKING:
    from app.relay import Relay


def bearer_token(request: Request) -> str | None:
    """The token of a request's ``Authorization: Bearer`` header, if any."""
    return bearer_of(request.headers.get("authorization"))


def bearer_of(authorization: str | None) -> str | None:
    """The token of an ``Authorization`` header value when it is ``Bearer <token>``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(token: str | None, accepted: list[SecretStr]) -> bool:
    """True when ``token`` equals one of ``accepted``; every candidate is compared."""
    if token is None:
        return False
    given = token.encode()
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(given, candidate.get_secret_value().encode())
    return found


def require_ingest_token(request: Request, tokens: list[SecretStr], allow_open: bool) -> None:
    """Raise ``unauthorized`` unless the request carries an accepted token (or the relay is open)."""
    check_ingest_token(request.headers.get("authorization"), tokens, allow_open)


def check_ingest_token(authorization: str | None, tokens: list[SecretStr], allow_open: bool) -> None:
    """``require_ingest_token`` for a bare ``Authorization`` header value."""
    if not tokens and allow_open:
        return
    if not token_matches(bearer_of(authorization), tokens):
        raise Problem("unauthorized", "Send `Authorization: Bearer <token>` with an ingest token")


def admin_relay(request: Request) -> Relay:
    """The running relay, for an admin route: ``require_admin_token`` with its setting first."""
    relay: Relay = request.app.state.relay
    require_admin_token(request, relay.settings.relay_admin_token)
    return relay


def require_admin_token(request: Request, admin_token: SecretStr | None) -> None:
    """Admin routes: ``forbidden`` when no RELAY_ADMIN_TOKEN is set, ``unauthorized`` without it."""
    if admin_token is None or not admin_token.get_secret_value():
        raise Problem("forbidden", "Admin endpoints are off: set RELAY_ADMIN_TOKEN to use them")
    if not token_matches(bearer_token(request), [admin_token]):
        raise Problem("unauthorized", "Send `Authorization: Bearer <RELAY_ADMIN_TOKEN>`")


def authenticate_headers(
    authorization: str | None,
    *,
    signature: str | None,
    timestamp: str | None,
    tokens: list[SecretStr],
    verifier: SignatureVerifier | None,
    allow_open: bool,
) -> bool:
    """What the headers decide before any body byte is read: a valid bearer token OR a
    signature lets a request in. Raises ``unauthorized`` or ``invalid_signature`` now, or
    returns True when a signature must still be checked against the body
    (``SignatureVerifier.verify``).

    A request that carries signature headers to a relay with ``RELAY_SIGNING_SECRETS`` is
    judged by its signature alone: a bad one is refused even next to a good token, since the
    caller meant the body to be checked. Without signing secrets the headers are ignored.
    Its timestamp is checked here, so a stale or malformed one costs no body read.
    """
    if verifier is None or not verifier.enabled:
        check_ingest_token(authorization, tokens, allow_open)
        return False
    if signature is not None or timestamp is not None:
        verifier.check_headers(signature, timestamp)
        return True
    check_ingest_token(authorization, tokens, allow_open=False)
    return False


def request_path(scope: Scope) -> str:
    """The path a signature covers: as sent in the request line, without the query string."""
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])
