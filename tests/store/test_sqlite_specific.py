"""SQLite backend specifics: WAL mode, the schema version and group commit."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from app.delivery.sqlite import SqliteStore, SqlKeys
from app.delivery.store import DeadLetterFilter, EnqueueResult, Overloaded, Store, StoreUnavailable
from app.status import ResultStatus
from tests.store.conftest import BIG, TTL, new, run


class CountingStore(SqliteStore):
    """The real store, recording the size of every transaction it commits."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def _execute(self, conn: sqlite3.Connection, batch: list[Any]) -> list[Any]:
        self.batches.append(len(batch))
        return super()._execute(conn, batch)


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def test_file_is_in_wal_mode_with_schema_version_4(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "relay.db"

    async def touch(s: Store) -> None:
        await s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL)

    run(SqliteStore(str(path)), touch)
    assert path.is_file()
    assert _query(path, "PRAGMA journal_mode") == [("wal",)]
    assert _query(path, "SELECT version FROM schema_version") == [(4,)]
    assert _query(path, "SELECT COUNT(*) FROM deliveries") == [(1,)]
    # Opening again migrates nothing twice.
    run(SqliteStore(str(path)), touch)
    assert _query(path, "SELECT version FROM schema_version") == [(4,)]
    assert _query(path, "SELECT COUNT(*) FROM deliveries") == [(2,)]


def test_group_commit_groups_concurrent_writes(tmp_path: Path) -> None:
    store = CountingStore(str(tmp_path / "relay.db"))

    async def scenario(s: Store) -> tuple[int, list[int]]:
        assert isinstance(s, CountingStore)
        opened = len(s.batches)
        results = await asyncio.gather(
            *(s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL) for _ in range(100))
        )
        assert [r[0].status for r in results] == [ResultStatus.QUEUED] * 100
        return opened, s.batches[opened:]

    opened, batches = run(store, scenario)
    assert opened == 1  # the migration
    assert sum(batches) == 100  # every enqueue ran, each exactly once
    assert len(batches) <= 10, batches  # far fewer transactions than writes
    assert _query(tmp_path / "relay.db", "SELECT COUNT(*) FROM deliveries") == [(100,)]


class TracingStore(CountingStore):
    """The real store, recording every SQL statement its connection runs (and its batches)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.statements: list[str] = []

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        conn.set_trace_callback(self.statements.append)
        return conn


async def in_one_batch(store: CountingStore, calls: list[list[Any]]) -> list[list[EnqueueResult]]:
    """Enqueue each call in the same step of the event loop: all of them are in one batch."""
    before = len(store.batches)
    results = await asyncio.gather(*(store.enqueue(c, max_pending=BIG, idempotency_ttl=TTL) for c in calls))
    assert store.batches[before:] == [len(calls)]
    return list(results)


def test_concurrent_enqueues_are_inserted_together(tmp_path: Path) -> None:
    store = TracingStore(str(tmp_path / "relay.db"))

    async def scenario(s: Store) -> list[list[EnqueueResult]]:
        assert isinstance(s, TracingStore)
        return await in_one_batch(s, [[new(), new()] for _ in range(50)])

    results = run(store, scenario)
    assert all(r.status == ResultStatus.QUEUED for rs in results for r in rs)
    assert len({r.delivery_id for rs in results for r in rs}) == 100
    inserts = [sql for sql in store.statements if sql.startswith("INSERT INTO deliveries")]
    assert len(inserts) == 4  # 100 rows, 32 to a statement
    assert not any(sql.startswith("SELECT id FROM deliveries WHERE id IN") for sql in store.statements)
    assert _query(tmp_path / "relay.db", "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'") == [
        (100,)
    ]


def test_a_duplicate_among_concurrent_enqueues_is_left_out_of_their_insert(tmp_path: Path) -> None:
    store = TracingStore(str(tmp_path / "relay.db"))
    first = new(mapping="orders", event_id="evt-1")

    async def scenario(s: Store) -> list[list[EnqueueResult]]:
        assert isinstance(s, TracingStore)
        await s.enqueue([first], max_pending=BIG, idempotency_ttl=TTL)
        store.statements.clear()
        return await in_one_batch(s, [[new(mapping="orders", event_id=f"evt-{i}")] for i in range(1, 40)])

    results = run(store, scenario)
    assert results[0] == [EnqueueResult(ResultStatus.DUPLICATE, first.id)]
    assert all(rs[0].status == ResultStatus.QUEUED for rs in results[1:])
    # the keys' holders found in one or two statements (SqlKeys: 32 keys to one; MemoryKeys:
    # one read to confirm the duplicate's holder); the 38 others inserted in two statements
    assert 1 <= sum(sql.startswith("SELECT idem_key") for sql in store.statements) <= 2
    inserts = [sql for sql in store.statements if sql.startswith("INSERT INTO deliveries")]
    assert [sql.count("'pending'") for sql in inserts] == [32, 6]
    assert _query(tmp_path / "relay.db", "SELECT COUNT(*) FROM deliveries") == [(39,)]


def test_a_second_store_on_the_same_file_keeps_the_running_leases(tmp_path: Path) -> None:
    path = str(tmp_path / "relay.db")
    d = new()

    async def scenario() -> None:
        relay = SqliteStore(path)
        await relay.open()
        try:
            await relay.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
            [leased] = await relay.lease("zendesk", 10, 3600.0)
            cli = SqliteStore(path, owner=False)  # what `aep-relay dlq list` does
            await cli.open()
            try:
                assert await cli.dead_letters(DeadLetterFilter()) == []
            finally:
                await cli.close()
            assert await relay.lease("zendesk", 10, 3600.0) == []
            assert await relay.mark_delivered(leased, {"status": 200}) is True
        finally:
            await relay.close()

    asyncio.run(scenario())


def test_the_pending_count_follows_what_another_process_replays(tmp_path: Path) -> None:
    """Backpressure counts the dead letters that `aep-relay dlq replay` made pending again,
    from the relay's next write on, and is not recounted while no one else writes."""
    path = str(tmp_path / "relay.db")
    letters = [new() for _ in range(3)]

    class CountingRecounts(SqliteStore):
        recounts = 0

        def _recount(self, conn: sqlite3.Connection) -> None:
            self.recounts += 1
            super()._recount(conn)

    async def scenario() -> None:
        relay = CountingRecounts(path)
        await relay.open()
        try:
            await relay.enqueue(letters, max_pending=BIG, idempotency_ttl=TTL)
            for leased in await relay.lease("zendesk", 10, 30.0):
                assert await relay.mark_dead(leased, {"code": "bad_request"}) is True
            for _ in range(5):
                await relay.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL)
            assert relay.pending_estimate == 5
            assert relay.recounts == 1  # when the store opened
            cli = SqliteStore(path, owner=False)
            await cli.open()
            try:
                assert await cli.replay(DeadLetterFilter()) == 3
            finally:
                await cli.close()
            with pytest.raises(Overloaded):
                await relay.enqueue([new()], max_pending=8, idempotency_ttl=TTL)
            assert relay.pending_estimate == 8
            assert relay.recounts == 2
        finally:
            await relay.close()

    asyncio.run(scenario())


def test_unopened_or_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "relay.db"))

    async def scenario() -> None:
        with pytest.raises(StoreUnavailable):
            await store.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL)
        await store.open()
        d = new()
        await store.enqueue([d], max_pending=BIG, idempotency_ttl=TTL)
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.get(d.id)
        with pytest.raises(StoreUnavailable):
            await store.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL)

    asyncio.run(scenario())


def test_store_that_cannot_open_its_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "relay.db").mkdir()  # a directory where the database file should be
    store = SqliteStore(str(tmp_path / "relay.db"))

    async def scenario() -> None:
        with pytest.raises(StoreUnavailable):
            await store.open()
        await store.close()

    asyncio.run(scenario())


def test_a_full_disk_fails_the_write_as_unavailable_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SqliteStore(str(path))
    kept = new()
    big = [new(body={"x": "y" * 50_000}) for _ in range(3)]

    async def scenario(s: Store) -> None:
        await s.enqueue([kept], max_pending=BIG, idempotency_ttl=TTL)
        # Simulate a full disk: cap the file at its current size on the writer's connection.
        assert isinstance(s, SqliteStore)
        await s._run(lambda conn: conn.execute("PRAGMA max_page_count = 1").fetchall())
        with pytest.raises(StoreUnavailable):
            await s.enqueue(big, max_pending=BIG, idempotency_ttl=TTL)
        assert await s.get_many([d.id for d in big]) == []
        assert [d.id for d in await s.get_many([kept.id])] == [kept.id]
        assert (await s.stats()).pending == {"zendesk": 1}
        assert s.pending_estimate == 1

    run(store, scenario)


def test_a_call_racing_close_is_answered(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "relay.db"))

    async def scenario() -> None:
        await store.open()
        closing_task = asyncio.create_task(store.close())
        await asyncio.sleep(0)  # close() has asked the writer to stop and waits for it
        late = asyncio.create_task(store.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL))
        done, _ = await asyncio.wait({late}, timeout=1.0)
        await closing_task
        if not done:
            late.cancel()
        assert late in done
        assert isinstance(late.exception(), StoreUnavailable)

    asyncio.run(scenario())


def _the_live_key_holds_and_the_expired_one_is_free(path: Path) -> None:
    """After a migration: events "evt-live" (held by "live") and "evt-gone" (expired) sent again
    are a duplicate and a new delivery, and the store is at schema 4."""
    again_live = new(event_id="evt-live")
    again_gone = new(event_id="evt-gone")

    async def scenario(s: Store) -> list[EnqueueResult]:
        return await s.enqueue([again_live, again_gone], max_pending=BIG, idempotency_ttl=TTL)

    assert run(SqliteStore(str(path)), scenario) == [
        EnqueueResult(ResultStatus.DUPLICATE, "live"),
        EnqueueResult(ResultStatus.QUEUED, again_gone.id),
    ]
    assert _query(path, "SELECT version FROM schema_version") == [(4,)]


# The version 1 layout, as the relay created it before idempotency keys moved into deliveries.
SCHEMA_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY, mapping TEXT NOT NULL, destination TEXT NOT NULL, event_id TEXT,
    request_id TEXT, method TEXT NOT NULL, path TEXT NOT NULL, body BLOB NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due_at REAL, lease_token TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, last_code TEXT, last_problem TEXT,
    response TEXT
);
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
"""


def test_a_version_1_store_keeps_its_live_keys_after_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    now = time.time()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(SCHEMA_V1)
        for id_, event_id, expires_at in (("live", "evt-live", now + 3600), ("gone", "evt-gone", now - 1)):
            conn.execute(
                "INSERT INTO deliveries (id, mapping, destination, event_id, method, path, body, status, "
                "due_at, created_at, updated_at) VALUES (?, 'm1', 'zendesk', ?, 'POST', '/x', '{}', "
                "'pending', ?, ?, ?)",
                (id_, event_id, now, now, now),
            )
            conn.execute("INSERT INTO idempotency VALUES (?, ?, ?)", (f"m1\x1f{event_id}", id_, expires_at))
    _the_live_key_holds_and_the_expired_one_is_free(path)
    assert _query(path, "SELECT name FROM sqlite_master WHERE name = 'idempotency'") == []
    assert _query(path, "SELECT COUNT(*) FROM deliveries") == [(3,)]


def test_a_finished_delivery_stays_while_its_key_is_live(tmp_path: Path) -> None:
    """A retention shorter than the idempotency TTL must not forget the event."""
    first = new(event_id="evt-1")
    again = new(event_id="evt-1")

    async def scenario(s: Store) -> list[EnqueueResult]:
        await s.enqueue([first], max_pending=BIG, idempotency_ttl=TTL)
        [leased] = await s.lease("zendesk", 10, 30.0)
        assert await s.mark_delivered(leased, {"status": 200}) is True
        assert await s.cleanup(time.time() + 60) == 0
        return await s.enqueue([again], max_pending=BIG, idempotency_ttl=TTL)

    assert run(SqliteStore(str(tmp_path / "relay.db")), scenario) == [
        EnqueueResult(ResultStatus.DUPLICATE, first.id)
    ]


def test_purging_a_dead_letter_forgets_its_key(tmp_path: Path) -> None:
    first = new(event_id="evt-1")
    again = new(event_id="evt-1")

    async def scenario(s: Store) -> list[EnqueueResult]:
        await s.enqueue([first], max_pending=BIG, idempotency_ttl=TTL)
        [leased] = await s.lease("zendesk", 10, 30.0)
        assert await s.mark_dead(leased, {"code": "bad_request"}) is True
        assert await s.purge(DeadLetterFilter()) == 1
        return await s.enqueue([again], max_pending=BIG, idempotency_ttl=TTL)

    assert run(SqliteStore(str(tmp_path / "relay.db")), scenario) == [
        EnqueueResult(ResultStatus.QUEUED, again.id)
    ]


def _version_2_store(path: Path, now: float) -> None:
    """A store as a schema 2 relay left it: a live key, an expired one, the unique key index."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(
            SCHEMA_V1.replace("INSERT INTO schema_version VALUES (1);", "").split("CREATE TABLE idempotency")[
                0
            ]
        )
        conn.execute("INSERT INTO schema_version VALUES (2)")
        conn.execute("ALTER TABLE deliveries ADD COLUMN idem_key TEXT")
        conn.execute("ALTER TABLE deliveries ADD COLUMN idem_expires_at REAL")
        conn.execute(
            "CREATE UNIQUE INDEX deliveries_idem ON deliveries (idem_key) WHERE idem_key IS NOT NULL"
        )
        for id_, event_id, expires_at in (("live", "evt-live", now + 3600), ("gone", "evt-gone", now - 1)):
            conn.execute(
                "INSERT INTO deliveries (id, mapping, destination, event_id, method, path, body, status, "
                "due_at, created_at, updated_at, idem_key, idem_expires_at) VALUES (?, 'm1', 'zendesk', ?, "
                "'POST', '/x', '{}', 'pending', ?, ?, ?, ?, ?)",
                (id_, event_id, now, now, now, f"m1\x1f{event_id}", expires_at),
            )


def test_a_version_2_store_drops_its_key_index_and_keeps_its_live_keys(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    _version_2_store(path, time.time())
    _the_live_key_holds_and_the_expired_one_is_free(path)
    assert _query(
        path,
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' "
        "AND name != 'deliveries_key'",  # SqlKeys' own, not unique
    ) == [
        ("sqlite_autoindex_deliveries_1",),
        ("deliveries_due",),
        ("deliveries_dead",),
        ("deliveries_finished",),
    ]


def test_the_latest_holder_of_a_key_holds_it_after_a_restart(tmp_path: Path) -> None:
    """Two rows carry the key (the first's TTL ran out): the index rebuilt at start keeps the second."""
    path = str(tmp_path / "relay.db")
    first, second, third = (new(event_id="evt-1") for _ in range(3))

    async def first_life(s: Store) -> None:
        await s.enqueue([first], max_pending=BIG, idempotency_ttl=0.001)
        await asyncio.sleep(0.01)
        assert await s.enqueue([second], max_pending=BIG, idempotency_ttl=TTL) == [
            EnqueueResult(ResultStatus.QUEUED, second.id)
        ]

    async def second_life(s: Store) -> list[EnqueueResult]:
        return await s.enqueue([third], max_pending=BIG, idempotency_ttl=TTL)

    run(SqliteStore(path), first_life)
    assert run(SqliteStore(path), second_life) == [EnqueueResult(ResultStatus.DUPLICATE, second.id)]


def test_a_write_that_fails_gives_its_keys_back(tmp_path: Path) -> None:
    kept = new(event_id="evt-kept")
    big = [new(event_id=f"evt-{i}", body={"x": "y" * 50_000}) for i in range(3)]
    again = [new(event_id=f"evt-{i}") for i in range(3)]

    async def scenario(s: Store) -> list[str]:
        assert isinstance(s, SqliteStore)
        await s.enqueue([kept], max_pending=BIG, idempotency_ttl=TTL)
        await s._run(lambda conn: conn.execute("PRAGMA max_page_count = 1").fetchall())
        with pytest.raises(StoreUnavailable):
            await s.enqueue(big, max_pending=BIG, idempotency_ttl=TTL)
        await s._run(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823").fetchall())
        results = await s.enqueue([*again, new(event_id="evt-kept")], max_pending=BIG, idempotency_ttl=TTL)
        return [r.status for r in results]

    assert run(SqliteStore(str(tmp_path / "relay.db")), scenario) == [
        ResultStatus.QUEUED,
        ResultStatus.QUEUED,
        ResultStatus.QUEUED,
        ResultStatus.DUPLICATE,
    ]


def test_a_refused_enqueue_holds_no_key(tmp_path: Path) -> None:
    first = new(event_id="evt-1")
    again = new(event_id="evt-1")

    async def scenario(s: Store) -> list[EnqueueResult]:
        with pytest.raises(Overloaded):
            await s.enqueue([first], max_pending=0, idempotency_ttl=TTL)
        return await s.enqueue([again], max_pending=BIG, idempotency_ttl=TTL)

    assert run(SqliteStore(str(tmp_path / "relay.db")), scenario) == [
        EnqueueResult(ResultStatus.QUEUED, again.id)
    ]


def test_a_dead_letter_purged_by_another_process_frees_its_key(tmp_path: Path) -> None:
    path = str(tmp_path / "relay.db")
    first = new(event_id="evt-1")
    again = new(event_id="evt-1")

    async def scenario() -> list[EnqueueResult]:
        relay = SqliteStore(path)
        await relay.open()
        try:
            await relay.enqueue([first], max_pending=BIG, idempotency_ttl=TTL)
            [leased] = await relay.lease("zendesk", 10, 30.0)
            assert await relay.mark_dead(leased, {"code": "bad_request"}) is True
            cli = SqliteStore(path, owner=False)  # what `aep-relay dlq purge` does
            await cli.open()
            try:
                assert await cli.purge(DeadLetterFilter()) == 1
            finally:
                await cli.close()
            return await relay.enqueue([again], max_pending=BIG, idempotency_ttl=TTL)
        finally:
            await relay.close()

    assert asyncio.run(scenario()) == [EnqueueResult(ResultStatus.QUEUED, again.id)]


def test_keys_looked_up_in_sql_have_their_index(tmp_path: Path) -> None:
    """The plain alternative to the keys in memory (tests/store runs every behaviour test on
    both) makes its index when it opens a store, and keeps the keys of a migrated one."""
    path = tmp_path / "relay.db"
    _version_2_store(path, time.time())
    key_index = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'deliveries_key'"
    again_live, again_gone = new(event_id="evt-live"), new(event_id="evt-gone")

    async def scenario(s: Store) -> list[EnqueueResult]:
        return await s.enqueue([again_live, again_gone], max_pending=BIG, idempotency_ttl=TTL)

    assert run(SqliteStore(str(path), keys=SqlKeys()), scenario) == [
        EnqueueResult(ResultStatus.DUPLICATE, "live"),
        EnqueueResult(ResultStatus.QUEUED, again_gone.id),
    ]
    assert _query(path, key_index) == [(1,)]
    assert _query(path, "SELECT version FROM schema_version") == [(4,)]
