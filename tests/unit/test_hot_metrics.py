"""The hot-path counters and histograms scrape exactly as prometheus_client's own do."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.hot_metrics import HotCounter, HotHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0, 30.0)
OBSERVED = (0.0005, 0.001, 0.0011, 0.05, 0.1, 2.0, 30.0, 31.0, 1e6)


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text format without the ``_created`` series (a time the library alone adds)."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_a_labelled_counter_scrapes_as_the_library_s() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hot = HotCounter("relay_things", "Things counted", ["shape", "result"], registry=ours)
    lib = Counter("relay_things", "Things counted", ["shape", "result"], registry=theirs)
    for counter in (hot, lib):
        counter.labels("single", "matched").inc()
        counter.labels("single", "matched").inc(2)
        counter.labels("batch", "ignored").inc(5)
    assert exposition(ours) == exposition(theirs)


def test_counters_without_labels_and_unused_families_scrape_as_the_library_s() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    HotCounter("relay_unused", "Never counted", ["code"], registry=ours)
    Counter("relay_unused", "Never counted", ["code"], registry=theirs)
    HotCounter("relay_plain", "No labels", registry=ours).inc(3)
    Counter("relay_plain", "No labels", registry=theirs).inc(3)
    assert exposition(ours) == exposition(theirs)


@pytest.mark.parametrize("labels", [(), ("mapping",)])
def test_histograms_bucket_as_the_library_does(labels: tuple[str, ...]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hot = HotHistogram("relay_seconds", "Durations", labels, buckets=BUCKETS, registry=ours)
    lib = Histogram("relay_seconds", "Durations", labels, buckets=BUCKETS, registry=theirs)
    for histogram in (hot, lib):
        child = histogram.labels("order") if labels else histogram
        for value in OBSERVED:
            child.observe(value)
    assert exposition(ours) == exposition(theirs)


def test_wrong_label_counts_are_refused() -> None:
    counter = HotCounter("relay_things", "Things", ["shape"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("single", "extra")
