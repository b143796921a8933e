"""Pytest plugin: the ``fake_zendesk`` fixture (a started :class:`FakeZendesk` per test).

Enable with ``pytest_plugins = ["tests.fakes.plugin"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.zendesk import FakeZendesk


@pytest.fixture
def fake_zendesk() -> Iterator[FakeZendesk]:
    """A started fake Zendesk on 127.0.0.1 (default credentials, no rate limit); stopped after."""
    with FakeZendesk() as fake:
        yield fake
