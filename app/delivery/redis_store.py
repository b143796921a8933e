"""Redis store: the ``Store`` protocol shared by several relay replicas.

Deliveries are hashes; what is due, leased, dead and finished lives in sorted sets (see
``redis_scripts.py``), and every state change is one Lua script, so replicas never race. We
use sorted sets rather than Streams with a consumer group: a retry must wait until its own due
time (backoff, ``Retry-After``), which a stream cannot express without a second, delayed
structure; a sorted set scored by due time is that structure, and the same kind of set scored
by lease expiry reclaims the deliveries of a dead replica (what ``XAUTOCLAIM`` would do).

Durability is Redis's: run it with ``appendonly yes`` and ``appendfsync always`` for the
guarantee the SQLite store gives (Redis flushes the AOF once per event-loop turn before it
answers, so concurrent ingests share one fsync: group commit on the server side).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from app.delivery import redis_scripts as scripts
from app.delivery.erasure import Matcher
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
from app.status import DeliveryStatus

SCHEMA_VERSION = 1
SCAN_BATCH = 500  # dead letters read per round trip when filtering
CLEANUP_BATCH = 1000
ERASE_SCAN = 1000  # keys a SCAN step of an erasure asks for
DEFAULT_PREFIX = "aep-relay"
MAX_CONNECTIONS = 64

log = structlog.get_logger("app.delivery")


class RedisStore:
    """The ``Store`` protocol on one Redis database (redis-py's asyncio client)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 5.0) -> None:
        self.url = url
        # A hash tag keeps every key in one Redis Cluster slot, as multi-key scripts need.
        self.prefix = f"{{{prefix}}}:"
        self.timeout = timeout
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self.write_health = WriteHealth()
        # (destination, lease_until, token) of LEASE calls that failed: Redis may have run one
        # and only its answer been lost (it went away meanwhile), so it is given back, if so,
        # before the next lease instead of waiting out its expiry
        self._unanswered_leases: list[tuple[str, str, str]] = []

    @property
    def client(self) -> aioredis.Redis:
        """The connection pool (shared with the rate limiters of this relay)."""
        if self._client is None:
            raise StoreUnavailable("store is not open")
        return self._client

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        # No client-side retries: a script that ran before the connection broke must not run
        # twice. Callers see StoreUnavailable and retry at their level (ingest answers 503).
        # A blocking pool: a burst of ingests waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=self.timeout,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=None,
            retry_on_error=[],
            health_check_interval=30,
        )
        client = aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in ("ENQUEUE", "LEASE", "RELEASE_LEASE", "FINISH", "REPLAY", "PURGE", "CLEANUP", "ERASE")
        }
        self._client = client
        try:
            async with self._errors():
                await client.set(self._key("schema"), SCHEMA_VERSION, nx=True)
                stored = int(await client.get(self._key("schema")) or SCHEMA_VERSION)
        except StoreUnavailable:
            await self.close()
            raise
        if stored > SCHEMA_VERSION:
            await self.close()
            raise RuntimeError(f"store schema {stored} is newer than this relay ({SCHEMA_VERSION})")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _key(self, name: str) -> str:
        return self.prefix + name

    def shared_key(self, name: str) -> str:
        """A key under this store's prefix, for state other parts share (the rate limiters)."""
        return self._key(name)

    @asynccontextmanager
    async def _errors(self, *, write: bool = False) -> AsyncIterator[None]:
        """Redis's errors as ``StoreUnavailable``, each noted in ``write_health`` (a read that
        cannot reach Redis counts: writes would fail too); a ``write`` that works is noted."""
        if self._client is None:
            raise StoreUnavailable("store is not open")
        ticket = self.write_health.ticket()
        try:
            yield
        except RedisError as exc:
            failure = StoreUnavailable(f"Redis: {type(exc).__name__}: {exc}")
        except OSError as exc:
            failure = StoreUnavailable(f"Redis: {exc}")
        else:
            if write:
                self.write_health.succeeded(ticket)
            return
        self.write_health.failed(str(failure), ticket)
        raise failure from None

    async def probe(self) -> None:
        async with self._errors(write=True):
            await self.client.set(self._key("probe"), _num(time.time()))

    async def _script(self, name: str, args: Sequence[Any]) -> Any:
        async with self._errors(write=True):
            # The schema key names the slot for a Redis Cluster; the scripts build the others.
            return await self._scripts[name](keys=[self._key("schema")], args=[self.prefix, *args])

    # -- operations ------------------------------------------------------------------------

    async def enqueue(
        self, deliveries: Sequence[NewDelivery], *, max_pending: int, idempotency_ttl: float
    ) -> list[EnqueueResult]:
        if not deliveries:
            return []
        items = [
            [d.id, d.mapping, d.destination, d.event_id, d.request_id, d.request.method, d.request.path,
             orjson.dumps(d.request.body).decode(), d.status]
            for d in deliveries
        ]  # fmt: skip
        reply = await self._script(
            "ENQUEUE",
            [_num(time.time()), max(1, round(idempotency_ttl * 1000)), max_pending, orjson.dumps(items)],
        )
        if _text(reply[0]) == "overloaded":
            raise Overloaded(int(reply[1]), max_pending)
        return [EnqueueResult(_text(status), _text(delivery_id)) for status, delivery_id in reply[1]]

    async def lease(self, destination: str, limit: int, lease_seconds: float) -> list[Delivery]:
        if self._unanswered_leases:
            await self._release_unanswered()
        now = time.time()
        until, token = _num(now + lease_seconds), uuid.uuid4().hex
        try:
            leased = await self._script("LEASE", [destination, _num(now), limit, until, token])
        except StoreUnavailable:
            self._unanswered_leases.append((destination, until, token))
            raise
        return [_delivery(_text(i), dict(zip(row[::2], row[1::2], strict=True))) for i, row in leased]

    async def _release_unanswered(self) -> None:
        """Give back what the LEASE calls that failed took, if they ran; ``StoreUnavailable``
        (keeping the rest) while Redis still fails."""
        for unanswered in list(self._unanswered_leases):
            destination, until, token = unanswered
            released = await self._script("RELEASE_LEASE", [destination, until, token, _num(time.time())])
            if unanswered in self._unanswered_leases:  # another lease call may have given it back
                self._unanswered_leases.remove(unanswered)
            if released:
                log.info("unanswered_lease_given_back", destination=destination, deliveries=int(released))

    async def mark_delivered(
        self, delivery: Delivery, response: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        return await self._finish(delivery, "delivered", response=response, attempt=attempt)

    async def mark_retry(
        self, delivery: Delivery, due_at: float, problem: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        return await self._finish(delivery, "pending", due_at=due_at, problem=problem, attempt=attempt)

    async def mark_dead(
        self, delivery: Delivery, problem: dict[str, Any], attempt: AttemptRecord | None = None
    ) -> bool:
        return await self._finish(delivery, DeliveryStatus.DEAD, problem=problem, attempt=attempt)

    async def release(self, delivery: Delivery) -> bool:
        return await self._finish(delivery, "release")

    async def _finish(
        self,
        delivery: Delivery,
        outcome: str,
        *,
        due_at: float | None = None,
        problem: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
        attempt: AttemptRecord | None = None,
    ) -> bool:
        now = time.time()
        done = await self._script(
            "FINISH",
            [
                delivery.id, delivery.lease_token or "", outcome, _num(now),
                _num(due_at if due_at is not None else now),
                orjson.dumps(problem) if problem is not None else "",
                str(problem.get("code") or "") if problem else "",
                orjson.dumps(response) if response else "",
                orjson.dumps(attempt.to_dict()) if attempt is not None else "",
            ],
        )  # fmt: skip
        return bool(done)

    async def get(self, delivery_id: str) -> Delivery | None:
        found = await self.get_many([delivery_id])
        return found[0] if found else None

    async def get_many(self, delivery_ids: Sequence[str]) -> list[Delivery]:
        if not delivery_ids:
            return []
        async with self._errors(), self.client.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hgetall(self._key(f"d:{delivery_id}"))
            rows = await pipe.execute()
        return [_delivery(i, row) for i, row in zip(delivery_ids, rows, strict=True) if row]

    async def next_due(self, destination: str) -> float | None:
        async with self._errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.zrange(self._key(f"due:{destination}"), 0, 0, withscores=True)
            pipe.zrange(self._key(f"lease:{destination}"), 0, 0, withscores=True)
            firsts = await pipe.execute()
        scores = [float(found[0][1]) for found in firsts if found]
        return min(scores) if scores else None

    async def dead_letters(self, where: DeadLetterFilter) -> list[Delivery]:
        found: list[Delivery] = []
        async for delivery in self._dead(where):
            found.append(delivery)
            if len(found) >= where.limit:
                break
        return found

    async def _dead(self, where: DeadLetterFilter) -> AsyncIterator[Delivery]:
        """Dead letters matching the filter, newest first."""
        if where.ids:
            candidates = [d for d in await self.get_many(list(where.ids)) if d.status == DeliveryStatus.DEAD]
            for delivery in sorted(candidates, key=lambda d: d.updated_at, reverse=True):
                if _matches(delivery, where):
                    yield delivery
            return
        high: Any = "+inf" if where.until is None else f"({where.until!r}"
        low: Any = "-inf" if where.since is None else repr(where.since)
        offset = 0
        while True:
            async with self._errors():
                ids = await self.client.zrevrangebyscore(
                    self._key("dead"), high, low, start=offset, num=SCAN_BATCH
                )
            if not ids:
                return
            offset += len(ids)
            for delivery in await self.get_many([_text(i) for i in ids if isinstance(i, bytes | str)]):
                if delivery.status == DeliveryStatus.DEAD and _matches(delivery, where):
                    yield delivery

    async def replay(self, where: DeadLetterFilter) -> int:
        return await self._each_dead("REPLAY", where, [_num(time.time())])

    async def purge(self, where: DeadLetterFilter) -> int:
        return await self._each_dead("PURGE", where, [])

    async def _each_dead(self, script: str, where: DeadLetterFilter, args: list[Any]) -> int:
        ids = [d.id async for d in self._dead(where)]
        count = 0
        for start in range(0, len(ids), SCAN_BATCH):
            count += int(await self._script(script, [*args, *ids[start : start + SCAN_BATCH]]))
        return count

    async def stats(self) -> StoreStats:
        async with self._errors():
            destinations = sorted(_text(d) for d in await self.client.smembers(self._key("dests")))
            async with self.client.pipeline(transaction=False) as pipe:
                for destination in destinations:
                    pipe.zcard(self._key(f"age:{destination}"))
                    pipe.zrange(self._key(f"age:{destination}"), 0, 0, withscores=True)
                pipe.zcard(self._key("dead"))
                replies = await pipe.execute()
        pending: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for n, destination in enumerate(destinations):
            count, first = replies[2 * n], replies[2 * n + 1]
            if count:
                pending[destination] = int(count)
                oldest[destination] = float(first[0][1])
        return StoreStats(pending=pending, oldest_pending_at=oldest, dead=int(replies[-1]))

    async def cleanup(self, delivered_before: float) -> int:
        removed = 0
        while True:
            batch = int(await self._script("CLEANUP", [_num(delivered_before), CLEANUP_BATCH]))
            removed += batch
            if batch < CLEANUP_BATCH:
                return removed

    async def trace(self, event_id: str, limit: int = 100) -> list[Traced]:
        async with self._errors():
            # equal scores (one enqueue) come in id order, as SQLite's ORDER BY created_at, id
            found = await self.client.zrange(self._key(f"ev:{event_id}"), 0, limit - 1)
            ids = [_text(i) for i in found if isinstance(i, bytes | str)]
            if not ids:
                return []
            async with self.client.pipeline(transaction=True) as pipe:  # rows and histories agree
                for delivery_id in ids:
                    pipe.hgetall(self._key(f"d:{delivery_id}"))
                    pipe.lrange(self._key(f"at:{delivery_id}"), 0, -1)
                replies = await pipe.execute()
        traced = []
        for n, delivery_id in enumerate(ids):
            row, history = replies[2 * n], replies[2 * n + 1]
            if row:
                attempts = tuple(AttemptRecord.from_dict(orjson.loads(a)) for a in history)
                traced.append(Traced(_delivery(delivery_id, row), attempts))
        return traced

    async def erase(self, identifiers: Sequence[Identifier]) -> Erased:
        matcher = Matcher(identifiers)
        if not matcher:
            return Erased(0, 0, 0)
        erased, dead, keys = 0, 0, 0
        # SCAN may return a key twice: ERASE skips what is gone, so nothing counts twice
        pattern = _glob_escape(self._key("d:")) + "*"
        cursor: int = 0
        while True:
            async with self._errors():
                cursor, found = await self.client.scan(cursor, match=pattern, count=ERASE_SCAN)
                ids = [_text(k)[len(self._key("d:")) :] for k in found]
                async with self.client.pipeline(transaction=False) as pipe:
                    for delivery_id in ids:
                        pipe.hget(self._key(f"d:{delivery_id}"), "body")
                    bodies = await pipe.execute() if ids else []
            matched = [
                delivery_id
                for delivery_id, body in zip(ids, bodies, strict=True)
                if body is not None and matcher.may_hold(body) and matcher.holds(body)
            ]
            if matched:
                counts = await self._script("ERASE", matched)
                erased, dead, keys = erased + int(counts[0]), dead + int(counts[1]), keys + int(counts[2])
            if cursor == 0:
                return Erased(erased, dead, keys)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a SCAN pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _matches(delivery: Delivery, where: DeadLetterFilter) -> bool:
    code = (delivery.last_problem or {}).get("code")
    return (
        (where.destination is None or delivery.destination == where.destination)
        and (where.mapping is None or delivery.mapping == where.mapping)
        and (where.code is None or code == where.code)
        and (where.since is None or delivery.updated_at >= where.since)
        and (where.until is None or delivery.updated_at < where.until)
    )


def _num(value: float) -> str:
    return repr(float(value))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _delivery(delivery_id: str, row: dict[bytes, bytes]) -> Delivery:
    h = {k.decode(): v.decode() for k, v in row.items()}
    return Delivery(
        id=delivery_id,
        mapping=h["mapping"],
        destination=h["destination"],
        event_id=h.get("event_id"),
        request=OutboundRequest(h["method"], h["path"], orjson.loads(h["body"])),
        status=h["status"],
        attempts=int(h["attempts"]),
        created_at=float(h["created_at"]),
        updated_at=float(h["updated_at"]),
        due_at=float(h["due_at"]) if "due_at" in h else None,
        request_id=h.get("request_id"),
        lease_token=h.get("lease_token"),
        last_problem=orjson.loads(h["last_problem"]) if "last_problem" in h else None,
        response=orjson.loads(h["response"]) if "response" in h else None,
    )
