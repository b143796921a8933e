"""HMAC-SHA256 request signatures: shared secrets, a timestamp, a skew window, no replays.

A caller signs ``{timestamp}.{body}`` (the Unix seconds it sends in ``X-Relay-Timestamp``,
a dot, then the raw body bytes) with one of ``RELAY_SIGNING_SECRETS`` and sends
``X-Relay-Signature: sha256=<hex digest>``. A signature is accepted once, within
``SKEW_SECONDS`` of the relay's clock; the signatures seen are remembered in memory, so
with several replicas a replay is refused per replica.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import time
from collections.abc import Callable

from pydantic import SecretStr

from app.problems import Problem

SIGNATURE_HEADER = "x-relay-signature"
TIMESTAMP_HEADER = "x-relay-timestamp"
SKEW_SECONDS = 300.0
MAX_REMEMBERED = 200_000
PREFIX = "sha256="


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Relay-Signature`` value for ``body`` sent at ``timestamp`` (for callers and tests)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return PREFIX + digest


class SignatureVerifier:
    """Checks signatures against every configured secret and refuses one seen before."""

    def __init__(
        self,
        secrets: list[SecretStr],
        *,
        skew: float = SKEW_SECONDS,
        max_remembered: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = [s.get_secret_value().encode() for s in secrets if s.get_secret_value()]
        self.skew = skew
        self.max_remembered = max_remembered
        self._clock = clock
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[float, bytes]] = []  # heap: when a seen signature goes stale

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def verify(self, signature: str | None, timestamp: str | None, body: bytes) -> None:
        """Return if the signature is good, fresh and new; else raise ``invalid_signature``."""
        if signature is None or timestamp is None:
            raise _invalid("Send both X-Relay-Timestamp and X-Relay-Signature")
        given = _digest(signature)
        stamp = timestamp.strip()
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise _invalid("X-Relay-Timestamp must be Unix time in whole seconds")
        now = self._clock()
        if abs(now - int(stamp)) > self.skew:
            raise _invalid(f"X-Relay-Timestamp is more than {self.skew:g} s away from the relay's clock")
        message = stamp.encode() + b"." + body
        matched = False
        for key in self._keys:  # every secret is tried, so timing does not tell which matched
            matched |= hmac.compare_digest(hmac.new(key, message, hashlib.sha256).digest(), given)
        if not matched:
            raise _invalid("The signature does not match the body and timestamp")
        self._remember(given, int(stamp) + self.skew, now)

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
