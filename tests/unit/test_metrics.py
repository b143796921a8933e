"""RelayMetrics alone: store depth read on scrape behind a short cache, and a scrape that
answers when the store cannot."""

from __future__ import annotations

import asyncio
import time

from app.delivery.store import StoreStats, StoreUnavailable
from app.metrics import RelayMetrics


class StatsOnlyStore:
    """The one method of the Store protocol that scrapes use."""

    def __init__(self, stats: StoreStats | None) -> None:
        self.result = stats
        self.calls = 0

    async def stats(self) -> StoreStats:
        self.calls += 1
        await asyncio.sleep(0.01)  # concurrent scrapes overlap here
        if self.result is None:
            raise StoreUnavailable("database is locked")
        return self.result


def sample(metrics: RelayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_store_depth_is_read_once_for_scrapes_close_together() -> None:
    metrics = RelayMetrics()
    stats = StoreStats(pending={"zendesk": 3}, oldest_pending_at={"zendesk": time.time() - 120}, dead=2)
    store = StatsOnlyStore(stats)

    async def scrapes() -> None:
        await asyncio.gather(*(metrics.refresh_store(store, ["zendesk", "yotpo"], {}) for _ in range(5)))
        await metrics.refresh_store(store, ["zendesk", "yotpo"], {})

    asyncio.run(scrapes())
    assert store.calls == 1
    assert sample(metrics, "aep_relay_store_pending_deliveries", destination="zendesk") == 3
    assert sample(metrics, "aep_relay_store_pending_deliveries", destination="yotpo") == 0
    age = sample(metrics, "aep_relay_store_oldest_pending_age_seconds", destination="zendesk")
    assert age is not None and age >= 120
    assert sample(metrics, "aep_relay_store_oldest_pending_age_seconds", destination="yotpo") == 0
    assert sample(metrics, "aep_relay_store_dead_letters") == 2


def test_a_scrape_still_answers_when_the_store_does_not() -> None:
    metrics = RelayMetrics()
    asyncio.run(metrics.refresh_store(StatsOnlyStore(None), ["zendesk"], {}))
    body, content_type = metrics.exposition(None)
    assert content_type.startswith("text/plain")
    assert b"aep_relay_events_received_total" in body
    assert sample(metrics, "aep_relay_store_pending_deliveries", destination="zendesk") is None


def test_each_relay_has_its_own_registry() -> None:
    one, two = RelayMetrics(), RelayMetrics()
    one.received("single", 2)
    assert sample(one, "aep_relay_events_received_total", shape="single") == 2
    assert sample(two, "aep_relay_events_received_total", shape="single") == 0
