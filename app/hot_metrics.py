"""Counters and histograms for the ingest hot path, exported through a prometheus_client registry.

``prometheus_client``'s own ``Counter.inc`` and ``Histogram.observe`` take a lock and check
their arguments on every call: a few microseconds each, and an ingest request makes about ten
of them (a twentieth of its CPU on the benchmark). The relay counts on one event loop thread,
so these keep plain numbers and build the metric families only when scraped. They offer the
same calls as the library's (``labels(...).inc()``, ``.observe()``) and the same exposition.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class CounterChild:
    """One label set's count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (never negative: callers count events)."""
        self.value += amount


class HistogramChild:
    """One label set's bucket counts (not cumulative), sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose upper bound is at least ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


Child = TypeVar("Child", CounterChild, HistogramChild)


class _Family(Collector, Generic[Child]):
    """A named, labelled family of children, created on first use of their label values."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        registry.register(self)
        if not self.labelnames:
            self.labels()  # shown from the start, as the library does

    def _new_child(self) -> Child:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return []  # names are checked against the registry at collect time only

    def labels(self, *values: str) -> Child:
        """The child for these label values, created at zero on first use."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self._children[values] = self._new_child()
        return child


class HotCounter(_Family[CounterChild]):
    """A labelled counter: ``labels(*values).inc(amount)``, or ``inc()`` when it has no labels."""

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class HotHistogram(_Family[HistogramChild]):
    """A labelled histogram with fixed buckets: ``labels(*values).observe(seconds)``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [*(_go_float(b) for b in self.bounds), "+Inf"]
        for values, child in list(self._children.items()):
            running, cumulative = 0, []
            for edge, count in zip(edges, list(child.counts), strict=True):
                running += count
                cumulative.append((edge, float(running)))
            family.add_metric(list(values), cumulative, child.sum)
        yield family


def _go_float(bound: float) -> str:
    """A bucket bound as the library writes it in ``le`` (``0.005``, ``1.0``, ``1e+06``)."""
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]  # untyped in the library
    return text
