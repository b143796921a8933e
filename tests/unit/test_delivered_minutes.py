"""DeliveredMinutes alone, on a clock the test moves: counts land in their wall-clock minute
and old minutes drop out of the series and of memory."""

from __future__ import annotations

from app.delivery.delivered_minutes import DeliveredMinutes


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_land_in_their_minute_oldest_first() -> None:
    clock = Clock(600.0 * 60 + 5)  # 5 s into minute 600
    minutes = DeliveredMinutes(minutes=4, clock=clock)
    for _ in range(3):
        minutes.delivered("zendesk")
    clock.now += 60
    minutes.delivered("zendesk")
    minutes.delivered("yotpo")
    assert minutes.series("zendesk") == [0, 0, 3, 1]
    assert minutes.series("yotpo") == [0, 0, 0, 1]
    assert minutes.series("unknown") == [0, 0, 0, 0]


def test_minutes_older_than_the_window_are_dropped() -> None:
    clock = Clock(0.0)
    minutes = DeliveredMinutes(minutes=3, clock=clock)
    for _ in range(10):
        minutes.delivered("zendesk")
        clock.now += 60
    assert minutes.series("zendesk") == [1, 1, 0]  # the minute under way has none yet
    minutes.delivered("zendesk")
    assert minutes.series("zendesk") == [1, 1, 1]
    assert len(minutes._counts["zendesk"]) <= 3  # memory stays bounded


def test_a_quiet_spell_longer_than_the_window_shows_zeros() -> None:
    clock = Clock(0.0)
    minutes = DeliveredMinutes(minutes=5, clock=clock)
    minutes.delivered("zendesk")
    clock.now += 3600
    assert minutes.series("zendesk") == [0, 0, 0, 0, 0]
