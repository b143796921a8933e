"""The SQLite store's in-memory index of idempotency keys (``MemoryKeys``): expiry, pruning,
packing, and why every hit is confirmed against the holder's row."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from app.delivery.key_index import MemoryKeys
from app.delivery.sqlite import SqliteStore, SqlKeys
from app.delivery.store import EnqueueResult, Store
from app.ids import new_id
from app.status import ResultStatus
from tests.store.conftest import BIG, TTL, new, run


def test_a_key_is_held_until_it_expires() -> None:
    keys = MemoryKeys()
    keys.took("m1\x1fevt-1", "d1", expires_at=100.0)
    assert keys.holder("m1\x1fevt-1", now=99.9) == "d1"
    assert keys.holder("m1\x1fevt-1", now=100.0) is None
    assert keys.holder("m1\x1fevt-2", now=0.0) is None


def test_prune_drops_expired_keys_oldest_first() -> None:
    keys = MemoryKeys()
    keys.took("a", "d1", 10.0)
    keys.took("b", "d2", 20.0)
    keys.took("c", "d3", 30.0)
    keys.took("a", "d4", 40.0)  # taken again: now the newest
    assert keys.prune(now=25.0) == 1  # b; a moved behind c
    assert [keys.holder(k, 25.0) for k in "abc"] == ["d4", None, "d3"]
    assert keys.prune(now=50.0) == 2
    assert len(keys) == 0


def test_prune_stops_at_the_first_live_key() -> None:
    keys = MemoryKeys()
    keys.took("long", "d1", 1000.0)
    keys.took("short", "d2", 10.0)  # a shorter TTL after a longer one
    assert keys.prune(now=20.0) == 0
    assert keys.holder("short", 20.0) is None  # expired all the same


def test_every_form_of_holder_id_comes_back_as_it_was_given() -> None:
    keys = MemoryKeys()
    ids = [
        new_id(),  # packed into one integer
        "0" * 32,
        "live",  # the others are kept as they are
        "ABCDEF0123456789ABCDEF0123456789",
        "0x" + "a" * 30,
        "+" + "1" * 31,
        "1_" + "2" * 30,
    ]
    for n, delivery_id in enumerate(ids):
        keys.took(f"k{n}", delivery_id, 1_800_000_000.123456)
    assert [keys.holder(f"k{n}", 1_800_000_000.123455) for n in range(len(ids))] == ids
    assert [keys.holder(f"k{n}", 1_800_000_000.123457) for n in range(len(ids))] == [None] * len(ids)


def test_a_key_that_only_shares_its_hash_with_a_live_key_is_not_a_duplicate(tmp_path: Path) -> None:
    first = new(event_id="evt-a")
    other = new(event_id="evt-b")

    async def scenario(s: Store) -> list[EnqueueResult]:
        assert isinstance(s, SqliteStore) and isinstance(s._keys, MemoryKeys)
        await s.enqueue([first], max_pending=BIG, idempotency_ttl=TTL)
        # as if evt-b's key had the same 64-bit hash as evt-a's
        s._keys.took("m1\x1fevt-a", first.id, time.time() + 3600)
        s._keys._held[hash("m1\x1fevt-b")] = s._keys._held[hash("m1\x1fevt-a")]
        return await s.enqueue([other], max_pending=BIG, idempotency_ttl=TTL)

    assert run(SqliteStore(str(tmp_path / "relay.db")), scenario) == [
        EnqueueResult(ResultStatus.QUEUED, other.id)
    ]


def test_the_sql_index_on_keys_is_dropped_when_they_move_to_memory(tmp_path: Path) -> None:
    """Each insert would pay for an index that nothing reads."""
    path = tmp_path / "relay.db"
    key_index = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'deliveries_key'"
    first, again = new(event_id="evt-1"), new(event_id="evt-1")

    async def enqueue_first(s: Store) -> None:
        await s.enqueue([first], max_pending=BIG, idempotency_ttl=TTL)

    async def enqueue_again(s: Store) -> list[EnqueueResult]:
        return await s.enqueue([again], max_pending=BIG, idempotency_ttl=TTL)

    run(SqliteStore(str(path), keys=SqlKeys()), enqueue_first)
    assert run(SqliteStore(str(path), keys=MemoryKeys()), enqueue_again) == [
        EnqueueResult(ResultStatus.DUPLICATE, first.id)
    ]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute(key_index).fetchone() == (0,)
