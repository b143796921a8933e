"""The SQLite store's in-memory index of live idempotency keys, with undo for rollbacks.

The keys themselves live in the deliveries' rows (so they survive a restart); this index is
rebuilt from them when the store opens. It maps the key's ``hash()`` to the delivery holding it
and when the key expires. Two keys with the same 64-bit hash are told apart by the caller, which
reads the holder's row before it answers ``duplicate``.

Memory: a key costs about 125 bytes (its objects, measured with 500,000 keys). To get there,
a holder's id of 32 hex digits (every id ``app.ids.new_id`` makes) and the expiry in
microseconds are packed into one integer; a tuple of both (about 240 bytes a key) is kept for
any other id.
"""

from __future__ import annotations

ID_BITS = 128
ID_MASK = (1 << ID_BITS) - 1
Held = int | tuple[str, float]  # see _pack


class KeyIndex:
    """Live idempotency keys: hash -> (holder's delivery id, expiry time), oldest first.

    Changes since ``begin()`` are journalled so that a transaction (or a savepoint, from a
    ``mark()``) that rolls back can give its keys back with ``undo()``. Not thread-safe: only the
    store's batches, on its event loop, use it.
    """

    def __init__(self) -> None:
        self._held: dict[int, Held] = {}
        self._journal: list[tuple[int, Held | None]] = []

    def __len__(self) -> int:
        return len(self._held)

    def holder(self, key: str, now: float) -> str | None:
        """The delivery holding ``key`` (or a key with its hash) until after ``now``, if any."""
        held = self._held.get(hash(key))
        if held is None:
            return None
        delivery_id, expires_at = _unpack(held)
        return delivery_id if expires_at > now else None

    def take(self, key: str, delivery_id: str, expires_at: float) -> None:
        """Give ``key`` to ``delivery_id`` until ``expires_at``, whoever held it before."""
        digest = hash(key)
        before = self._held.pop(digest, None)  # re-added last: the order stays that of expiry
        self._journal.append((digest, before))
        self._held[digest] = _pack(delivery_id, expires_at)

    def begin(self) -> None:
        """Start a transaction: forget the journal of the last one (it committed)."""
        self._journal.clear()

    def mark(self) -> int:
        """A point to ``undo`` to, for a savepoint."""
        return len(self._journal)

    def undo(self, mark: int = 0) -> None:
        """Put back what changed since ``mark`` (default: since ``begin``)."""
        while len(self._journal) > mark:
            digest, before = self._journal.pop()
            self._held.pop(digest, None)
            if before is not None:
                self._held[digest] = before

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

    def clear(self) -> None:
        """Forget every key and the journal."""
        self._held.clear()
        self._journal.clear()


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
