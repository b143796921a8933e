"""SQLite store (the default): one WAL file, group commit in one writer thread.

Operations queue on the event loop: each ``_run`` adds its operation to the next batch (the
operations of every request that arrived while the last batch was written) and the store's
writer thread runs the batch in one transaction on the store's one connection, SQLite at
``synchronous=FULL`` (the commit flushes the log before the callers are answered). When an
operation breaks the transaction, the batch is rolled back and each operation runs alone, so
that one failure fails one caller. Many concurrent ingests thus cost one commit and one flush,
and neither the SQL nor the flush stops the event loop. Long read-only scans (``stats``) run
on a connection of their own in a worker thread (``_read``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from app.delivery.erasure import Matcher
from app.delivery.key_index import MemoryKeys
from app.delivery.store import (
    AttemptRecord,
    DeadLetterFilter,
    Delivery,
    EnqueueResult,
    Erased,
    Identifier,
    NewDelivery,
    Overloaded,
    StoreStats,
    StoreUnavailable,
    Traced,
)
from app.delivery.write_health import WriteHealth
from app.destinations.base import OutboundRequest
from app.status import DeliveryStatus, ResultStatus

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]
Batch = list[tuple[Operation, "asyncio.Future[Any]"]]
Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]  # a future, its result or error

SCHEMA_VERSION = 4
# Version 2 keeps each delivery's idempotency key (mapping + event id) in its own row: one
# statement per stored delivery instead of a second table (version 1). Version 3 drops its
# unique index: how the keys are looked up is the store's `keys` (`Keys`), which creates the
# index it needs (`deliveries_key`) or drops it when it opens. Version 4 adds the attempts of
# each delivery (`attempts`, deleted with it by a trigger, whoever deletes it). `trace` scans
# for an event id instead of using an index on it: such an index halved enqueue throughput
# (random keys: 2-4x the log pages per commit), and a trace is a rare admin read (docs/decisions.md).
SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    mapping TEXT NOT NULL,
    destination TEXT NOT NULL,
    event_id TEXT,
    request_id TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at REAL,
    lease_token TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_code TEXT,
    last_problem TEXT,
    response TEXT,
    idem_key TEXT,
    idem_expires_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, due_at)
    WHERE status IN ('pending', 'in_flight');
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (updated_at) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (updated_at)
    WHERE status IN ('delivered', 'dry_run');
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    code TEXT NOT NULL,
    upstream_status INTEGER,
    latency_ms REAL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
CREATE TRIGGER IF NOT EXISTS deliveries_gone AFTER DELETE ON deliveries BEGIN
    DELETE FROM attempts WHERE delivery_id = OLD.id;
END;
"""
# Version 1 stores: move the live keys into their deliveries, then drop the old table.
MIGRATE_1_TO_2 = """
ALTER TABLE deliveries ADD COLUMN idem_key TEXT;
ALTER TABLE deliveries ADD COLUMN idem_expires_at REAL;
UPDATE deliveries SET idem_key = idempotency.key, idem_expires_at = idempotency.expires_at
    FROM idempotency WHERE idempotency.delivery_id = deliveries.id AND idempotency.expires_at > :now;
DROP TABLE idempotency;
UPDATE schema_version SET version = 2;
"""
# Version 2's index was unique: a key whose TTL ran out may be taken by a later delivery.
MIGRATE_2_TO_3 = """
DROP INDEX IF EXISTS deliveries_idem;
UPDATE schema_version SET version = 3;
"""
# Version 3 stores: SCHEMA, run after the migrations, adds what version 4 has (the attempts
# table and its trigger); none has a history yet.
MIGRATE_3_TO_4 = """
UPDATE schema_version SET version = 4;
"""
KEY_INDEX = "CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (idem_key) WHERE idem_key IS NOT NULL"
# The live holders of some keys (at most one a key: a key is taken only while it is free).
HOLDERS = "SELECT idem_key, id FROM deliveries WHERE idem_key IN ({marks}) AND idem_expires_at > ?"
COLUMNS = (
    "id, mapping, destination, event_id, request_id, method, path, body, status, attempts, due_at, "
    "lease_token, created_at, updated_at, last_problem, response"
)
ACTIVE = f"status IN ('{DeliveryStatus.PENDING}', '{DeliveryStatus.IN_FLIGHT}')"
INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, mapping, destination, event_id, request_id, method, path, "
    "body, status, attempts, due_at, created_at, updated_at, idem_key, idem_expires_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)"
)
IDEM_KEY, IDEM_EXPIRES = 12, 13  # the idempotency key's place among INSERT_DELIVERY's parameters
INSERT_CHUNK = 32  # rows per multi-row INSERT (so at most 32 statement shapes are cached)
KEYS_CHUNK = 32  # keys per look-up of their holders (HOLDERS), likewise
INSERT_ATTEMPT = (
    "INSERT INTO attempts (delivery_id, at, outcome, code, upstream_status, latency_ms) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
ATTEMPTS = (
    "SELECT delivery_id, at, outcome, code, upstream_status, latency_ms FROM attempts "
    "WHERE delivery_id IN ({marks}) ORDER BY rowid"  # the order they were recorded in
)
ERASE_CHUNK = 5_000  # rows (by rowid) an erasure scans in one writer operation, between ingests
BUSY_TIMEOUT = 10.0  # seconds a batch waits for another connection's write lock, then StoreUnavailable


class Keys(Protocol):
    """How the store finds the live holders of idempotency keys (the writer thread calls it)."""

    def prepare(self, conn: sqlite3.Connection, *, load: bool) -> None:
        """At open, in the migration's transaction: the indexes it needs; ``load``: the store
        will take keys (the relay's, not the CLI's)."""

    def holders(self, conn: sqlite3.Connection, keys: list[str], now: float) -> dict[str, str]:
        """The stored deliveries holding ``keys`` until after ``now``: {key: delivery id}."""

    def took(self, key: str, delivery_id: str, expires_at: float) -> None:
        """``delivery_id`` is being stored with ``key`` until ``expires_at``."""

    def prune(self, now: float) -> int:
        """Forget what expired by ``now`` (cleanup); returns how many."""

    def forget(self, key: str, delivery_id: str) -> None:
        """``delivery_id`` was deleted (erased) and holds ``key`` no more, once committed."""


class SqlKeys:
    """The keys looked up in the rows' own column through an index (``deliveries_key``)."""

    def prepare(self, conn: sqlite3.Connection, *, load: bool) -> None:
        conn.execute(KEY_INDEX)

    def holders(self, conn: sqlite3.Connection, keys: list[str], now: float) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(keys, KEYS_CHUNK):
            found.update(conn.execute(HOLDERS.format(marks=",".join("?" * len(chunk))), [*chunk, now]))
        return found

    def took(self, key: str, delivery_id: str, expires_at: float) -> None:
        pass  # the row's own column

    def prune(self, now: float) -> int:
        return 0  # the rows' cleanup

    def forget(self, key: str, delivery_id: str) -> None:
        pass  # went with the row


def sqlite_path(url: str) -> str:
    """``sqlite:///relative/x.db``, ``sqlite:////abs/x.db`` or ``sqlite:///:memory:`` -> path."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not an sqlite URL: {url!r}")
    return url[len("sqlite:///") :]


class SqliteStore:
    """The ``Store`` protocol on one SQLite file in WAL mode."""

    def __init__(
        self, path: str, *, synchronous: str = "FULL", owner: bool = True, keys: Keys | None = None
    ) -> None:
        """``owner``: this process serves the store (the relay), so leases it finds in flight
        were its own before a restart and are due again; tools (the CLI) pass False.
        ``synchronous``: SQLite's setting; ``FULL`` (or ``EXTRA``) flushes the log in each
        commit, before the callers are answered. ``keys``: how idempotency keys are looked up;
        by default in memory (``MemoryKeys``, the fast path), else ``SqlKeys()``."""
        self.path = path
        self.synchronous = synchronous
        self.owner = owner
        self._keys: Keys = MemoryKeys() if keys is None else keys  # an empty MemoryKeys is falsy
        self._closing = False
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one it serves, from open()
        self._writer: ThreadPoolExecutor | None = None  # one thread: every batch, in turn
        self._batch: Batch = []  # operations waiting for the writer
        self._writing = False  # a batch is in the writer's hands
        self._flush_handle: asyncio.Handle | None = None
        self._pending = 0
        # PRAGMA data_version when the pending rows were counted; None before the schema exists
        self._counted_version: int | None = None
        self.write_health = WriteHealth()
        # the write_health ticket of the batch being written, and whether it committed a change
        self._ticket, self._wrote = 0, False

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        try:
            self._conn = await self._loop.run_in_executor(self._writer, self._connect)
        except sqlite3.Error as exc:
            self._writer.shutdown()
            self._writer = None
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        try:
            await self._run(self._migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._conn is None or self._closing:
            return
        self._closing = True
        while self._writing or self._flush_handle is not None:  # the batches already taken
            await asyncio.sleep(0.001)
        writer, conn = self._writer, self._conn
        self._writer = self._conn = None
        if writer is not None:
            await asyncio.get_running_loop().run_in_executor(writer, conn.close)
            writer.shutdown()
        self._closing = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # the writer thread waits out another connection's write lock (the CLI's), not the loop
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is not None and row[0] > SCHEMA_VERSION:
            raise RuntimeError(f"store schema {row[0]} is newer than this relay ({SCHEMA_VERSION})")
        if row is not None and row[0] == 1:
            _run_script(conn, MIGRATE_1_TO_2)
        if row is not None and row[0] <= 2:
            _run_script(conn, MIGRATE_2_TO_3)
        if row is not None and row[0] <= 3:
            _run_script(conn, MIGRATE_3_TO_4)
        _run_script(conn, SCHEMA)
        if row is None:
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        if self.owner:
            # One relay serves an SQLite store: what was in flight when it stopped is due now.
            conn.execute(
                f"UPDATE deliveries SET status = '{DeliveryStatus.PENDING}', lease_token = NULL, due_at = ? "  # nosec B608 - interpolates module constants and ? marks, never input
                f"WHERE status = '{DeliveryStatus.IN_FLIGHT}'",
                (time.time(),),
            )
        self._keys.prepare(conn, load=self.owner)
        self._recount(conn)

    # -- batches: gathered on the event loop, written by the writer thread ---------------

    async def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        # the loop the store was opened on: asyncio.get_running_loop() costs a getpid() call
        loop = self._loop
        if self._conn is None or self._closing or loop is None:
            raise StoreUnavailable("store is not open")
        future: asyncio.Future[T] = loop.create_future()
        self._batch.append((operation, future))
        if not self._writing and self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Hand the waiting operations to the writer (a loop callback, when it is idle)."""
        self._flush_handle = None
        if self._writing or not self._batch or self._writer is None or self._loop is None:
            return
        batch, self._batch = self._batch, []
        self._writing = True
        written = self._loop.run_in_executor(self._writer, self._write, batch)
        written.add_done_callback(functools.partial(self._written, batch))

    def _written(self, batch: Batch, done: asyncio.Future[list[Outcome]]) -> None:
        """Answer the batch's callers; hand over what gathered meanwhile."""
        self._writing = False
        error = done.exception()
        _set_results([(future, None, error) for _, future in batch] if error else done.result())
        self._flush()

    def _write(self, batch: Batch) -> list[Outcome]:
        """Run the batch in one transaction (in the writer thread)."""
        conn = self._conn
        ticket = self.write_health.ticket()
        if conn is None:
            return [(future, None, StoreUnavailable("store is not open")) for _, future in batch]
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            failure = StoreUnavailable(f"SQLite: {exc}")
            self.write_health.failed(str(failure), ticket)
            return [(future, None, failure) for _, future in batch]
        self._ticket, self._wrote = ticket, False
        outcomes = self._execute(conn, batch)
        if self._wrote:
            self.write_health.succeeded(ticket)
        return outcomes

    def _execute(self, conn: sqlite3.Connection, batch: Batch) -> list[Outcome]:
        """Run the batch in the transaction begun; if it breaks, each operation alone."""
        saved = self._saved()
        try:
            return self._transaction(conn, batch)
        except Exception:  # one operation broke the batch: run each alone
            self._rollback(conn, saved)
        outcomes: list[Outcome] = []
        for item in batch:
            saved = self._saved()
            try:
                conn.execute("BEGIN IMMEDIATE")
                outcomes.extend(self._transaction(conn, [item]))
            except Exception as exc:  # its caller gets it
                self._rollback(conn, saved)
                failure: BaseException = exc
                if isinstance(exc, sqlite3.Error):
                    failure = StoreUnavailable(f"SQLite: {exc}")
                    self.write_health.failed(str(failure), self._ticket)
                outcomes.append((item[1], None, failure))
        return outcomes

    def _transaction(self, conn: sqlite3.Connection, batch: Batch) -> list[Outcome]:
        """Run operations in the transaction begun, and commit. An operation may raise
        ``Overloaded`` only when it wrote nothing or rolled its writes back (it fails alone);
        any other error breaks the whole transaction."""
        outcomes: list[Outcome] = []
        changes = conn.total_changes  # counts statements rolled back too: compared after COMMIT
        if self._counted_version is not None and self._changed_elsewhere(conn):
            self._recount(conn)
        together = self._enqueue_together(conn, batch)
        for operation, future in batch:
            stored = together.get(id(operation))
            if stored is not None:
                outcomes.append((future, stored, None))
                continue
            try:
                outcomes.append((future, operation(conn), None))
            except Overloaded as exc:
                outcomes.append((future, None, exc))
        conn.execute("COMMIT")
        if conn.total_changes != changes or any(operation is _probe for operation, _ in batch):
            self._wrote = True  # for write_health
        return outcomes

    def _enqueue_together(self, conn: sqlite3.Connection, batch: Batch) -> dict[int, list[EnqueueResult]]:
        """Store the deliveries of every ``enqueue`` in the batch with multi-row ``INSERT``s
        (results by ``id()`` of the call).

        One statement for many rows: each statement costs a call into SQLite and a release and
        retake of the GIL, whatever its size. Only when every call fits under its bound even if
        nothing is a duplicate; otherwise nothing is written here and each ``enqueue`` runs on
        its own.
        """
        calls = [operation for operation, _ in batch if type(operation) is _Enqueue]
        if not calls:
            return {}
        pending = self._pending
        for call in calls:
            pending += call.new_pending
            if call.new_pending and pending > call.max_pending:
                return {}  # near the bound: duplicates must not count, so one by one
        now = time.time()
        duplicates = self._store(conn, [row for call in calls for row in call.rows(now)], now)
        results = {id(call): call.results(duplicates) for call in calls}
        self._pending += sum(r.status == ResultStatus.QUEUED for rs in results.values() for r in rs)
        return results

    def _store(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], now: float) -> dict[str, str]:
        """Insert the rows (``INSERT_DELIVERY`` parameters) whose idempotency key is free or absent.

        Returns the others as {their id: the id of the delivery holding their key}.
        """
        holders = self._keys.holders(conn, [row[IDEM_KEY] for row in rows if row[IDEM_KEY] is not None], now)
        fresh: list[tuple[Any, ...]] = []
        duplicates: dict[str, str] = {}
        for row in rows:
            key = row[IDEM_KEY]
            if key is not None:
                holder = holders.get(key)
                if holder is not None:
                    duplicates[row[0]] = holder
                    continue
                holders[key] = row[0]  # a second row with it among these is a duplicate
                self._keys.took(key, row[0], row[IDEM_EXPIRES])
            fresh.append(row)
        _insert(conn, fresh)
        return duplicates

    def _saved(self) -> tuple[int, int | None]:
        """What a transaction changes outside SQLite, for ``_rollback`` to put back."""
        return self._pending, self._counted_version

    def _rollback(self, conn: sqlite3.Connection, saved: tuple[int, int | None]) -> None:
        """Roll back the open transaction, and the pending count it changed."""
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        # a count redone in the transaction goes with it: data_version has moved since the
        # restored one, so the next transaction counts again
        self._pending, self._counted_version = saved

    def _recount(self, conn: sqlite3.Connection) -> None:
        self._pending = conn.execute(f"SELECT COUNT(*) FROM deliveries WHERE {ACTIVE}").fetchone()[0]  # nosec B608 - interpolates module constants and ? marks, never input
        self._counted_version = conn.execute("PRAGMA data_version").fetchone()[0]

    def _changed_elsewhere(self, conn: sqlite3.Connection) -> bool:
        """Whether another connection (the CLI's ``dlq replay`` or ``purge``) has committed since
        the last count. SQLite's ``data_version`` moves only then, so the count (a scan of every
        pending row, 30 ms at 400,000) is redone when it may be stale and not on a timer."""
        return bool(conn.execute("PRAGMA data_version").fetchone()[0] != self._counted_version)

    # -- operations ------------------------------------------------------------------------

    async def enqueue(
        self, deliveries: Sequence[NewDelivery], *, max_pending: int, idempotency_ttl: float
    ) -> list[EnqueueResult]:
        return await self._run(_Enqueue(self, deliveries, max_pending, idempotency_ttl))

    async def lease(self, destination: str, limit: int, lease_seconds: float) -> list[Delivery]:
        def lease(conn: sqlite3.Connection) -> list[Delivery]:
            now = time.time()
            rows = conn.execute(
                f"UPDATE deliveries SET status = '{DeliveryStatus.IN_FLIGHT}', lease_token = ?, due_at = ?, "  # nosec B608 - interpolates module constants and ? marks, never input
                "attempts = attempts + 1, updated_at = ? "
                f"WHERE id IN (SELECT id FROM deliveries WHERE {ACTIVE} AND destination = ? "
                "AND due_at <= ? ORDER BY due_at LIMIT ?) "
                f"RETURNING {COLUMNS}",
                (uuid.uuid4().hex, now + lease_seconds, now, destination, now, limit),
            ).fetchall()
            return [_delivery(row) for row in rows]

        return await self._run(lease)

    async def mark_delivered(
        self, delivery: Delivery, response: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        return await self._finish(delivery, DeliveryStatus.DELIVERED, None, None, response, attempt)

    async def mark_retry(
        self, delivery: Delivery, due_at: float, problem: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        return await self._finish(delivery, DeliveryStatus.PENDING, due_at, problem, None, attempt)

    async def mark_dead(
        self, delivery: Delivery, problem: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        return await self._finish(delivery, DeliveryStatus.DEAD, None, problem, None, attempt)

    async def release(self, delivery: Delivery) -> bool:
        def release(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"UPDATE deliveries SET status = '{DeliveryStatus.PENDING}', lease_token = NULL, due_at = ?, "  # nosec B608 - interpolates module constants and ? marks, never input
                "attempts = MAX(attempts - 1, 0), updated_at = ? "
                f"WHERE id = ? AND lease_token = ? AND status = '{DeliveryStatus.IN_FLIGHT}'",
                (time.time(), time.time(), delivery.id, delivery.lease_token),
            )
            return cursor.rowcount == 1

        return await self._run(release)

    async def _finish(
        self,
        delivery: Delivery,
        status: str,
        due_at: float | None,
        problem: dict[str, Any] | None,
        response: dict[str, Any] | None,
        attempt: AttemptRecord | None,
    ) -> bool:
        def finish(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE deliveries SET status = ?, due_at = ?, lease_token = NULL, updated_at = ?, "  # nosec B608 - interpolates module constants and ? marks, never input
                "last_code = COALESCE(?, last_code), last_problem = COALESCE(?, last_problem), "
                "response = COALESCE(?, response) "
                f"WHERE id = ? AND lease_token = ? AND status = '{DeliveryStatus.IN_FLIGHT}'",
                (
                    status, due_at, time.time(), problem.get("code") if problem else None,
                    _json(problem), _json(response), delivery.id, delivery.lease_token,
                ),
            )  # fmt: skip
            done = cursor.rowcount == 1
            if done and status != DeliveryStatus.PENDING:
                self._pending -= 1
            if done and attempt is not None:
                conn.execute(
                    INSERT_ATTEMPT,
                    (delivery.id, attempt.at, attempt.outcome, attempt.code, attempt.upstream_status,
                     attempt.latency_ms),
                )  # fmt: skip
            return done

        return await self._run(finish)

    async def probe(self) -> None:
        await self._run(_probe)

    async def get(self, delivery_id: str) -> Delivery | None:
        found = await self.get_many([delivery_id])
        return found[0] if found else None

    async def get_many(self, delivery_ids: Sequence[str]) -> list[Delivery]:
        ids = list(delivery_ids)

        def get_many(conn: sqlite3.Connection) -> list[Delivery]:
            marks = ",".join("?" * len(ids))
            rows = conn.execute(f"SELECT {COLUMNS} FROM deliveries WHERE id IN ({marks})", ids).fetchall()  # nosec B608 - interpolates module constants and ? marks, never input
            return [_delivery(row) for row in rows]

        return await self._run(get_many) if ids else []

    async def next_due(self, destination: str) -> float | None:
        def next_due(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                f"SELECT MIN(due_at) FROM deliveries WHERE {ACTIVE} AND destination = ?",  # nosec B608 - interpolates module constants and ? marks, never input
                (destination,),
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._run(next_due)

    async def dead_letters(self, where: DeadLetterFilter) -> list[Delivery]:
        def dead_letters(conn: sqlite3.Connection) -> list[Delivery]:
            clause, params = _dead_filter(where)
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM deliveries WHERE {clause} ORDER BY updated_at DESC LIMIT ?",  # nosec B608 - interpolates module constants and ? marks, never input
                [*params, where.limit],
            ).fetchall()
            return [_delivery(row) for row in rows]

        return await self._run(dead_letters)

    async def replay(self, where: DeadLetterFilter) -> int:
        def replay(conn: sqlite3.Connection) -> int:
            clause, params = _dead_filter(where)
            now = time.time()
            cursor = conn.execute(
                f"UPDATE deliveries SET status = '{DeliveryStatus.PENDING}', attempts = 0, "  # nosec B608 - interpolates module constants and ? marks, never input
                f"due_at = ?, updated_at = ?, lease_token = NULL WHERE {clause}",
                [now, now, *params],
            )
            self._pending += cursor.rowcount
            return cursor.rowcount

        return await self._run(replay)

    async def purge(self, where: DeadLetterFilter) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            clause, params = _dead_filter(where)
            # the events' keys go with their rows, so sending them again is not a `duplicate`
            return conn.execute(f"DELETE FROM deliveries WHERE {clause}", params).rowcount  # nosec B608 - interpolates module constants and ? marks, never input

        return await self._run(purge)

    async def stats(self) -> StoreStats:
        def stats(conn: sqlite3.Connection) -> StoreStats:
            rows = conn.execute(
                f"SELECT destination, COUNT(*), MIN(created_at) FROM deliveries WHERE {ACTIVE} "  # nosec B608 - interpolates module constants and ? marks, never input
                "GROUP BY destination"
            ).fetchall()
            count_dead = f"SELECT COUNT(*) FROM deliveries WHERE status = '{DeliveryStatus.DEAD}'"  # nosec B608 - interpolates module constants and ? marks, never input
            dead = conn.execute(count_dead).fetchone()[0]
            return StoreStats(
                pending={r[0]: r[1] for r in rows}, oldest_pending_at={r[0]: r[2] for r in rows}, dead=dead
            )

        return await self._read(stats)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only query on its own connection in a worker thread: a scan of a large
        backlog (``stats``: 0.2 s over 400,000 pending rows) must not stop the event loop.
        It reads the last commit, flushed or not: fine for counts, not for answers."""
        if self._conn is None or self._closing:
            raise StoreUnavailable("store is not open")
        if self.path == ":memory:":  # that database lives in the store's own connection
            return await self._run(query)

        def read() -> T:
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                conn.execute("PRAGMA busy_timeout=10000")
                return query(conn)

        try:
            return await asyncio.to_thread(read)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite: {exc}") from exc

    async def cleanup(self, delivered_before: float) -> int:
        def cleanup(conn: sqlite3.Connection) -> int:
            now = time.time()
            self._keys.prune(now)
            # a finished delivery stays while it holds a live idempotency key
            return conn.execute(
                f"DELETE FROM deliveries WHERE status IN ('{DeliveryStatus.DELIVERED}', "  # nosec B608 - interpolates module constants and ? marks, never input
                f"'{DeliveryStatus.DRY_RUN}') AND updated_at < ? "
                "AND (idem_expires_at IS NULL OR idem_expires_at <= ?)",
                (delivered_before, now),
            ).rowcount

        return await self._run(cleanup)

    async def trace(self, event_id: str, limit: int = 100) -> list[Traced]:
        # a scan (no index on event_id, see SCHEMA), on a reader connection: ingest goes on
        def trace(conn: sqlite3.Connection) -> list[Traced]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM deliveries WHERE event_id = ? ORDER BY created_at, id LIMIT ?",  # nosec B608 - interpolates module constants and ? marks, never input
                (event_id, limit),
            ).fetchall()
            deliveries = [_delivery(row) for row in rows]
            history: dict[str, list[AttemptRecord]] = {d.id: [] for d in deliveries}
            for chunk in _chunks(list(history), KEYS_CHUNK):
                for delivery_id, *fields in conn.execute(
                    ATTEMPTS.format(marks=",".join("?" * len(chunk))), chunk
                ):
                    history[delivery_id].append(AttemptRecord(*fields))
            return [Traced(d, tuple(history[d.id])) for d in deliveries]

        return await self._read(trace)

    async def erase(self, identifiers: Sequence[Identifier]) -> Erased:
        matcher = Matcher(identifiers)
        if not matcher:
            return Erased(0, 0, 0)
        first, last = await self._run(
            lambda conn: conn.execute("SELECT MIN(rowid), MAX(rowid) FROM deliveries").fetchone()
        )
        erased, dead, keys = 0, 0, 0
        # a chunk at a time, so ingests go on between them (each chunk is one writer operation);
        # rows stored after it began (rowids past `last`) are not looked at, and the range is
        # that of the rows held, not of every row ever stored (rowids only grow)
        for start in range(first or 0, (last or 0) + 1, ERASE_CHUNK):
            part = await self._run(_Erase(self, matcher, start, start + ERASE_CHUNK))
            erased, dead, keys = erased + part.deliveries, dead + part.dead_letters, keys + len(part.keys)
            if part.keys:  # committed: the keys are free (after any taken since, see forget)
                await self._run(functools.partial(self._forget, part.keys))
        return Erased(erased, dead, keys)

    def _forget(self, keys: list[tuple[str, str]], conn: sqlite3.Connection) -> None:
        for key, delivery_id in keys:
            self._keys.forget(key, delivery_id)

    @property
    def pending_estimate(self) -> int:
        """The store's running count of pending and in-flight deliveries."""
        return self._pending


class _Enqueue:
    """One ``enqueue`` call as a batch runs it: with the others of its batch
    (``SqliteStore._enqueue_together``), or alone (calling it)."""

    __slots__ = ("deliveries", "idempotency_ttl", "max_pending", "new_pending", "store")

    def __init__(
        self, store: SqliteStore, deliveries: Sequence[NewDelivery], max_pending: int, idempotency_ttl: float
    ) -> None:
        self.store = store
        self.deliveries = deliveries
        self.max_pending = max_pending
        self.idempotency_ttl = idempotency_ttl
        self.new_pending = sum(d.status == DeliveryStatus.PENDING for d in deliveries)

    def rows(self, now: float) -> list[tuple[Any, ...]]:
        """The ``INSERT_DELIVERY`` parameters of each delivery."""
        expires_at = now + self.idempotency_ttl
        pending = DeliveryStatus.PENDING
        return [
            (
                d.id, d.mapping, d.destination, d.event_id, d.request_id, d.request.method, d.request.path,
                orjson.dumps(d.request.body), d.status, now if d.status == pending else None, now, now,
                key := _idempotency_key(d), None if key is None else expires_at,
            )
            for d in self.deliveries
        ]  # fmt: skip

    def results(self, duplicates: dict[str, str]) -> list[EnqueueResult]:
        """What enqueue answers once the rows are stored, given the duplicates ``_store`` found."""
        return [
            EnqueueResult(ResultStatus.DUPLICATE, duplicates[d.id])
            if d.id in duplicates
            else EnqueueResult(
                ResultStatus.QUEUED if d.status == DeliveryStatus.PENDING else ResultStatus.DRY_RUN, d.id
            )
            for d in self.deliveries
        ]

    def __call__(self, conn: sqlite3.Connection) -> list[EnqueueResult]:
        store, now = self.store, time.time()
        conn.execute("SAVEPOINT enqueue")
        results = self.results(store._store(conn, self.rows(now), now))
        added = sum(r.status == ResultStatus.QUEUED for r in results)
        if added and store._pending + added > self.max_pending:
            # only now is it known: duplicates store nothing, so they must not be refused
            conn.execute("ROLLBACK TO enqueue")
            conn.execute("RELEASE enqueue")
            raise Overloaded(store._pending, self.max_pending)
        conn.execute("RELEASE enqueue")
        store._pending += added
        return results


@dataclass(slots=True)
class _ErasedPart:
    """What one chunk of an erasure removed; ``keys``: (key, holder) of the live keys."""

    deliveries: int
    dead_letters: int
    keys: list[tuple[str, str]]


class _Erase:
    """One chunk of ``erase``: the rows with rowid in [start, stop) holding an identifier."""

    def __init__(self, store: SqliteStore, matcher: Matcher, start: int, stop: int) -> None:
        self.store, self.matcher, self.start, self.stop = store, matcher, start, stop

    def __call__(self, conn: sqlite3.Connection) -> _ErasedPart:
        tests = ["instr(body, ?)"] * len(self.matcher.exact_terms)
        tests += ["instr(lower(body), ?)"] * len(self.matcher.folded_terms)
        candidates = conn.execute(
            "SELECT id, body, status, idem_key, idem_expires_at FROM deliveries "  # nosec B608 - interpolates module constants and ? marks, never input
            f"WHERE rowid >= ? AND rowid < ? AND ({' OR '.join(tests)})",
            [self.start, self.stop, *self.matcher.exact_terms, *map(bytes.decode, self.matcher.folded_terms)],
        ).fetchall()
        now = time.time()
        part = _ErasedPart(0, 0, [])
        ids = []
        for delivery_id, body, status, key, expires_at in candidates:
            if not self.matcher.holds(body):
                continue
            ids.append(delivery_id)
            if status == DeliveryStatus.DEAD:
                part.dead_letters += 1
            else:
                part.deliveries += 1
            if status in (DeliveryStatus.PENDING, DeliveryStatus.IN_FLIGHT):
                self.store._pending -= 1
            if key is not None and expires_at > now:
                part.keys.append((key, delivery_id))
        for chunk in _chunks(ids, KEYS_CHUNK):  # the trigger takes their attempts
            conn.execute(f"DELETE FROM deliveries WHERE id IN ({','.join('?' * len(chunk))})", chunk)  # nosec B608 - interpolates module constants and ? marks, never input
        return part


def _set_results(outcomes: list[Outcome]) -> None:
    """Settle each future (on the loop) unless its caller gave up on it."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _probe(conn: sqlite3.Connection) -> None:
    """A write that always changes a page (an ``UPDATE`` to the same value writes nothing):
    the header's ``user_version``, which the relay does not otherwise use."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute(f"PRAGMA user_version = {(version + 1) % 2**31}")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run each statement of ``script`` inside the open transaction (``executescript`` would
    commit it); ``:now`` is the time."""
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if not sqlite3.complete_statement(statement):  # a trigger's body holds ";" too
            continue
        if statement.strip(" \n;"):
            conn.execute(statement, {"now": time.time()} if ":now" in statement else {})
        statement = ""


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``INSERT_DELIVERY`` rows, up to ``INSERT_CHUNK`` to a statement."""
    for chunk in _chunks(rows, INSERT_CHUNK):
        conn.execute(_insert_sql(len(chunk)), [value for row in chunk for value in row])


def _chunks(items: list[T], size: int) -> list[list[T]]:
    """``items`` in runs of at most ``size``."""
    return [items[start : start + size] for start in range(0, len(items), size)]


@functools.cache
def _insert_sql(count: int) -> str:
    """``INSERT_DELIVERY`` for ``count`` rows at once."""
    head, values = INSERT_DELIVERY.split(" VALUES ")
    return f"{head} VALUES {', '.join([values] * count)}"


def _idempotency_key(delivery: NewDelivery) -> str | None:
    """The ``idem_key`` column: mapping and event id, or None when the event has no id."""
    return None if delivery.event_id is None else f"{delivery.mapping}\x1f{delivery.event_id}"


def _dead_filter(where: DeadLetterFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = [f"status = '{DeliveryStatus.DEAD}'"]
    params: list[Any] = []
    for column, value in (
        ("destination", where.destination),
        ("mapping", where.mapping),
        ("last_code", where.code),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.since is not None:
        clauses.append("updated_at >= ?")
        params.append(where.since)
    if where.until is not None:
        clauses.append("updated_at < ?")
        params.append(where.until)
    if where.ids:
        clauses.append(f"id IN ({','.join('?' * len(where.ids))})")
        params.extend(where.ids)
    return " AND ".join(clauses), params


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _delivery(row: tuple[Any, ...]) -> Delivery:
    (id_, mapping, destination, event_id, request_id, method, path, body, status, attempts, due_at,
     lease_token, created_at, updated_at, last_problem, response) = row  # fmt: skip
    return Delivery(
        id=id_,
        mapping=mapping,
        destination=destination,
        event_id=event_id,
        request=OutboundRequest(method, path, orjson.loads(body)),
        status=status,
        attempts=attempts,
        created_at=created_at,
        updated_at=updated_at,
        due_at=due_at,
        request_id=request_id,
        lease_token=lease_token,
        last_problem=orjson.loads(last_problem) if last_problem else None,
        response=orjson.loads(response) if response else None,
    )
