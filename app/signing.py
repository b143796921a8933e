"""HMAC-SHA256 request signatures: shared secrets, a timestamp, a skew window, no replays.

A caller signs four fields joined by newlines, ``{timestamp}\\n{METHOD}\\n{path}\\n{body}``:
the Unix seconds it sends in ``X-Relay-Timestamp``, the request method, the path as sent in
the request line (percent-encoded as sent, without the query string) and the raw body bytes,
with one of ``RELAY_SIGNING_SECRETS``, and sends ``X-Relay-Signature: sha256=<hex digest>``.
None of the first three fields can hold a newline, so no two requests sign the same string.

The older form signed ``{timestamp}.{body}`` alone, so a signature for one route was good on
every other; it is accepted until ``RELAY_SIGNING_BODY_ONLY_UNTIL`` (UTC), counted by form in
``aep_relay_signatures_accepted`` and logged (``body_only_signature``, at most once a minute).

A signature is accepted once, within ``SKEW_SECONDS`` of the relay's clock; the signatures
seen are remembered in memory, so with several replicas a replay is refused per replica.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

import structlog
from pydantic import SecretStr

from app.problems import Problem

log = structlog.get_logger("app.api")

SIGNATURE_HEADER = "x-relay-signature"
TIMESTAMP_HEADER = "x-relay-timestamp"
SKEW_SECONDS = 300.0
MAX_REMEMBERED = 200_000
PREFIX = "sha256="
METHOD_PATH, BODY_ONLY = "method_path", "body_only"  # the signed forms, as metric labels
BODY_ONLY_LOG_INTERVAL = 60.0


def signed_string(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    """What a signature covers: timestamp, method, path and body, one newline between each."""
    return f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body


def sign(secret: str, timestamp: str, body: bytes, *, method: str, path: str) -> str:
    """The ``X-Relay-Signature`` value for a request (for callers and tests)."""
    return _header(secret, signed_string(timestamp, method, path, body))


def sign_body_only(secret: str, timestamp: str, body: bytes) -> str:
    """The older ``X-Relay-Signature`` over ``{timestamp}.{body}``, accepted for a while."""
    return _header(secret, timestamp.encode() + b"." + body)


def _header(secret: str, message: bytes) -> str:
    return PREFIX + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class SignatureVerifier:
    """Checks signatures against every configured secret and refuses one seen before."""

    def __init__(
        self,
        secrets: list[SecretStr],
        *,
        skew: float = SKEW_SECONDS,
        max_remembered: int = MAX_REMEMBERED,
        body_only_until: date | None = None,
        on_accepted: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = [s.get_secret_value().encode() for s in secrets if s.get_secret_value()]
        self.skew = skew
        self.max_remembered = max_remembered
        self.body_only_until = body_only_until
        self._body_only_end = (
            datetime(body_only_until.year, body_only_until.month, body_only_until.day, tzinfo=UTC).timestamp()
            if body_only_until is not None
            else float("-inf")
        )
        self._on_accepted = on_accepted
        self._clock = clock
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[float, bytes]] = []  # heap: when a seen signature goes stale
        self._body_only_unlogged = 0
        self._body_only_logged_at = float("-inf")

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check_headers(self, signature: str | None, timestamp: str | None) -> None:
        """What can be refused before the body is read: missing, malformed or stale headers."""
        self._parse(signature, timestamp)

    def verify(
        self, signature: str | None, timestamp: str | None, body: bytes, *, method: str, path: str
    ) -> str:
        """Return the form signed (``METHOD_PATH`` or ``BODY_ONLY``) if the signature is good,
        fresh and new; else raise ``invalid_signature``."""
        given, stamp, now = self._parse(signature, timestamp)
        form = METHOD_PATH
        matched = self._matches(given, signed_string(stamp, method, path, body))
        if not matched and now < self._body_only_end:
            form = BODY_ONLY
            matched = self._matches(given, stamp.encode() + b"." + body)
        if not matched:
            raise _invalid("The signature does not match the timestamp, method, path and body")
        self._remember(given, int(stamp) + self.skew, now)
        if form == BODY_ONLY:
            self._note_body_only(now)
        if self._on_accepted is not None:
            self._on_accepted(form)
        return form

    def _parse(self, signature: str | None, timestamp: str | None) -> tuple[bytes, str, float]:
        """The digest, the timestamp and the time now; ``invalid_signature`` when unusable."""
        if signature is None or timestamp is None:
            raise _invalid("Send both X-Relay-Timestamp and X-Relay-Signature")
        given = _digest(signature)
        stamp = timestamp.strip()
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise _invalid("X-Relay-Timestamp must be Unix time in whole seconds")
        now = self._clock()
        if abs(now - int(stamp)) > self.skew:
            raise _invalid(f"X-Relay-Timestamp is more than {self.skew:g} s away from the relay's clock")
        return given, stamp, now

    def _matches(self, given: bytes, message: bytes) -> bool:
        matched = False
        for key in self._keys:  # every secret is tried, so timing does not tell which matched
            matched |= hmac.compare_digest(hmac.new(key, message, hashlib.sha256).digest(), given)
        return matched

    def _note_body_only(self, now: float) -> None:
        self._body_only_unlogged += 1
        if now - self._body_only_logged_at >= BODY_ONLY_LOG_INTERVAL:
            log.warning(
                "body_only_signature",
                detail="a caller signs the body alone; sign timestamp, method, path and body",
                accepted_until=str(self.body_only_until),
                count=self._body_only_unlogged,
            )
            self._body_only_unlogged = 0
            self._body_only_logged_at = now

    def _remember(self, digest: bytes, stale_at: float, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            self._seen.discard(heapq.heappop(self._expiry)[1])
        if digest in self._seen:
            raise _invalid("This signature was already used: sign each request anew")
        if len(self._seen) >= self.max_remembered:
            # forgetting a live signature would allow its replay: refuse instead
            raise Problem("overloaded", "Too many signed requests to remember; retry later", retry_after=1)
        self._seen.add(digest)
        heapq.heappush(self._expiry, (stale_at, digest))


def _digest(signature: str) -> bytes:
    value = signature.strip()
    if value[: len(PREFIX)].lower() == PREFIX:
        value = value[len(PREFIX) :]
    try:
        digest = bytes.fromhex(value)
    except ValueError:
        digest = b""
    if len(digest) != hashlib.sha256().digest_size:
        raise _invalid("X-Relay-Signature must be `sha256=` and 64 hex digits")
    return digest


def _invalid(detail: str) -> Problem:
    return Problem("invalid_signature", detail)
