"""Pytest plugin: the ``fake_zendesk`` and ``fake_yotpo`` fixtures (a started fake per test).

Enable with ``pytest_plugins = ["tests.fakes.plugin"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.yotpo import FakeYotpo
from tests.fakes.zendesk import FakeZendesk


@pytest.fixture
def fake_zendesk() -> Iterator[FakeZendesk]:
    """A started fake Zendesk on 127.0.0.1 (default credentials, no rate limit); stopped after."""
    with FakeZendesk() as fake:
        yield fake


@pytest.fixture
def fake_yotpo() -> Iterator[FakeYotpo]:
    """A started fake Yotpo on 127.0.0.1 (default store id and secret, no rate limit); stopped after."""
    with FakeYotpo() as fake:
        yield fake
