"""The SQLite store's fast path for idempotency keys: the live keys indexed in memory.

Event ids are random (Adobe's are UUIDs), so an SQL index on the keys (``SqlKeys``) takes
every insert to a random leaf: with 100,000 stored rows that writes about 21 KB a stored event
instead of 4 KB, and the store answers about 1.25x fewer events a second
(docs/performance.md). Here the keys stay in their deliveries' rows (so they survive a restart)
and are indexed in a dict instead, rebuilt from the rows when first needed.

A key's ``hash()`` maps to the delivery holding it and when it expires. Every hit is confirmed
by reading the holder's row: that tells apart two keys with the same 64-bit hash, frees the
key of a dead letter that the CLI purged, and ignores a holder whose transaction rolled back,
so the index needs no undo. Memory: about 125 bytes a key (measured with 500,000 keys): a
holder's id of 32 hex digits (every id ``app.ids.new_id`` makes) and the expiry in
microseconds are packed into one integer; a tuple of both (about 240 bytes) is kept for any
other id.

Deleting this module: ``SqliteStore``'s default ``keys`` becomes ``SqlKeys()``.
"""

from __future__ import annotations

import sqlite3
import time

ID_BITS = 128
ID_MASK = (1 << ID_BITS) - 1
Held = int | tuple[str, float]  # see _pack
# Oldest first, so that of two rows holding a key (the first's TTL ran out) the later wins.
LIVE_KEYS = (
    "SELECT idem_key, id, idem_expires_at FROM deliveries WHERE idem_expires_at > ? ORDER BY idem_expires_at"
)


class MemoryKeys:
    """Live idempotency keys: hash -> (holder's delivery id, expiry time), oldest first.

    Not thread-safe: only the store's writer thread uses it.
    """

    def __init__(self) -> None:
        self._held: dict[int, Held] = {}
        self._loaded = False

    def __len__(self) -> int:
        return len(self._held)

    def prepare(self, conn: sqlite3.Connection, *, load: bool) -> None:
        """At open: no SQL index on the keys (each insert would pay for it); the keys indexed
        again, now when ``load`` (the relay's store) or else when first needed (the CLI's)."""
        conn.execute("DROP INDEX IF EXISTS deliveries_key")
        self._held.clear()
        self._loaded = False
        if load:
            self._load(conn)

    def _load(self, conn: sqlite3.Connection) -> None:
        for key, delivery_id, expires_at in conn.execute(LIVE_KEYS, (time.time(),)):
            self.took(key, delivery_id, expires_at)
        self._loaded = True

    def holders(self, conn: sqlite3.Connection, keys: list[str], now: float) -> dict[str, str]:
        """The stored deliveries holding ``keys`` until after ``now``: {key: delivery id}."""
        if not self._loaded:
            self._load(conn)
        found = {}
        for key in keys:
            holder = self.holder(key, now)
            if holder is not None and _holds(conn, holder, key):
                found[key] = holder
        return found

    def holder(self, key: str, now: float) -> str | None:
        """The delivery last given ``key`` (or a key with its hash) until after ``now``, if any."""
        held = self._held.get(hash(key))
        if held is None:
            return None
        delivery_id, expires_at = _unpack(held)
        return delivery_id if expires_at > now else None

    def took(self, key: str, delivery_id: str, expires_at: float) -> None:
        """``delivery_id`` is being stored with ``key`` until ``expires_at``."""
        digest = hash(key)
        self._held.pop(digest, None)  # re-added last: the order stays that of expiry
        self._held[digest] = _pack(delivery_id, expires_at)

    def forget(self, key: str, delivery_id: str) -> None:
        """``delivery_id`` was deleted: its key is free, unless another delivery took it since."""
        digest = hash(key)
        held = self._held.get(digest)
        if held is not None and _unpack(held)[0] == delivery_id:
            del self._held[digest]

    def prune(self, now: float) -> int:
        """Drop keys that expired by ``now``; returns how many.

        Keys are kept in the order they were taken, which is their expiry order while the TTL
        stays the same, so this stops at the first live key. A key taken with a shorter TTL
        after a longer one stays until the keys before it expire; until then it only costs
        memory, since ``holder`` ignores expired keys.
        """
        expired = []
        for digest, held in self._held.items():
            if _unpack(held)[1] > now:
                break
            expired.append(digest)
        for digest in expired:
            del self._held[digest]
        return len(expired)


def _holds(conn: sqlite3.Connection, holder: str, key: str) -> bool:
    """Whether delivery ``holder`` is stored with ``key``: not when it is gone (rolled back, or a
    dead letter purged) or when only the keys' hashes are equal."""
    found = conn.execute("SELECT idem_key FROM deliveries WHERE id = ?", (holder,)).fetchone()
    return found is not None and found[0] == key


def _pack(delivery_id: str, expires_at: float) -> Held:
    """One integer (expiry in microseconds, then the id's 128 bits) when the id is 32 lowercase
    hex digits, else the pair itself."""
    if len(delivery_id) == ID_BITS // 4:
        try:
            number = int(delivery_id, 16)
        except ValueError:
            number = -1
        if number >= 0 and f"{number:032x}" == delivery_id:  # int() also takes "0x", "_", "+"
            return (round(expires_at * 1_000_000) << ID_BITS) | number
    return (delivery_id, expires_at)


def _unpack(held: Held) -> tuple[str, float]:
    """The holder's id and the expiry time, from ``_pack``."""
    if isinstance(held, tuple):
        return held
    return f"{held & ID_MASK:032x}", (held >> ID_BITS) / 1_000_000
