"""Shared fixtures: settings for tests, the relay in-process, captured log output."""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.logs import configure_logging
from app.settings import Settings

pytest_plugins = ["tests.fakes.plugin"]

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"
EXAMPLES = MAPPINGS / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ADOBE_SAMPLES = ROOT / "tests" / "data" / "adobe"  # real Adobe payloads, with their licences
TOKEN = "test-ingest-token-1"


def _zendesk_mappings() -> Path:
    """The shipped Zendesk mappings alone (with their example payloads): most tests check
    one delivery per event; the fan-out to Yotpo has tests of its own (test_fanout.py)."""
    folder = Path(tempfile.mkdtemp(prefix="aep-relay-zendesk-mappings-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for path in MAPPINGS.glob("zendesk-*.yaml"):
        shutil.copy(path, folder / path.name)
    (folder / "examples").symlink_to(EXAMPLES)
    return folder


ZENDESK_MAPPINGS = _zendesk_mappings()


def make_settings(**overrides: Any) -> Settings:
    """Settings for a test: the shipped mappings, one ingest token, no environment leaking in."""
    values: dict[str, Any] = {
        "relay_mappings_dir": ZENDESK_MAPPINGS,
        "relay_ingest_tokens": [TOKEN],
        "relay_store": "sqlite:///:memory:",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def zendesk_settings(base_url: str, **overrides: Any) -> Settings:
    """Settings that deliver to a fake Zendesk with API-token auth."""
    values: dict[str, Any] = {
        "zendesk_base_url": base_url,
        "zendesk_email": "agent@example.com",
        "zendesk_api_token": "test-api-token",
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own RELAY_*/ZENDESK_* variables out of tests."""
    for name in list(os.environ):
        if name.startswith(("RELAY_", "ZENDESK_", "YOTPO_")):
            monkeypatch.delenv(name)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """The relay's real log pipeline (with redaction) writing to a buffer."""
    buffer = io.StringIO()
    configure_logging("debug", "json", secrets=[TOKEN, "test-api-token"], stream=buffer)
    yield buffer
    structlog.reset_defaults()


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.fixture
def relay_client() -> Iterator[Callable[..., TestClient]]:
    """Factory: ``relay_client(settings)`` -> a started TestClient (closed after the test)."""
    clients: list[TestClient] = []

    def start(settings: Settings | None = None) -> TestClient:
        client = TestClient(create_app(settings or make_settings()), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SLOW_LANES = 2
"""Workers that share the slow tests under xdist; the others start on the quick tests."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, shared between lanes: under ``make test``'s workers (pytest-xdist)
    each lane's slow tests run one after another on one worker while the others run the
    quick tests, and the light ones (rate limits: mostly waiting) beside the heavy ones.

    ``--dist load`` hands each worker a first chunk of consecutive tests, of
    ``len(items) // workers // 4``; each lane starts at a chunk's first test. (If xdist
    changes that, every test still runs, only less evenly spread.)"""
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    quick = [item for item in items if item.get_closest_marker("slow") is None]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    lanes: list[list[pytest.Item]] = [[] for _ in range(max(1, min(SLOW_LANES, workers - 1)))]
    load = [0.0] * len(lanes)
    for item in sorted(slow, key=expected_seconds, reverse=True):  # longest first, to the least loaded
        lane = load.index(min(load))
        lanes[lane].append(item)
        load[lane] += expected_seconds(item)
    chunk = max(2, len(items) // workers // 4)
    ordered: list[pytest.Item] = []
    for lane in lanes:
        ordered.extend(lane)
        while len(ordered) % chunk and quick and lane is not lanes[-1]:
            ordered.append(quick.pop(0))
    items[:] = ordered + quick


def expected_seconds(item: pytest.Item) -> float:
    """A slow test's usual duration, from its ``slow(seconds=...)`` marker (60 when not given)."""
    marker = item.get_closest_marker("slow")
    return float(marker.kwargs.get("seconds", 60.0)) if marker is not None else 0.0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI (``CI=true``) a skipped test fails the run: a suite that cannot run there is
    a missing dependency of ``make test``, not something to pass over."""
    if os.environ.get("CI", "").lower() != "true" or hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; every test must run in CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


QUICK_TEST_NICENESS = 10


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under xdist, a worker lowers its CPU priority (and its children's) once it runs quick
    tests, so the load tests' relays, timed against a rate limit, are not starved by them on
    a small machine. Lowering needs no privilege; a worker never raises it back."""
    if "PYTEST_XDIST_WORKER" in os.environ and item.get_closest_marker("slow") is None:
        current = os.nice(0)
        if current < QUICK_TEST_NICENESS:
            os.nice(QUICK_TEST_NICENESS - current)
