"""What a read-back looks for and what it takes for the event sent (app.destinations.zendesk_read)."""

from __future__ import annotations

from typing import Any

import pytest

from app.destinations.base import OutboundRequest
from app.destinations.zendesk_read import (
    identifier_query,
    next_cursor,
    now_rfc3339,
    read_scope,
    same_event,
    same_instant,
    with_query,
)

SENT: dict[str, Any] = {
    "source": "shop",
    "type": "order_completed",
    "created_at": "2024-05-01T12:00:00.250Z",
    "properties": {"order_id": "ORD-1", "total": 539.97, "items": [{"sku": "A", "qty": 2}], "gift": False},
}
PROFILE = {
    "source": "shop",
    "type": "customer",
    "identifiers": [{"type": "email", "value": "a+b@example.com"}],
}


def stored(**changes: Any) -> dict[str, Any]:
    return {**SENT, "id": "01HX", "received_at": "2024-05-01T12:00:01Z", **changes}


def test_the_event_as_zendesk_keeps_it_is_the_one_sent() -> None:
    assert same_event(SENT, stored())
    # the same instant written another way, and properties as strings ("all event properties are strings")
    as_strings = {
        "order_id": "ORD-1",
        "total": "539.97",
        "items": [{"sku": "A", "qty": "2"}],
        "gift": "false",
    }
    assert same_event(SENT, stored(created_at="2024-05-01T14:00:00.250+02:00", properties=as_strings))


@pytest.mark.parametrize(
    "changes",
    [
        {"source": "shop2"},
        {"type": "order_cancelled"},
        {"created_at": "2024-05-01T12:00:00.251Z"},
        {"created_at": "not a time"},
        {"properties": {**SENT["properties"], "total": 540}},
        {"properties": {**SENT["properties"], "extra": "x"}},
    ],
)
def test_another_event_is_not_the_one_sent(changes: dict[str, Any]) -> None:
    assert not same_event(SENT, stored(**changes))


def test_a_sent_description_must_match_and_an_absent_one_is_not_compared() -> None:
    with_description = {**SENT, "description": "Order 1"}
    assert same_event(with_description, stored(description="Order 1"))
    assert not same_event(with_description, stored(description="Order 2"))
    assert same_event(SENT, stored(description="added by someone"))


def test_instants_compare_to_the_second_when_one_side_keeps_seconds_only() -> None:
    assert same_instant("2024-05-01T12:00:00.250Z", "2024-05-01T12:00:00Z")
    assert not same_instant("2024-05-01T12:00:00.250Z", "2024-05-01T12:00:01Z")
    assert not same_instant("2024-05-01T12:00:00.250Z", None)


def test_the_read_scope_of_each_create_endpoint() -> None:
    body = {"event": SENT, "profile": PROFILE}
    scope = read_scope(OutboundRequest("POST", "/api/v2/user_profiles/events", body))
    assert scope is not None
    assert (scope.path, scope.query) == (
        "/api/v2/user_profiles/events",
        {"identifier": "shop:customer:email:a+b@example.com"},
    )
    for path in ("/api/v2/user_profiles/01HP/events", "/api/v2/users/123/events"):
        scope = read_scope(OutboundRequest("POST", path, {"event": SENT}))
        assert scope is not None and (scope.path, scope.query) == (path, {})


@pytest.mark.parametrize(
    "body",
    [
        {"event": {**SENT, "created_at": None}, "profile": PROFILE},  # never stamped
        {"event": SENT, "profile": {**PROFILE, "identifiers": []}},
        {"event": SENT},
        ["not", "an", "object"],
    ],
)
def test_a_request_that_cannot_be_looked_for(body: Any) -> None:
    assert read_scope(OutboundRequest("POST", "/api/v2/user_profiles/events", body)) is None


def test_identifier_queries_are_percent_encoded_whole() -> None:
    query = identifier_query(PROFILE)
    assert query == "shop:customer:email:a+b@example.com"
    assert with_query("/p", {"identifier": query, "filter[source]": "shop"}) == (
        "/p?identifier=shop%3Acustomer%3Aemail%3Aa%2Bb%40example.com&filter%5Bsource%5D=shop"
    )


def test_cursors_are_followed_only_while_more_is_said() -> None:
    assert next_cursor({"meta": {"after_cursor": "X", "has_more": True}}) == "X"
    assert next_cursor({"meta": {"after_cursor": "X", "has_more": False}}) is None
    assert next_cursor({"events": []}) is None
    assert next_cursor({"meta": {"after_cursor": "", "has_more": True}}) is None


def test_a_stamp_is_rfc3339_utc_with_milliseconds() -> None:
    assert now_rfc3339(1714564800.25) == "2024-05-01T12:00:00.250Z"
