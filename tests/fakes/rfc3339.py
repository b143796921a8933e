"""RFC 3339 ``date-time`` for the fakes: the check, the instant a value names, and "now".

Read from RFC 3339 on its own: the relay's own check must not be the one that tests it.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

__all__ = ["instant", "is_rfc3339_date_time", "utc_now_text"]

# RFC 3339 section 5.6
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def is_rfc3339_date_time(value: Any) -> bool:
    """An RFC 3339 ``date-time``: full date, ``T``, full time with seconds, offset or ``Z``.

    Section 5.7's ranges: month 01-12, the month's days (leap years included), hour 00-23,
    minute 00-59, second 00-60 (a leap second), offset hour 00-23 and minute 00-59."""
    found = _DATE_TIME.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    offset_hour, offset_minute = (int(part or 0) for part in found.groups()[8:])
    return (
        1 <= month <= 12
        and 1 <= day <= _days_in_month(year, month)
        and hour <= 23
        and minute <= 59
        and second <= 60
        and offset_hour <= 23
        and offset_minute <= 59
    )


def instant(value: str) -> Decimal:
    """Seconds since the Unix epoch, exact (every fraction digit kept), that a valid RFC 3339
    ``date-time`` names: the same moment written with other offsets gives the same number.
    ValueError for anything :func:`is_rfc3339_date_time` refuses."""
    if not is_rfc3339_date_time(value):
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    found = _DATE_TIME.fullmatch(value)
    assert found is not None
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    fraction, sign, offset_hour, offset_minute = found.groups()[6:]
    offset = (int(offset_hour or 0) * 60 + int(offset_minute or 0)) * 60
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    seconds -= offset if sign == "+" else -offset
    return Decimal(seconds) + Decimal("0" + (fraction or ".0"))


def utc_now_text() -> str:
    """Now, in UTC to the millisecond, as ``2024-05-01T12:00:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
