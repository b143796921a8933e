"""Each destination account's limiter keeps the vendor's limit per second when there is one."""

from __future__ import annotations

from app.delivery.ratelimit import AdaptiveRateLimiter
from app.delivery.redis_ratelimit import RedisRateLimiter
from app.delivery.redis_store import RedisStore
from app.delivery.sqlite import SqliteStore
from app.relay import build_destinations, build_limiters
from tests.conftest import make_settings


def test_yotpo_limits_per_second_and_zendesk_per_minute_only() -> None:
    destinations = build_destinations(make_settings())
    assert destinations["yotpo"].rate_limit_per_second == 5.0  # shared/reference/yotpo.md 2.4
    assert destinations["zendesk"].rate_limit_per_second is None


def test_the_in_process_limiters_get_the_limit_per_second() -> None:
    settings = make_settings(yotpo_rate_limit_per_second=2.5, zendesk_rate_limit_per_minute=700)
    limiters = build_limiters(build_destinations(settings), SqliteStore(":memory:"))
    yotpo, zendesk = limiters["yotpo"], limiters["zendesk"]
    assert isinstance(yotpo, AdaptiveRateLimiter) and isinstance(zendesk, AdaptiveRateLimiter)
    assert (yotpo.per_second, yotpo.burst) == (2.5, 2)
    assert (zendesk.per_second, zendesk.burst) == (None, 12)  # 700 * 0.98 / 60 = 11.4 a second, plus one


def test_the_shared_limiters_get_the_limit_per_second() -> None:
    limiters = build_limiters(build_destinations(make_settings()), RedisStore("redis://127.0.0.1:1/0"))
    yotpo, zendesk = limiters["yotpo"], limiters["zendesk"]
    assert isinstance(yotpo, RedisRateLimiter) and isinstance(zendesk, RedisRateLimiter)
    assert (yotpo.per_second, zendesk.per_second) == (5.0, None)
