"""Durable delivery: store backends, the dispatcher, rate limiting and retry policy."""

from __future__ import annotations

from app.delivery.sqlite import SqliteStore, sqlite_path
from app.delivery.store import Store
from app.settings import ConfigError, Settings


def open_store(settings: Settings, *, owner: bool = True) -> Store:
    """The backend ``RELAY_STORE`` names (not yet opened); ``owner`` is False for tools such
    as the CLI that work on the store of a relay that may be running."""
    url = settings.relay_store
    if url.startswith("sqlite:///"):
        return SqliteStore(sqlite_path(url), synchronous=settings.relay_sqlite_synchronous, owner=owner)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from app.delivery.redis_store import RedisStore  # redis-py only where it is used

        return RedisStore(url, prefix=settings.relay_redis_prefix)
    raise ConfigError(f"RELAY_STORE must be sqlite:///path or redis://host:port/db: {url!r}")
