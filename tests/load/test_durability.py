"""The relay as a real process under load: kill -9, SIGTERM, and a rate-limited Zendesk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.relay_process import ROOT, RelayProcess
from tests.fakes.zendesk import CannedResponse, FakeZendesk
from tests.load.loadgen import LoadResult, order_ids, post_events, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]
TOKEN = "load-token"
REPORTS = ROOT / "test-output" / "load"


def relay_env(fake: FakeZendesk, **extra: str) -> dict[str, str]:
    if fake.rate_limit is None:  # the fake's default X-Rate-Limit (700/min) would pace the relay
        fake.rate_limit, fake.rate_window = 1_000_000, 60.0
    env = {
        "RELAY_INGEST_TOKENS": TOKEN,
        "RELAY_LOG_LEVEL": os.environ.get("LOAD_LOG_LEVEL", "warning"),
        "ZENDESK_BASE_URL": fake.base_url,
        "ZENDESK_EMAIL": "agent@example.com",
        "ZENDESK_API_TOKEN": "test-api-token",
        "RELAY_RETRY_BASE_SECONDS": "0.1",
        "RELAY_RETRY_CAP_SECONDS": "1",
    }
    env.update(extra)
    return env


def report(name: str, data: dict[str, object]) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"\n{name}: {json.dumps(data)}")


def flaky_zendesk(fake: FakeZendesk, stop: threading.Event) -> None:
    """Every few hundred ms, Zendesk answers 500s or slowly for a while."""
    modes = [
        CannedResponse(500, {"error": "boom"}),
        CannedResponse(202, {"status": "received"}, delay=0.3),
        None,
    ]
    index = 0
    while not stop.wait(0.3):
        fake.set_default(modes[index % len(modes)])
        index += 1
    fake.set_default(None)


@pytest.mark.slow(seconds=100)
def test_kill_9_loses_nothing_that_was_acknowledged(fake_zendesk: FakeZendesk, tmp_path: Path) -> None:
    env = relay_env(fake_zendesk, ZENDESK_RATE_LIMIT_PER_MINUTE="600000")
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    ids = [f"crash-{i:04d}" for i in range(2000)]
    result = LoadResult()
    stop_flaky = threading.Event()
    flaky = threading.Thread(target=flaky_zendesk, args=(fake_zendesk, stop_flaky), daemon=True)
    flaky.start()
    loader = threading.Thread(
        target=lambda: asyncio.run(
            post_events(f"{relay.url}/v1/events", TOKEN, ids, concurrency=8, result=result)
        )
    )
    loader.start()
    killed_at = 0
    try:
        assert wait_until(lambda: len(result.acked) >= 700, 60), "load did not get going"
        killed_at = len(result.acked)
        assert relay.process is not None
        os.kill(relay.process.pid, signal.SIGKILL)
        relay.process.wait()
        time.sleep(0.5)
        relay.start()  # same port, same store file
        loader.join(120)
        assert not loader.is_alive()
    finally:
        stop_flaky.set()
        flaky.join()
    try:
        delivered = lambda: result.acked <= set(order_ids(fake_zendesk.accepted))  # noqa: E731
        assert wait_until(delivered, 120, interval=0.5), (
            f"{len(result.acked - set(order_ids(fake_zendesk.accepted)))} acknowledged events never reached "
            f"Zendesk ({len(result.acked)} acked, {len(fake_zendesk.accepted)} accepted)\n{relay.logs()[-3000:]}"
        )
    finally:
        relay.stop()
    counts = Counter(order_ids(fake_zendesk.accepted))
    report(
        "kill-9",
        {
            "posted": len(ids),
            "acknowledged": len(result.acked),
            "acked_before_kill": killed_at,
            "refused_while_down": result.refused,
            "statuses": result.statuses,
            "delivered_unique": len(counts),
            "duplicates": sum(n - 1 for n in counts.values()),
            "zendesk_answers_5xx": sum(1 for r in fake_zendesk.received if (r.status or 0) >= 500),
        },
    )
    assert len(result.acked) >= 1500


@pytest.mark.slow(seconds=35)
def test_sigterm_under_load_loses_nothing(fake_zendesk: FakeZendesk, tmp_path: Path) -> None:
    fake_zendesk.set_default(CannedResponse(202, {"status": "received"}, delay=0.4))
    env = relay_env(
        fake_zendesk, ZENDESK_RATE_LIMIT_PER_MINUTE="600000", RELAY_SHUTDOWN_GRACE="5", RELAY_LOG_LEVEL="info"
    )
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    ids = [f"term-{i:03d}" for i in range(300)]
    result = LoadResult()
    loader = threading.Thread(
        target=lambda: asyncio.run(
            post_events(f"{relay.url}/v1/events", TOKEN, ids, concurrency=4, result=result)
        )
    )
    loader.start()
    assert wait_until(lambda: len(result.acked) >= 50, 30)
    assert relay.stop() in (0, -15)  # SIGTERM, graceful
    during_shutdown = len(result.acked)
    loader.join(60)
    logs = relay.logs()
    assert '"event": "stopped"' in logs  # the lifespan ran to its end: sends in flight finished
    fake_zendesk.set_default(None)
    relay.start()
    try:
        assert wait_until(lambda: result.acked <= set(order_ids(fake_zendesk.accepted)), 60, interval=0.5)
    finally:
        relay.stop()
    counts = Counter(order_ids(fake_zendesk.accepted))
    report(
        "sigterm",
        {"acknowledged": len(result.acked), "acked_at_sigterm": during_shutdown,
         "delivered_unique": len(counts), "duplicates": sum(n - 1 for n in counts.values())},
    )  # fmt: skip


@pytest.mark.slow(seconds=70)
def test_stays_within_the_rate_limit_and_uses_it(tmp_path: Path) -> None:
    limit = 300  # per minute, enforced by the fake in one-minute windows like Zendesk
    with FakeZendesk(rate_limit=limit, rate_window=60.0) as fake:
        relay = RelayProcess(
            relay_env(fake, ZENDESK_RATE_LIMIT_PER_MINUTE=str(limit)), tmp_path / "relay.log"
        )
        relay.start()
        ids = [f"rate-{i:03d}" for i in range(320)]
        try:
            result = asyncio.run(post_events(f"{relay.url}/v1/events", TOKEN, ids, concurrency=8))
            assert len(result.acked) == len(ids)
            assert wait_until(lambda: len(fake.accepted) >= len(ids), 120, interval=0.5)
        finally:
            relay.stop()
        times = [r.received_at for r in fake.accepted]
        rate = (len(times) - 1) / (times[-1] - times[0]) * 60
        busiest_minute = max(sum(1 for t in times if start <= t < start + 60) for start in times)
        report(
            "rate-limit",
            {"limit_per_minute": limit, "delivered": len(times), "throttled_429": fake.throttled,
             "rate_per_minute": round(rate, 1), "share_of_limit": round(rate / limit, 3),
             "busiest_60s_window": busiest_minute},
        )  # fmt: skip
        assert fake.throttled <= 1, f"{fake.throttled} answers were 429"
        assert busiest_minute <= limit
        assert rate >= 0.95 * limit, f"delivered at {rate:.1f}/min, under 95 % of {limit}"
