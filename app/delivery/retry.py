"""When to try a failed delivery again: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from app.problems import Problem


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ``uniform(0, min(cap, base * 2**(attempt-1)))``; ``Retry-After`` wins.

    A delivery gives up (dead letter) after ``max_attempts`` attempts, or once it is older than
    ``max_age`` seconds, or at once when the problem is not retryable.
    """

    max_attempts: int = 30
    max_age: float = 86_400.0
    base: float = 1.0
    cap: float = 3_600.0
    rng: random.Random | Any = random

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the given (1-based) failed attempt."""
        ceiling = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        return float(self.rng.uniform(0.0, ceiling))

    def next_attempt(self, problem: Problem, attempts: int, created_at: float, now: float) -> float | None:
        """Epoch time of the next try, or None when the delivery should go to the dead letters."""
        if not problem.retryable or attempts >= self.max_attempts:
            return None
        delay = problem.retry_after if problem.retry_after is not None else self.backoff(attempts)
        due = now + delay
        if due - created_at > self.max_age:
            return None
        return due
