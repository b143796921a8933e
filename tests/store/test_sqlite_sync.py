"""The SQLite store commits on the event loop and answers after the sync thread flushed the log."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from app.delivery import sqlite as sqlite_module
from app.delivery import wal_sync
from app.delivery.sqlite import SqliteStore
from app.delivery.store import DUPLICATE, QUEUED, Store, StoreUnavailable
from tests.store.conftest import BIG, TTL, new, run


class HeldFlush:
    """``os.fdatasync`` as the sync thread calls it, held at a gate until the test opens it."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()
        self._real = os.fdatasync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.entered.set()
        self.gate.wait(10)
        self._real(fd)


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection (as the CLI's would) holds the file's write lock."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")


def test_an_enqueue_is_answered_only_after_the_log_is_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flush = HeldFlush()
    monkeypatch.setattr(wal_sync.os, "fdatasync", flush)
    flush.gate.set()  # the migration at open passes

    async def scenario(s: Store) -> tuple[bool, str]:
        flush.gate.clear()
        flush.entered.clear()
        task = asyncio.ensure_future(s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL))
        assert await asyncio.to_thread(flush.entered.wait, 10)
        await asyncio.sleep(0.2)
        answered_while_held = task.done()
        flush.gate.set()
        return answered_while_held, (await task)[0].status

    assert run(SqliteStore(str(tmp_path / "relay.db")), scenario) == (False, QUEUED)
    assert flush.calls >= 2


def test_with_synchronous_normal_the_log_is_not_flushed_per_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flush = HeldFlush()
    monkeypatch.setattr(wal_sync.os, "fdatasync", flush)

    async def scenario(s: Store) -> str:
        return (await s.enqueue([new()], max_pending=BIG, idempotency_ttl=TTL))[0].status

    assert run(SqliteStore(str(tmp_path / "relay.db"), synchronous="NORMAL"), scenario) == QUEUED
    assert flush.calls == 0


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
    assert (status, pending) == (QUEUED, 1)


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

    assert run(SqliteStore(str(path)), scenario) == (QUEUED, 1)


def test_checkpoints_keep_the_log_from_growing_with_the_commits(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    commits = 8 * wal_sync.CHECKPOINT_EVERY
    body = {"blob": "x" * 2000}

    async def scenario(s: Store) -> int:
        for _ in range(commits):  # one commit each: awaited one by one
            await s.enqueue([new(body=body) for _ in range(4)], max_pending=BIG, idempotency_ttl=TTL)
        return os.stat(f"{path}-wal").st_size  # read while open: the last close removes the log

    largest = run(SqliteStore(str(path)), scenario)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (4 * commits,)
    # without checkpoints the log holds every commit's pages: 24 MB here; with them it starts
    # over every CHECKPOINT_EVERY commits and keeps the size of one such run (about 3.5 MB)
    assert largest < 8_000_000


def test_stats_read_on_their_own_connection_while_the_write_lock_is_held(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def scenario(s: Store) -> int:
        await s.enqueue([new(), new()], max_pending=BIG, idempotency_ttl=TTL)
        with write_lock_held(path):  # a batch would wait for it; a read does not
            stats = await asyncio.wait_for(s.stats(), timeout=5)
        return sum(stats.pending.values())

    assert run(SqliteStore(str(path)), scenario) == 2


def test_a_failed_flush_is_not_acknowledged_and_the_next_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fdatasync
    failing = {"on": False}

    def fdatasync(fd: int) -> None:
        if failing["on"]:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(wal_sync.os, "fdatasync", fdatasync)
    first, again = new(event_id="evt-1"), new(event_id="evt-1")

    async def scenario(s: Store) -> str:
        failing["on"] = True
        with pytest.raises(StoreUnavailable, match="cannot flush"):
            await s.enqueue([first], max_pending=BIG, idempotency_ttl=TTL)
        failing["on"] = False
        # committed, so the event's key is taken: sent again, it is answered `duplicate`
        return (await s.enqueue([again], max_pending=BIG, idempotency_ttl=TTL))[0].status

    assert run(SqliteStore(str(tmp_path / "relay.db")), scenario) == DUPLICATE
