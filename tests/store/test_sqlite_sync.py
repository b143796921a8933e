"""The SQLite store commits in its writer thread, with SQLite's own flush of the log (``FULL``)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from app.delivery import sqlite as sqlite_module
from app.delivery.sqlite import SqliteStore
from app.delivery.store import Store, StoreUnavailable
from app.status import ResultStatus
from tests.store.conftest import BIG, TTL, new, run


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection (as the CLI's would) holds the file's write lock."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


def _synchronous(store: SqliteStore) -> int:
    """The writer's connection's ``PRAGMA synchronous`` (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA)."""

    async def scenario(s: Store) -> int:
        assert isinstance(s, SqliteStore)
        level: int = await s._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        return level

    return run(store, scenario)


def test_by_default_every_commit_flushes_the_log(tmp_path: Path) -> None:
    assert _synchronous(SqliteStore(str(tmp_path / "relay.db"))) == 2


def test_with_synchronous_normal_the_log_is_not_flushed_per_commit(tmp_path: Path) -> None:
    assert _synchronous(SqliteStore(str(tmp_path / "relay.db"), synchronous="NORMAL")) == 1


def test_a_write_lock_held_elsewhere_delays_the_batch_without_stopping_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def scenario(s: Store) -> tuple[int, str, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        with write_lock_held(path):
            task = asyncio.ensure_future(s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL))
            await asyncio.sleep(0.3)
            waiting = ticks
            assert not task.done()
        status = (await task)[0].status
        ticker.cancel()
        count = await s.stats()
        return waiting, status, sum(count.pending.values())

    waiting, status, pending = run(SqliteStore(str(path)), scenario)
    assert waiting >= 10  # the loop went on while the batch waited for the lock
    assert (status, pending) == (ResultStatus.QUEUED, 1)


def test_a_write_lock_held_too_long_answers_store_unavailable_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "relay.db"
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT", 0.2)

    async def scenario(s: Store) -> tuple[str, int]:
        with write_lock_held(path), pytest.raises(StoreUnavailable, match="locked"):
            await s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL)
        after = await s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL)
        return after[0].status, sum((await s.stats()).pending.values())

    assert run(SqliteStore(str(path)), scenario) == (ResultStatus.QUEUED, 1)


def test_checkpoints_keep_the_log_from_growing_with_the_commits(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    commits = 512
    body = {"blob": "x" * 2000}

    async def scenario(s: Store) -> int:
        for _ in range(commits):  # one commit each: awaited one by one
            await s.enqueue([new(body=body) for _ in range(4)], max_pending=BIG, idempotency_ttl=TTL)
        return os.stat(f"{path}-wal").st_size  # read while open: the last close removes the log

    largest = run(SqliteStore(str(path)), scenario)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (4 * commits,)
    # without checkpoints the log holds every commit's pages: 24 MB here; with SQLite's own
    # (every 1,000 pages) it starts over and keeps the size of one such run (about 4 MB)
    assert largest < 8_000_000


def test_stats_read_on_their_own_connection_while_the_write_lock_is_held(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def scenario(s: Store) -> int:
        await s.enqueue([new(), new()], max_pending=BIG, idempotency_ttl=TTL)
        with write_lock_held(path):  # a batch would wait for it; a read does not
            stats = await asyncio.wait_for(s.stats(), timeout=5)
        return sum(stats.pending.values())

    assert run(SqliteStore(str(path)), scenario) == 2
