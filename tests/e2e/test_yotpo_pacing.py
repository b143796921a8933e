"""A backlog for Yotpo after an idle spell goes out at Yotpo's 5 requests a second per store
(``YOTPO_RATE_LIMIT_PER_SECOND``): not one 429 from the fake Yotpo, which keeps that limit as
documented, from one relay on SQLite or from two replicas on one Redis.

Before the limit per second the catch-up allowance let about 15 requests go at once after a
few idle seconds: 429s, then a paused destination."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.e2e.relay_process import RelayProcess
from tests.fakes.redis_server import MISSING, RedisServer, available
from tests.fakes.yotpo import FakeYotpo
from tests.load.loadgen import post_events, wait_until
from tests.load.test_durability import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.slow(seconds=40)]

BACKLOG = 40
IDLE_SECONDS = 4.0  # longer than the catch-up allowance (3 s of slots): all of it is free

MAPPING = """\
name: yotpo-pacing
destination: yotpo
event_id: xdm._id
body:
  type: order_completed
  timestamp: "2024-05-01T12:00:00Z"
  customer:
    external_id: "{{ xdm._id }}"
"""


@contextmanager
def relays(fake: FakeYotpo, tmp_path: Path, count: int, **extra: str) -> Iterator[list[RelayProcess]]:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "yotpo-pacing.yaml").write_text(MAPPING)
    env = {
        "RELAY_INGEST_TOKENS": TOKEN,
        "RELAY_LOG_LEVEL": "warning",
        "RELAY_MAPPINGS_DIR": str(mappings),
        "YOTPO_BASE_URL": fake.base_url,
        "YOTPO_STORE_ID": fake.store_id,
        "YOTPO_SECRET": fake.secret,
        **extra,
    }
    started = [RelayProcess(env, tmp_path / f"relay-{n}.log") for n in range(count)]
    with ExitStack() as stack:
        for relay in started:
            relay.start()
            stack.callback(relay.stop)
        yield started


def deliver_a_backlog_after_an_idle_spell(fake: FakeYotpo, urls: list[str]) -> float:
    """One event, an idle spell, then a backlog: the seconds the backlog took to arrive."""
    urls = [f"{url}/v1/events" for url in urls]
    assert len(asyncio.run(post_events(urls, TOKEN, ["warm-up"])).acked) == 1
    assert wait_until(lambda: len(fake.accepted) >= 1, 30)
    time.sleep(IDLE_SECONDS)
    ids = [f"backlog-{i:03d}" for i in range(BACKLOG)]
    posted = time.monotonic()
    assert len(asyncio.run(post_events(urls, TOKEN, ids, concurrency=BACKLOG)).acked) == BACKLOG
    assert wait_until(lambda: len(fake.accepted) >= BACKLOG + 1 or fake.throttled > 0, 90, interval=0.2)
    assert fake.throttled == 0, f"{fake.throttled} answers were 429"
    assert len(fake.accepted) == BACKLOG + 1
    return time.monotonic() - posted


def test_one_relay_sends_a_backlog_after_an_idle_spell_without_a_429(tmp_path: Path) -> None:
    with FakeYotpo() as fake, relays(fake, tmp_path, 1) as started:
        took = deliver_a_backlog_after_an_idle_spell(fake, [r.url for r in started])
    assert took >= (BACKLOG - 5) / 5  # 5 at once, then never more than 5 a second


@pytest.mark.skipif(not available(), reason=MISSING)
def test_two_replicas_on_redis_send_a_backlog_after_an_idle_spell_without_a_429(tmp_path: Path) -> None:
    with (
        RedisServer(tmp_path / "redis") as redis,
        FakeYotpo() as fake,
        relays(fake, tmp_path, 2, RELAY_STORE=redis.url, RELAY_REDIS_PREFIX="pace") as started,
    ):
        took = deliver_a_backlog_after_an_idle_spell(fake, [r.url for r in started])
    assert took >= (BACKLOG - 5) / 5
