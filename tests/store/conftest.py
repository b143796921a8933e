"""Backends for the store behaviour suite (``Store`` protocol only) and small helpers.

Every test receives ``store``: a new, *unopened* store on fresh, empty storage, for each backend
in ``BACKENDS``. Tests open and close it inside one ``asyncio.run`` (``run(store, scenario)``).
``backend.make()`` gives another store on the same storage, to test what survives a restart.

Adding a backend is one entry in ``BACKENDS``: a function from the test's ``tmp_path`` to a
``Backend`` (``redis`` keeps tests apart with a fresh key prefix on the session's redis-server).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.delivery.redis_store import RedisStore
from app.delivery.sqlite import SqliteStore, SqlKeys
from app.delivery.store import Delivery, NewDelivery, Store
from app.destinations.base import OutboundRequest
from app.status import DeliveryStatus
from tests.fakes.redis_server import RedisServer

T = TypeVar("T")

# Generous bound for anything that waits for wall-clock expiry (leases, idempotency TTLs).
WAIT_LIMIT = 3.0
BIG = 1_000_000  # a max_pending that is never reached
TTL = 3600.0
AUTO: Any = object()  # new(): a fresh, unique event id


@dataclass(frozen=True)
class Backend:
    name: str
    make: Callable[[], Store]  # a new, unopened store on this test's storage
    # One process owns the storage: deliveries in flight when it closed are due again on open.
    single_owner: bool


def _sqlite_file(tmp_path: Path) -> Backend:
    path = str(tmp_path / "store" / "relay.db")
    return Backend("sqlite-file", lambda: SqliteStore(path), single_owner=True)


def _sqlite_sql_keys(tmp_path: Path) -> Backend:
    """The store with its idempotency keys looked up in SQL instead of memory (``SqlKeys``)."""
    path = str(tmp_path / "store" / "relay.db")
    return Backend("sqlite-sql-keys", lambda: SqliteStore(path, keys=SqlKeys()), single_owner=True)


def _redis(tmp_path: Path, server: RedisServer) -> Backend:
    prefix = f"test-{uuid.uuid4().hex}"  # a fresh keyspace per test on the session's server
    return Backend("redis", lambda: RedisStore(server.url, prefix=prefix), single_owner=False)


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Backend]] = {
    "sqlite-file": lambda tmp_path, request: _sqlite_file(tmp_path),
    "sqlite-sql-keys": lambda tmp_path, request: _sqlite_sql_keys(tmp_path),
    "redis": lambda tmp_path, request: _redis(tmp_path, request.getfixturevalue("redis_server")),
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](tmp_path, request)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.make()


def run(store: Store, scenario: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, run the scenario on it, close it: all inside one event loop."""

    async def main() -> T:
        await store.open()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def new(
    *,
    mapping: str = "m1",
    destination: str = "zendesk",
    event_id: Any = AUTO,
    body: Any = None,
    method: str = "POST",
    path: str = "/api/v2/events",
    request_id: str | None = None,
    status: str = DeliveryStatus.PENDING,
    id: str | None = None,
) -> NewDelivery:
    """A NewDelivery with a fresh id (and a unique event id unless one is given)."""
    return NewDelivery(
        id=id or uuid.uuid4().hex,
        mapping=mapping,
        destination=destination,
        event_id=f"evt-{uuid.uuid4().hex}" if event_id is AUTO else event_id,
        request=OutboundRequest(method, path, {"n": 1} if body is None else body),
        request_id=request_id,
        status=status,
    )


async def lease_until(store: Store, destination: str, lease_seconds: float, count: int) -> list[Delivery]:
    """Lease repeatedly until ``count`` deliveries come back (bounded by WAIT_LIMIT)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        got = await store.lease(destination, 100, lease_seconds)
        if got or time.monotonic() > deadline:
            assert len(got) == count
            return got
        await asyncio.sleep(0.01)


async def tick() -> None:
    """Let the wall clock move on, so timestamps taken before and after differ."""
    await asyncio.sleep(0.005)
