"""Identifiers for requests and deliveries."""

from __future__ import annotations

import secrets
import time


def new_id() -> str:
    """A unique id as 32 hex digits: the time in milliseconds (12), then 80 random bits (20).

    Time first, so that ids made one after another sort together: the store's primary-key
    index then grows at its end instead of touching a random page per insert (a measured
    third of an SQLite insert). The random part comes from the operating system's CSPRNG
    (``secrets``), not from ``random``'s Mersenne Twister, whose whole state can be rebuilt
    from a few hundred observed ids: the ids of other callers' deliveries would then be
    predictable. It costs about a microsecond per id (one ``getrandom`` call).
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
