"""RFC 3339 date-times, as Zendesk's ``created_at`` and Yotpo's ``timestamp`` take them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

# RFC 3339 section 5.6: full-date "T" full-time, the offset required (Z, or +hh:mm / -hh:mm,
# hours 00-23 and minutes 00-59: datetime alone would take +05:60 as 6 hours)
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)", re.ASCII
)
RFC3339_RULE = "must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z"


def is_rfc3339(value: Any) -> bool:
    """True for a string that is an RFC 3339 date-time with its offset, and a real instant."""
    if not isinstance(value, str) or RFC3339.fullmatch(value) is None:
        return False
    text = value.upper().replace("Z", "+00:00")
    seconds = text[17:19]
    if seconds == "60":  # a leap second: valid in RFC 3339, unknown to datetime
        text = text[:17] + "59" + text[19:]
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
