"""The one ``xdm.eventType`` a mapping's ``when`` admits (shown in ``GET /v1/mappings``)."""

from __future__ import annotations

import pytest

from app.mapping.expressions import Expression
from app.mapping.loader import required_event_type

DESTINATIONS = {"zendesk": ("events", "profile_events", "user_events")}


@pytest.mark.parametrize(
    ("when", "event_type"),
    [
        ("xdm.eventType == 'commerce.purchases'", "commerce.purchases"),
        ("'commerce.purchases' == xdm.eventType", "commerce.purchases"),
        ('xdm.eventType == `"a.b"`', "a.b"),
        ("xdm.eventType == 'x' && data.ok", "x"),
        ("data.ok && xdm.eventType == 'x'", "x"),
        ("xdm.eventType == 'x' || xdm.eventType == 'y'", None),
        ("xdm.eventType != 'x'", None),
        ("data.eventType == 'x'", None),
        ("xdm.eventType == `1`", None),
        ("starts_with(xdm.eventType, 'commerce.')", None),
    ],
)
def test_required_event_type(when: str, event_type: str | None) -> None:
    assert required_event_type(Expression(when).parsed) == event_type
