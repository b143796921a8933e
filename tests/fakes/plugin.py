"""Pytest plugin: ``fake_zendesk`` and ``fake_yotpo`` (a started fake per test), ``redis_server``.

Enable with ``pytest_plugins = ["tests.fakes.plugin"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.redis_server import MISSING as REDIS_MISSING
from tests.fakes.redis_server import RedisServer
from tests.fakes.redis_server import available as redis_available
from tests.fakes.yotpo import FakeYotpo
from tests.fakes.zendesk import FakeZendesk


@pytest.fixture
def fake_zendesk() -> Iterator[FakeZendesk]:
    """A started fake Zendesk on 127.0.0.1 (default credentials, no rate limit); stopped after."""
    with FakeZendesk() as fake:
        yield fake


@pytest.fixture
def fake_yotpo() -> Iterator[FakeYotpo]:
    """A started fake Yotpo on 127.0.0.1 (default store id and secret, Yotpo's 5 calls a second);
    stopped after."""
    with FakeYotpo() as fake:
        yield fake


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (tests keep apart by key prefix); skipped loudly
    when redis-server is not installed."""
    if not redis_available():
        pytest.skip(REDIS_MISSING)
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server
