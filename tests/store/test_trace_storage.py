"""What the traces and erasures leave in each backend's storage: nothing of a deleted delivery
(its attempts, its entry in the event index, its key in memory), the index a trace reads, and
the migration of a version 3 SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

from app.delivery.key_index import MemoryKeys
from app.delivery.redis_store import RedisStore
from app.delivery.sqlite import SqliteStore
from app.delivery.store import AttemptRecord, DeadLetterFilter, Erased, Identifier, Store
from app.status import AttemptOutcome, DeliveryStatus, ResultStatus
from tests.fakes.redis_server import RedisServer
from tests.store.conftest import BIG, TTL, lease_until, new, run

ANN = Identifier("email", "ann@example.com")
SENT = AttemptRecord(1_800_000_000.0, AttemptOutcome.RETRY, "timeout", None, 30_000.0)


async def three_gone_ways(s: Store) -> list[str]:
    """A delivery cleaned up, a dead letter purged and one erased, each with an attempt; returns
    their ids. Another stays, with its attempt."""
    done = new(destination="done", event_id="evt-done")
    dead = new(destination="dead", event_id="evt-dead")
    erased = new(destination="erased", event_id="evt-erased", body={"email": "ann@example.com"})
    stays = new(destination="stays", event_id="evt-stays")
    await s.enqueue([done, dead], max_pending=BIG, idempotency_ttl=0.001)
    await s.enqueue([erased, stays], max_pending=BIG, idempotency_ttl=TTL)
    for d in (done, dead, erased, stays):
        [leased] = await lease_until(s, d.destination, 30.0, 1)
        if d is done:
            assert await s.mark_delivered(leased, {"status": 200}, SENT)
        elif d is dead:
            assert await s.mark_dead(leased, {"code": "bad_request"}, SENT)
        else:
            assert await s.mark_retry(leased, time.time() + 600, {"code": "timeout"}, SENT)
    await asyncio.sleep(0.01)  # the short keys expire
    assert await s.cleanup(time.time() + 60) == 1
    assert await s.purge(DeadLetterFilter()) == 1
    assert await s.erase([ANN]) == Erased(1, 0, 1)
    assert [t.history for t in await s.trace("evt-stays")] == [(SENT,)]
    return [done.id, dead.id, erased.id]


def test_sqlite_keeps_no_attempt_of_a_deleted_delivery(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    gone = run(SqliteStore(str(path)), three_gone_ways)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone() == (1,)
        marks = ",".join("?" * len(gone))
        assert conn.execute(
            f"SELECT COUNT(*) FROM attempts WHERE delivery_id IN ({marks})", gone
        ).fetchone() == (0,)


def test_redis_keeps_nothing_of_a_deleted_delivery(redis_server: RedisServer) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    store = RedisStore(redis_server.url, prefix=prefix)
    gone = run(store, three_gone_ways)

    async def keys() -> list[str]:
        reader = RedisStore(redis_server.url, prefix=prefix)
        await reader.open()
        try:
            return sorted(k.decode() for k in await reader.client.keys(f"{{{prefix}}}:*"))
        finally:
            await reader.close()

    left = asyncio.run(keys())
    assert not [
        k for k in left if any(i in k for i in gone) or k.endswith(("evt-done", "evt-dead", "evt-erased"))
    ]
    assert f"{{{prefix}}}:ev:evt-stays" in left
    assert len([k for k in left if f"{{{prefix}}}:at:" in k]) == 1


def test_sqlite_forgets_the_erased_keys_it_held_in_memory(tmp_path: Path) -> None:
    keys = MemoryKeys()
    ours = [new(body={"email": "ann@example.com"}) for _ in range(3)]

    async def scenario(s: Store) -> tuple[int, int]:
        await s.enqueue([*ours, new()], max_pending=BIG, idempotency_ttl=TTL)
        held = len(keys)
        await s.erase([ANN])
        return held, len(keys)

    assert run(SqliteStore(str(tmp_path / "relay.db"), keys=keys), scenario) == (4, 1)


def test_a_key_taken_again_after_the_erasure_is_not_forgotten() -> None:
    keys = MemoryKeys()
    keys.took("m1\x1fevt-1", "erased", 100.0)
    keys.took("m1\x1fevt-1", "later", 200.0)
    keys.forget("m1\x1fevt-1", "erased")
    assert keys.holder("m1\x1fevt-1", 0.0) == "later"
    keys.forget("m1\x1fevt-1", "later")
    assert keys.holder("m1\x1fevt-1", 0.0) is None


def test_sqlite_traces_a_file_store_by_scanning_without_an_event_index(tmp_path: Path) -> None:
    """An index on random event ids halved enqueue throughput (docs/operations.md, schema 4):
    a trace scans on a reader connection instead."""
    path = tmp_path / "relay.db"
    stored = [new(event_id="evt-1"), new(event_id="evt-2")]
    run(SqliteStore(str(path)), lambda s: s.enqueue(stored, max_pending=BIG, idempotency_ttl=TTL))
    assert [t.delivery.event_id for t in run(SqliteStore(str(path)), lambda s: s.trace("evt-1"))] == ["evt-1"]
    with closing(sqlite3.connect(path)) as conn:
        indexed = [row[2] for row in conn.execute("SELECT * FROM sqlite_master WHERE type = 'index'")]
        columns = {name: [c[2] for c in conn.execute(f"PRAGMA index_info({name})")] for name in indexed}
    assert not [name for name, cols in columns.items() if "event_id" in cols]


# The version 3 layout, as the relay created it before attempts and the event index.
SCHEMA_V3 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (3);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY, mapping TEXT NOT NULL, destination TEXT NOT NULL, event_id TEXT,
    request_id TEXT, method TEXT NOT NULL, path TEXT NOT NULL, body BLOB NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due_at REAL, lease_token TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, last_code TEXT, last_problem TEXT,
    response TEXT, idem_key TEXT, idem_expires_at REAL
);
CREATE INDEX deliveries_due ON deliveries (destination, due_at) WHERE status IN ('pending', 'in_flight');
CREATE INDEX deliveries_dead ON deliveries (updated_at) WHERE status = 'dead';
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE status IN ('delivered', 'dry_run');
"""


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def test_a_version_3_store_is_traced_erased_and_keeps_its_keys_after_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    now = time.time()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(SCHEMA_V3)
        for id_, event_id, mapping, body in (
            ("old-1", "evt-1", "m1", b'{"email":"Ann@Example.com"}'),
            ("old-2", "evt-1", "m2", b'{"email":"bob@example.com"}'),
        ):
            conn.execute(
                "INSERT INTO deliveries (id, mapping, destination, event_id, method, path, body, status, "
                "due_at, created_at, updated_at, idem_key, idem_expires_at) VALUES (?, ?, 'zendesk', ?, "
                "'POST', '/x', ?, 'pending', ?, ?, ?, ?, ?)",
                (id_, mapping, event_id, body, now, now, now, f"{mapping}\x1f{event_id}", now + 3600),
            )

    async def scenario(s: Store) -> tuple[Any, ...]:
        traced = [(t.delivery.id, t.history) for t in await s.trace("evt-1")]
        [leased] = await s.lease("zendesk", 1, 30.0)
        assert await s.mark_retry(leased, time.time(), {"code": "timeout"}, SENT)
        again = await s.enqueue([new(mapping="m2", event_id="evt-1")], max_pending=BIG, idempotency_ttl=TTL)
        erased = await s.erase([ANN])
        return (
            traced,
            [(r.status, r.delivery_id) for r in again],
            erased,
            [t.delivery.id for t in await s.trace("evt-1")],
        )

    assert run(SqliteStore(str(path)), scenario) == (
        [("old-1", ()), ("old-2", ())],
        [(ResultStatus.DUPLICATE, "old-2")],
        Erased(1, 0, 1),
        ["old-2"],
    )
    assert _query(path, "SELECT version FROM schema_version") == [(4,)]
    assert _query(
        path,
        "SELECT name FROM sqlite_master WHERE name IN ('attempts', 'deliveries_gone') ORDER BY name",
    ) == [("attempts",), ("deliveries_gone",)]
    assert _query(path, "SELECT status FROM deliveries") == [(DeliveryStatus.PENDING,)]
    # opened again, nothing migrates twice
    assert run(SqliteStore(str(path)), lambda s: s.trace("evt-1")) != []
    assert _query(path, "SELECT version FROM schema_version") == [(4,)]


def test_sqlite_erases_a_large_store_in_chunks_and_only_its_matches(tmp_path: Path) -> None:
    """More rows than one chunk of the scan, with the matches spread over them."""
    rows = 12_000
    matches = {n for n in range(0, rows, 997)}
    stored = [
        new(body={"email": "ANN@example.com" if n in matches else f"user{n}@example.com"}, event_id=None)
        for n in range(rows)
    ]

    async def scenario(s: Store) -> tuple[Erased, int]:
        for start in range(0, rows, 1000):
            await s.enqueue(stored[start : start + 1000], max_pending=BIG, idempotency_ttl=TTL)
        erased = await s.erase([ANN])
        return erased, (await s.stats()).total_pending

    assert run(SqliteStore(str(tmp_path / "relay.db")), scenario) == (
        Erased(len(matches), 0, 0),
        rows - len(matches),
    )
