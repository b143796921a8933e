"""SQLite backend specifics: WAL mode, the schema version and group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from app.delivery.sqlite import SqliteStore
from app.delivery.store import QUEUED, DeadLetterFilter, Store, StoreUnavailable
from tests.store.conftest import BIG, TTL, new, run


class CountingStore(SqliteStore):
    """The real store, recording the size of every transaction the writer thread commits."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def _execute(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        self.batches.append(len(batch))
        super()._execute(conn, batch)


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def test_file_is_in_wal_mode_with_schema_version_1(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "relay.db"

    async def touch(s: Store) -> None:
        await s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL)

    run(SqliteStore(str(path)), touch)
    assert path.is_file()
    assert _query(path, "PRAGMA journal_mode") == [("wal",)]
    assert _query(path, "SELECT version FROM schema_version") == [(1,)]
    assert _query(path, "SELECT COUNT(*) FROM deliveries") == [(1,)]
    # Opening again migrates nothing twice.
    run(SqliteStore(str(path)), touch)
    assert _query(path, "SELECT version FROM schema_version") == [(1,)]
    assert _query(path, "SELECT COUNT(*) FROM deliveries") == [(2,)]


def test_group_commit_groups_concurrent_writes(tmp_path: Path) -> None:
    store = CountingStore(str(tmp_path / "relay.db"))

    async def scenario(s: Store) -> tuple[int, list[int]]:
        assert isinstance(s, CountingStore)
        opened = len(s.batches)
        results = await asyncio.gather(
            *(s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL) for _ in range(100))
        )
        assert [r[0].status for r in results] == [QUEUED] * 100
        return opened, s.batches[opened:]

    opened, batches = run(store, scenario)
    assert opened == 1  # the migration
    assert sum(batches) == 100  # every enqueue ran, each exactly once
    assert len(batches) <= 10, batches  # far fewer transactions than writes
    assert _query(tmp_path / "relay.db", "SELECT COUNT(*) FROM deliveries") == [(100,)]


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
