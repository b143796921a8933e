"""The circuit breaker's state machine on a fake clock: closed → open → half-open probe → closed or open."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from app.delivery.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker

WALL = 1_700_000_000.0
DOWN = "destination_unavailable"


class Clock:
    """Monotonic and wall time moving together, by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL + self.now


def breaker(clock: Clock, failures: int = 3, probe: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker("zendesk", failures, probe, clock=clock.monotonic, wall=clock.wall)


def fail(circuit: CircuitBreaker, times: int, code: str = DOWN) -> None:
    for _ in range(times):
        circuit.record(code)


def test_it_opens_after_the_threshold_of_outages_in_a_row_and_leases_nothing() -> None:
    clock = Clock()
    circuit = breaker(clock)
    fail(circuit, 2)
    assert (circuit.state, circuit.wait(), circuit.allowed(20)) == (CLOSED, 0.0, 20)
    clock.now += 5
    with capture_logs() as logs:
        circuit.record("timeout")
    assert circuit.state == OPEN
    assert circuit.snapshot() == {"state": "open", "since": WALL + 105}
    assert (circuit.wait(), circuit.allowed(20)) == (30.0, 0)
    assert [(e["event"], e["failures"], e["code"]) for e in logs] == [("circuit_opened", 3, "timeout")]


def test_a_success_between_failures_starts_the_count_again() -> None:
    circuit = breaker(Clock())
    fail(circuit, 2)
    circuit.record(None)
    fail(circuit, 2)
    assert circuit.state == CLOSED
    fail(circuit, 1)
    assert circuit.state == OPEN


def test_429_moves_nothing_and_other_4xx_count_as_answers() -> None:
    circuit = breaker(Clock())
    fail(circuit, 2)
    circuit.record("rate_limited")  # the rate limiter's business: neither failure nor success
    fail(circuit, 1)
    assert circuit.state == OPEN
    circuit = breaker(Clock())
    for code in ("destination_rejected", "destination_auth_failed", "destination_not_found"):
        fail(circuit, 2)
        circuit.record(code)  # the destination answered: it is up
    assert circuit.state == CLOSED


def test_one_probe_per_interval_until_a_success_closes_it() -> None:
    clock = Clock()
    circuit = breaker(clock, probe=30.0)
    fail(circuit, 3)
    opened = circuit.since
    clock.now += 29.5
    assert (circuit.wait(), circuit.allowed(20)) == (0.5, 0)
    clock.now += 0.5
    assert (circuit.wait(), circuit.allowed(20)) == (0.0, 1)  # the probe
    circuit.leased(1)
    assert circuit.state == HALF_OPEN
    assert (circuit.wait(), circuit.allowed(20)) == (30.0, 0)  # nothing else while it is out
    clock.now += 2
    circuit.record(DOWN)  # the probe failed: open again for another interval
    assert (circuit.state, circuit.wait(), circuit.since) == (OPEN, 30.0, opened)
    clock.now += 30
    assert circuit.allowed(20) == 1
    circuit.leased(1)
    clock.now += 1
    with capture_logs() as logs:
        circuit.record(None)
    assert circuit.state == CLOSED
    assert circuit.snapshot() == {"state": "closed", "since": clock.wall()}
    assert (circuit.wait(), circuit.allowed(20)) == (0.0, 20)
    assert [(e["event"], e["open_seconds"]) for e in logs] == [("circuit_closed", 63.0)]


def test_a_probe_that_never_answers_lets_another_through_one_interval_later() -> None:
    clock = Clock()
    circuit = breaker(clock, probe=10.0)
    fail(circuit, 3)
    clock.now += 10
    circuit.leased(1)  # leased, then given back unsent (its token came too late): no outcome
    clock.now += 9.9
    assert circuit.allowed(5) == 0
    clock.now += 0.1
    assert (circuit.state, circuit.allowed(5)) == (HALF_OPEN, 1)


def test_a_429_to_the_probe_leaves_it_half_open_until_the_next_probe() -> None:
    clock = Clock()
    circuit = breaker(clock, probe=10.0)
    fail(circuit, 3)
    clock.now += 10
    circuit.leased(1)
    circuit.record("rate_limited")
    assert (circuit.state, circuit.allowed(5)) == (HALF_OPEN, 0)


def test_late_failures_of_sends_already_out_do_not_push_the_probe_back() -> None:
    clock = Clock()
    circuit = breaker(clock, probe=10.0)
    fail(circuit, 3)
    clock.now += 6
    fail(circuit, 4)  # answers to sends that left before it opened
    assert (circuit.state, circuit.wait()) == (OPEN, 4.0)


def test_a_late_success_closes_it_at_once() -> None:
    circuit = breaker(Clock())
    fail(circuit, 3)
    circuit.record(None)  # a send that left before it opened got through: the destination is back
    assert (circuit.state, circuit.allowed(7)) == (CLOSED, 7)


def test_nothing_leased_while_closed_or_none_leased_changes_nothing() -> None:
    clock = Clock()
    circuit = breaker(clock)
    circuit.leased(16)
    assert circuit.state == CLOSED
    fail(circuit, 3)
    clock.now += 30
    circuit.leased(0)  # nothing was due: the probe is still to be sent
    assert (circuit.state, circuit.allowed(5)) == (OPEN, 1)


def test_zero_failures_turns_it_off() -> None:
    circuit = breaker(Clock(), failures=0)
    fail(circuit, 1000)
    assert (circuit.state, circuit.allowed(9)) == (CLOSED, 9)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("zendesk", -1, 30.0)
    with pytest.raises(ValueError):
        CircuitBreaker("zendesk", 5, 0.0)
