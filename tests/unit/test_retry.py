"""The retry policy: capped exponential backoff with full jitter; Retry-After wins."""

from __future__ import annotations

import random

from app.delivery.retry import RetryPolicy
from app.problems import Problem


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (20, 30.0)]:
        samples = [policy.backoff(attempt) for _ in range(500)]
        assert min(samples) >= 0.0 and max(samples) <= ceiling
        assert max(samples) > 0.9 * ceiling  # full jitter spreads over the whole range


def test_backoff_grows_on_average() -> None:
    policy = RetryPolicy(base=1.0, cap=1000.0, rng=random.Random(1))
    means = [sum(policy.backoff(a) for _ in range(2000)) / 2000 for a in range(1, 7)]
    assert means == sorted(means)
    assert means[-1] > 10 * means[0]


def test_retry_after_overrides_the_backoff() -> None:
    policy = RetryPolicy(base=1.0, cap=1000.0)
    problem = Problem("rate_limited", retry_after=42.0)
    assert policy.next_attempt(problem, attempts=1, created_at=0.0, now=100.0) == 142.0


def test_not_retryable_problems_go_to_the_dead_letters() -> None:
    assert RetryPolicy().next_attempt(Problem("destination_rejected"), 1, 0.0, 1.0) is None


def test_give_up_after_max_attempts_or_max_age() -> None:
    policy = RetryPolicy(max_attempts=3, max_age=100.0, base=1.0, cap=1.0)
    problem = Problem("destination_unavailable")
    assert policy.next_attempt(problem, 2, created_at=0.0, now=10.0) is not None
    assert policy.next_attempt(problem, 3, created_at=0.0, now=10.0) is None
    assert policy.next_attempt(Problem("rate_limited", retry_after=5.0), 1, created_at=0.0, now=99.0) is None
