"""The relay under load against a Zendesk that stores events but answers some after the relay's
read timeout: no event may reach the timeline twice, and none may be lost."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.relay_process import RelayProcess
from tests.fakes.zendesk import FakeZendesk
from tests.load.loadgen import post_events, wait_until
from tests.load.test_durability import TOKEN, relay_env, report

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]
READ_TIMEOUT = 1.0
SLOW_ANSWER = 2.5  # well past the read timeout: the relay gives up, Zendesk has stored it


def slow_now_and_then(fake: FakeZendesk, stop: threading.Event) -> None:
    """Every 0.1 s the next three stored events are answered late: a share of the load."""
    while not stop.wait(0.1):
        fake.slow_accept(count=3, delay=SLOW_ANSWER)
    fake.clear_faults()


def metric(relay: RelayProcess, prefix: str, label: str = "") -> float:
    """The sum of a metric's series whose line starts with ``prefix`` and holds ``label``."""
    text = httpx.get(f"{relay.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and label in line
    )


def stored_order_ids(fake: FakeZendesk) -> list[str]:
    return [e.event["properties"]["order_id"] for e in fake.stored_events if e.profile_id]


@pytest.mark.slow(seconds=60)
def test_slow_202s_under_load_leave_no_duplicate_and_lose_nothing(
    fake_zendesk: FakeZendesk, tmp_path: Path
) -> None:
    env = relay_env(
        fake_zendesk, ZENDESK_RATE_LIMIT_PER_MINUTE="600000", ZENDESK_READ_TIMEOUT=str(READ_TIMEOUT)
    )
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    ids = [f"slow-{i:04d}" for i in range(600)]
    stop = threading.Event()
    slow = threading.Thread(target=slow_now_and_then, args=(fake_zendesk, stop), daemon=True)
    slow.start()
    try:
        result = asyncio.run(post_events(f"{relay.url}/v1/events", TOKEN, ids, concurrency=8))
        stop.set()
        slow.join()
        assert result.acked == set(ids)
        everything = lambda: set(stored_order_ids(fake_zendesk)) >= result.acked  # noqa: E731
        assert wait_until(everything, 120, interval=0.5), relay.logs()[-3000:]
        assert wait_until(lambda: metric(relay, "aep_relay_store_pending_deliveries{") == 0, 60)
        verified = metric(relay, "aep_relay_readbacks_total{", 'result="verified"')
    finally:
        stop.set()
        relay.stop()
    counts = Counter(stored_order_ids(fake_zendesk))
    late = sum(1 for r in fake_zendesk.posts if r.status is None)
    report(
        "slow-202",
        {"posted": len(ids), "acknowledged": len(result.acked), "stored_unique": len(counts),
         "duplicates": sum(n - 1 for n in counts.values()), "answered_too_late": late,
         "verified_not_resent": verified, "sends": len(fake_zendesk.posts), "reads": len(fake_zendesk.reads)},
    )  # fmt: skip
    assert late >= 10, "too few slow answers to prove anything"
    assert verified >= late * 0.9
    assert fake_zendesk.duplicate_count() == 0
    assert sum(n - 1 for n in counts.values()) == 0
