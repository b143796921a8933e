"""The SQLite store's log flush: answers operations once their commit is on disk, and
checkpoints the write-ahead log.

The store commits on the event loop with ``synchronous=NORMAL``: SQLite writes the commit's
frames to the ``-wal`` file and returns without a flush. SQLite's ``FULL`` differs from
``NORMAL`` in WAL mode only by a sync of the ``-wal`` file after each commit
(https://sqlite.org/pragma.html#pragma_synchronous). ``WalSync`` makes that sync, with
``fdatasync`` on its own descriptor of the same file, for every commit made before it (one
flush for all the batches waiting), and only then answers their callers. A crash of the
process loses nothing written (the frames are in the kernel's cache), and a power loss loses
nothing answered: the frames are on disk, and SQLite's recovery keeps every frame up to the
last valid commit. The rest of the log's safety is SQLite's own at ``NORMAL``: it syncs the
log before a checkpoint copies it, the database after, and the log's header when the log
starts over.

One flush is in flight at a time; commits made meanwhile wait for the next. On Linux the flush
is asked of the kernel through Linux AIO (``IOCB_CMD_FDSYNC``, with the ``caio`` library):
the kernel's own worker flushes, and the event loop hears of the end on an eventfd, so no
thread of ours takes the core and the interpreter's lock for it. That cost the relay about
10 % of its ingest throughput (bench/RESULTS.md, sixteenth session). Where Linux AIO is
missing or refuses the file, the ``sqlite-sync`` thread calls ``os.fdatasync`` instead.

Checkpoints run on that thread (the store's connection has automatic checkpoints off), so
that copying pages and flushing the database file do not stop the event loop. The log only
starts over from its beginning (instead of growing) after a checkpoint that copied all of it,
which commits made meanwhile prevent: so a ``PASSIVE`` checkpoint copies most of it while the
store commits, then a ``RESTART`` one holds the write lock for the rest, and the store's
commits wait for that short while (``SqliteStore`` retries a busy commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import structlog

from app.delivery.store import StoreUnavailable

Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]
Flushed = Callable[[OSError | None], None]
CHECKPOINT_EVERY = 64  # commits between checkpoints: the log stays at a few MB (3.5 MB at 32 rows a commit)

log = structlog.get_logger("app.delivery")


class StoreSyncFailed(StoreUnavailable):
    """The log could not be flushed: the operations were committed but may not survive a power
    loss, so they are not acknowledged (sent again, an event is answered ``duplicate``)."""


class FlushMethod(enum.Enum):
    """How the log is flushed: ``AUTO`` takes Linux AIO where it works, else the thread."""

    AUTO = "auto"
    AIO = "aio"
    THREAD = "thread"


class _Job(enum.Enum):
    FLUSH = 1
    CHECKPOINT = 2
    STOP = 3


class AioFlush:
    """``fdatasync`` through Linux AIO: submitted from the event loop, flushed by the kernel,
    and reported back to the loop on an eventfd it watches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from caio.linux_aio import Context  # ImportError where Linux AIO is not built

        self._loop = loop
        self._context = Context(max_requests=2)  # one flush in flight
        self._in_flight: Any = None  # the operation, kept alive until it completes
        loop.add_reader(self._context.fileno, self._on_event)

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    def flush(self, fd: int, done: Flushed) -> None:
        """Ask for ``fdatasync(fd)``; ``done(error)`` runs on the loop when it has ended.
        Raises ``OSError`` when the kernel refuses it (no AIO flush for this file)."""
        from caio.linux_aio import Operation

        operation = Operation.fdsync(fd)
        operation.set_callback(lambda result: self._completed(result, done))
        try:
            accepted = self._context.submit(operation)
        except (ValueError, SystemError) as exc:  # caio's error types for io_submit's errno
            raise OSError(str(exc)) from exc
        if accepted != 1:
            raise OSError("io_submit accepted no operation")
        self._in_flight = operation

    def _completed(self, result: int, done: Flushed) -> None:
        self._in_flight = None
        if result >= 1 << 63:  # the kernel's negative errno, as caio passes it (unsigned)
            errno = (1 << 64) - result
            done(OSError(errno, os.strerror(errno)))
        else:
            done(None)

    def _on_event(self) -> None:
        with contextlib.suppress(BlockingIOError):  # completions already counted
            self._context.poll()
        while self._context.process_events():
            pass

    def close(self) -> None:
        """Stop watching the eventfd (call when no flush is in flight)."""
        self._loop.remove_reader(self._context.fileno)


class WalSync:
    """One per open store file, used from its event loop: ``submit`` a committed batch's
    outcomes, and they are delivered to their futures after the log is flushed (when
    ``flush``) and in order."""

    def __init__(
        self, db_path: str, *, flush: bool, synchronous: str, method: FlushMethod = FlushMethod.AUTO
    ) -> None:
        self.db_path = db_path
        self.flush = flush
        self.synchronous = synchronous
        self.requested = method
        self.method: FlushMethod | None = None  # chosen at start when flushing
        self.commits = 0
        self.flushes = 0  # ended, failed or not
        self._checkpointed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aio: AioFlush | None = None
        self._wal: int | None = None
        self._waiting: list[Outcome] = []
        self._flushing: list[Outcome] | None = None  # the outcomes of the flush in flight
        self._idle = asyncio.Event()
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite-sync", daemon=True)

    def start(self) -> None:
        """Start on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._idle.set()
        if self.flush and self.requested is not FlushMethod.THREAD:
            try:
                self._aio = AioFlush(self._loop)
            except (ImportError, OSError) as exc:
                if self.requested is FlushMethod.AIO:
                    raise
                log.info("store_flush_thread", reason=f"no Linux AIO: {exc}")
        self.method = (FlushMethod.AIO if self._aio else FlushMethod.THREAD) if self.flush else None
        self._thread.start()

    def submit(self, outcomes: list[Outcome]) -> None:
        """Answer ``outcomes`` (of a committed transaction) once the commit is durable."""
        self.commits += 1
        if not self.flush:
            set_results(outcomes)
        else:
            self._waiting.extend(outcomes)
            if self._flushing is None:
                self._start_flush()
        if self.commits - self._checkpointed >= CHECKPOINT_EVERY:
            self._checkpointed = self.commits
            self._queue.put(_Job.CHECKPOINT)

    async def stop(self) -> None:
        """Answer everything submitted, then end the thread."""
        await self._idle.wait()
        if self._aio is not None:
            self._aio.close()
            self._aio = None
        self._queue.put(_Job.STOP)
        await asyncio.to_thread(self._thread.join)
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None

    def _start_flush(self) -> None:
        self._flushing, self._waiting = self._waiting, []
        self._idle.clear()
        try:
            if self._wal is None:
                self._wal = os.open(self.db_path + "-wal", os.O_RDONLY)
            if self._aio is not None:
                try:
                    self._aio.flush(self._wal, self._flushed)
                    return
                except OSError as exc:  # this file has no AIO flush: the thread's from now on
                    log.warning("store_flush_thread", reason=f"Linux AIO refused the flush: {exc}")
                    self._aio.close()
                    self._aio = None
                    self.method = FlushMethod.THREAD
            self._queue.put(_Job.FLUSH)
        except OSError as exc:
            self._flushed(exc)

    def _flushed(self, error: OSError | None) -> None:
        """The flush in flight has ended (on the loop): answer its callers, start the next."""
        outcomes, self._flushing = self._flushing or [], None
        self.flushes += 1
        if error is not None:
            log.error("store_sync_failed", error=str(error))
            failure = StoreSyncFailed(f"cannot flush {self.db_path}-wal: {error}")
            outcomes = [(future, None, failure) for future, _, _ in outcomes]
        set_results(outcomes)
        if self._waiting:
            self._start_flush()
        else:
            self._idle.set()

    def _serve(self) -> None:
        """The thread: flushes (when not through AIO) and checkpoints, in order."""
        conn: sqlite3.Connection | None = None
        try:
            while True:
                job = self._queue.get()
                if job is _Job.STOP:
                    return
                if job is _Job.FLUSH:
                    error: OSError | None = None
                    try:
                        os.fdatasync(self._wal)  # type: ignore[arg-type]  # set before FLUSH is queued
                    except OSError as exc:
                        error = exc
                    self._call_on_loop(self._flushed, error)
                elif job is _Job.CHECKPOINT:
                    conn = _checkpoint(conn or self._checkpointer())
        finally:
            if conn is not None:
                conn.close()

    def _call_on_loop(self, callback: Flushed, error: OSError | None) -> None:
        assert self._loop is not None  # nosec B101 - started before any job is queued
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(callback, error)

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
    A failure is logged, never raised: the next checkpoint catches up, and the log only grows
    meanwhile."""
    if conn is not None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:
            log.warning("store_checkpoint_failed", error=str(exc))
    return conn


def set_results(items: list[Outcome]) -> None:
    """Settle each future (on its loop) unless its caller gave up on it."""
    for future, result, error in items:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
