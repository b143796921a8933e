"""RFC 3339 date-times: what Zendesk's created_at and Yotpo's timestamp accept."""

from __future__ import annotations

import pytest

from app.destinations.timestamps import is_rfc3339


@pytest.mark.parametrize(
    "value",
    ["2024-05-01T12:00:00Z", "2024-05-01t12:00:00z", "2024-05-01T12:00:00.123456+02:00",
     "2024-05-01T12:00:00-05:30", "2016-12-31T23:59:60Z"],
)  # fmt: skip
def test_date_times_with_an_offset_pass(value: str) -> None:
    assert is_rfc3339(value)


@pytest.mark.parametrize(
    "value",
    ["2024-05-01", "2024-W18-3", "2024-05-01T12:00:00", "20240501T120000Z", "2024-05-01 12:00:00Z",
     "2024-13-01T12:00:00Z", "2024-02-30T12:00:00Z", "2024-05-01T25:00:00Z", "2024-05-01T12:00Z",
     "2024-05-01T12:00:00+0200", " 2024-05-01T12:00:00Z", "2024-05-01T12:00:00+05:60",
     "2024-05-01T12:00:00-00:99", 1714564800, None],
)  # fmt: skip
def test_anything_else_fails(value: object) -> None:
    assert not is_rfc3339(value)
