"""WriteHealth alone: a store is failing from a failed write until a write begun after it works."""

from __future__ import annotations

from app.delivery.write_health import WriteHealth


def test_a_failure_lasts_until_a_later_write_succeeds() -> None:
    health = WriteHealth()
    assert health.failure is None
    health.failed("SQLite: database or disk is full")
    failure = health.failure
    assert failure is not None and failure.reason == "SQLite: database or disk is full"
    description = health.describe()
    assert description is not None
    assert description.startswith("last write failed 0 s ago: SQLite: database or disk is full")
    health.succeeded()
    assert health.failure is None and health.describe() is None
    assert health.last_success_at is not None


def test_a_write_begun_before_the_failure_does_not_clear_it() -> None:
    """The sync of a commit made before the disk filled up answers after the failure."""
    health = WriteHealth()
    earlier = health.ticket()
    health.failed("SQLite: database or disk is full")
    health.succeeded(earlier)
    assert health.failure is not None
    health.succeeded(health.ticket())
    assert health.failure is None


def test_probes_close_together_share_one() -> None:
    health = WriteHealth()
    assert health.probe_due(60.0)
    assert not health.probe_due(60.0)
    assert health.probe_due(0.0)
