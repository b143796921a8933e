"""The SQLite store's sync thread: answers operations once their commit is on disk, and
checkpoints the write-ahead log.

The store commits on the event loop with ``synchronous=NORMAL``: SQLite writes the commit's
frames to the ``-wal`` file and returns without a flush. SQLite's ``FULL`` differs from
``NORMAL`` in WAL mode only by a sync of the ``-wal`` file after each commit
(https://sqlite.org/pragma.html#pragma_synchronous). This thread makes that sync, with
``fdatasync`` on its own descriptor of the same file, for every commit made before it (one
flush for all the batches waiting), and only then answers their callers. A crash of the
process loses nothing written (the frames are in the kernel's cache), and a power loss loses
nothing answered: the frames are on disk, and SQLite's recovery keeps every frame up to the
last valid commit. The rest of the log's safety is SQLite's own at ``NORMAL``: it syncs the
log before a checkpoint copies it, the database after, and the log's header when the log
starts over.

Checkpoints run here too (the store's connection has automatic checkpoints off), so that
copying pages and flushing the database file do not stop the event loop. The log only starts
over from its beginning (instead of growing) after a checkpoint that copied all of it, which
commits made meanwhile prevent: so a ``PASSIVE`` checkpoint copies most of it while the store
commits, then a ``RESTART`` one holds the write lock for the rest, and the store's commits
wait for that short while (``SqliteStore`` retries a busy commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from typing import Any

import structlog

from app.delivery.store import StoreUnavailable
from app.delivery.write_health import WriteHealth

Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]
Commit = tuple[list[Outcome], int, bool]  # a transaction's outcomes, its write ticket, whether it wrote
CHECKPOINT_EVERY = 64  # commits between checkpoints: the log stays at a few MB (3.5 MB at 32 rows a commit)

log = structlog.get_logger("app.delivery")


class StoreSyncFailed(StoreUnavailable):
    """The log could not be flushed: the operations were committed but may not survive a power
    loss, so they are not acknowledged (sent again, an event is answered ``duplicate``)."""


class WalSync:
    """One thread per open store file: ``submit`` a committed batch's outcomes, and they are
    delivered to their futures after the log is flushed (when ``flush``) and in order."""

    def __init__(self, db_path: str, *, flush: bool, synchronous: str, health: WriteHealth) -> None:
        self.db_path = db_path
        self.flush = flush
        self.synchronous = synchronous
        self.health = health  # a flush that fails is a failed write; one that works, a success
        self.commits = 0  # submitted by the store's event loop; read here
        self._queue: queue.SimpleQueue[Commit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, outcomes: list[Outcome], ticket: int, wrote: bool) -> None:
        """Answer ``outcomes`` (of a committed transaction) once the commit is durable; note in
        ``health`` under the transaction's ``ticket`` whether it is (when it ``wrote``)."""
        self.commits += 1
        self._queue.put((outcomes, ticket, wrote))

    def stop(self) -> None:
        """Answer everything submitted, then end the thread (blocks until it has)."""
        self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        wal: int | None = None
        conn: sqlite3.Connection | None = None
        checkpointed = 0
        try:
            while True:
                batches = [self._queue.get()]
                while True:
                    try:
                        batches.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                commits = [batch for batch in batches if batch is not None]
                outcomes = [outcome for batch, _, _ in commits for outcome in batch]
                if outcomes:
                    last = max(ticket for _, ticket, _ in commits)
                    try:
                        if self.flush:
                            wal = wal if wal is not None else os.open(self.db_path + "-wal", os.O_RDONLY)
                            os.fdatasync(wal)
                    except OSError as exc:
                        log.error("store_sync_failed", error=str(exc))
                        failure = StoreSyncFailed(f"cannot flush {self.db_path}-wal: {exc}")
                        self.health.failed(str(failure), last)
                        outcomes = [(future, None, failure) for future, _, _ in outcomes]
                    else:
                        wrote = [ticket for _, ticket, wrote in commits if wrote]
                        if wrote:
                            self.health.succeeded(max(wrote))
                    _settle_all(outcomes)
                if self.commits - checkpointed >= CHECKPOINT_EVERY:
                    checkpointed = self.commits
                    conn = _checkpoint(conn or self._checkpointer())
                if None in batches:
                    return
        finally:
            if wal is not None:
                os.close(wal)
            if conn is not None:
                conn.close()

    def _checkpointer(self) -> sqlite3.Connection | None:
        try:
            conn = sqlite3.connect(self.db_path, isolation_level=None)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")  # the checkpoint's own syncs
            conn.execute("PRAGMA busy_timeout=2000")  # waits for the store's commit to end
        except sqlite3.Error as exc:
            log.warning("store_checkpoint_failed", error=str(exc))
            return None
        return conn


def _checkpoint(conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
    """Copy the log into the database while commits go on (``PASSIVE``), then, holding them
    back, what they added meanwhile (``RESTART``): the log starts over after a short wait.
    A failure is logged, never raised (this thread answers the store's callers): the next
    checkpoint catches up, and the log only grows meanwhile."""
    if conn is not None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:
            log.warning("store_checkpoint_failed", error=str(exc))
    return conn


def _settle_all(outcomes: list[Outcome]) -> None:
    """Answer a batch's callers with one wake-up per event loop (not one per caller)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(set_results, items)


def set_results(items: list[Outcome]) -> None:
    """Settle each future (on its loop) unless its caller gave up on it."""
    for future, result, error in items:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
