"""Zendesk's pre-send rules as the relay checks them (pure functions, no network).

Every event of a site passes through ``validate_body``, so it checks first and builds paths
and messages only on failure; these tests pin each message and path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from app.destinations.zendesk import ZendeskConfig, ZendeskDestination, validate_body
from tests.conftest import make_settings

CREATED_AT_RULE = (
    "must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z "
    "(iso8601(...) in the mapping gives one)"
)

VALID: dict[str, Any] = {
    "profile": {
        "source": "shop",
        "type": "customer",
        "name": "Jane",
        "identifiers": [
            {"type": "email", "value": "jane@example.com"},
            {"type": "external_id", "value": "c-1"},
        ],
    },
    "event": {
        "source": "shop",
        "type": "order_completed",
        "created_at": "2024-05-01T12:00:00Z",
        "description": "Order 1",
        "properties": {"total": 12.5},
    },
}

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = body
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


def _drop(path: str) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = body
        for key in parents:
            target = target[key]
        del target[last]

    return edit


def violations_of(edit: Edit, *, with_profile: bool = True) -> list[tuple[str, str]]:
    """The rules the edited body breaks (it would not be sent)."""
    body = copy.deepcopy(VALID)
    edit(body)
    return [(v.path, v.message) for v in validate_body(body, with_profile=with_profile) if not v.warning]


def warnings_of(edit: Edit) -> list[tuple[str, str]]:
    """The recommendations the edited body does not follow (it is sent all the same)."""
    body = copy.deepcopy(VALID)
    edit(body)
    return [(v.path, v.message) for v in validate_body(body, with_profile=True) if v.warning]


def test_valid_body_has_no_violations() -> None:
    assert violations_of(lambda _body: None) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_drop("event"), [("event", "required, an object")]),
        (_set("event", []), [("event", "required, an object")]),
        (_set("event.source", ""), [("event.source", "required, a non-empty string")]),
        (_set("event.source", 5), [("event.source", "required, a non-empty string")]),
        (_set("event.type", None), [("event.type", "required, a non-empty string")]),
        (_set("event.type", "t" * 41), [("event.type", "at most 40 characters (has 41)")]),
        (_set("event.type", "t" * 40), []),
        (_set("event.source", "   "), [("event.source", "required, a non-empty string")]),
        (_set("event.type", "\t\n"), [("event.type", "required, a non-empty string")]),
        (
            _set("event.source", "zendesk"),
            [("event.source", "`zendesk` is reserved for Zendesk's own events")],
        ),
        (_set("event.source", "Zendesk"), []),  # the reference protects `zendesk`, in that case
        (_set("event.source", "ZENDESK"), []),
        (_set("event.type", "zendesk"), []),  # only sources are reserved
        (_drop("event.properties"), [("event.properties", "required, an object")]),
        (_set("event.created_at", "yesterday"), [("event.created_at", CREATED_AT_RULE)]),
        (_set("event.created_at", 1714564800), [("event.created_at", CREATED_AT_RULE)]),
        (_drop("event.created_at"), []),
        (_set("event.description", 7), [("event.description", "must be a string")]),
        (_drop("profile"), [("profile", "required, an object")]),
        (
            _set("profile.source", "zendesk"),
            [("profile.source", "`zendesk` is reserved for Zendesk's own events")],
        ),
        (_set("profile.source", "Zendesk"), []),
        (_set("profile.source", " "), [("profile.source", "required, a non-empty string")]),
        (_set("profile.type", "  "), [("profile.type", "required, a non-empty string")]),
        (_set("profile.type", "p" * 41), [("profile.type", "at most 40 characters (has 41)")]),
        (_set("profile.name", ["Jane"]), [("profile.name", "must be a string")]),
        (_set("profile.attributes", "gold"), [("profile.attributes", "must be an object")]),
        (_set("profile.user_id", 5), [("profile.user_id", "must be a string")]),
        (
            _set("profile.identifiers", []),
            [("profile.identifiers", "required, an array of 1 to 20 {type, value} objects")],
        ),
        (
            _set("profile.identifiers", [{"type": "email", "value": f"{n}@x.io"} for n in range(21)]),
            [("profile.identifiers", "at most 20 identifiers (has 21)")],
        ),
        (
            _set("profile.identifiers", ["jane@example.com"]),
            [("profile.identifiers[0]", "must be an object {type, value}")],
        ),
        (
            _set("profile.identifiers", [{"type": "email", "value": " "}, {"value": "c-1"}]),
            [
                ("profile.identifiers[0].value", "required, a non-empty string"),
                ("profile.identifiers[1].type", "required, a non-empty string"),
            ],
        ),
    ],
)
def test_each_rule_names_its_field(edit: Edit, expected: list[tuple[str, str]]) -> None:
    assert violations_of(edit) == expected


DUPLICATE = (
    "repeats an earlier identifier; Adobe's Zendesk extension asks for unique ones "
    "(Zendesk's own pages do not)"
)
UNKNOWN_KEY = "not a field of the Events API body (`event`, `profile`); sent as it is"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _set(
                "profile.identifiers",
                [{"type": "email", "value": "a@x.io"}, {"type": "email", "value": "a@x.io"}],
            ),
            [("profile.identifiers[1]", DUPLICATE)],
        ),
        (_set("zeta", 1), [("zeta", UNKNOWN_KEY)]),
    ],
)
def test_what_the_documents_do_not_forbid_is_a_warning(edit: Edit, expected: list[tuple[str, str]]) -> None:
    assert violations_of(edit) == []
    assert warnings_of(edit) == expected


@pytest.mark.parametrize(
    "value",
    ["2024-05-01", "2024-W18-3", "2024-05-01T12:00:00", "20240501T120000Z", "2024-05-01 12:00:00Z",
     "2024-05-01T12:00Z", "2024-05-01T12:00:00+0200", "2024-02-30T12:00:00Z", ""],
)  # fmt: skip
def test_created_at_must_be_an_rfc3339_date_time_with_an_offset(value: str) -> None:
    assert violations_of(_set("event.created_at", value)) == [("event.created_at", CREATED_AT_RULE)]


@pytest.mark.parametrize(
    "value",
    ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123+02:00", "2024-05-01t12:00:00z",
     "2024-05-01T07:30:00-04:30", "2016-12-31T23:59:60Z"],
)  # fmt: skip
def test_created_at_with_an_offset_passes(value: str) -> None:
    assert violations_of(_set("event.created_at", value)) == []


def test_unknown_top_level_keys_are_listed_in_order() -> None:
    def edit(body: dict[str, Any]) -> None:
        body["b"] = 1
        body["a"] = 2

    assert warnings_of(edit) == [("a", UNKNOWN_KEY), ("b", UNKNOWN_KEY)]


def test_profile_events_endpoint_refuses_a_profile() -> None:
    assert violations_of(lambda _body: None, with_profile=False) == [
        ("profile", "not accepted by the profile_events endpoint; send `event` only")
    ]


def dest() -> ZendeskDestination:
    return ZendeskDestination(ZendeskConfig.from_settings(make_settings()), dry_run=True)


def test_prepare_leaves_the_rendered_body_alone_when_the_path_needs_no_id() -> None:
    body = copy.deepcopy(VALID)
    request, violations = dest().prepare(body, None, {})
    assert (request.path, violations) == ("/api/v2/user_profiles/events", [])
    assert request.body == VALID


def test_prepare_takes_the_path_id_out_of_a_copy_of_the_body() -> None:
    body = {"event": copy.deepcopy(VALID["event"]), "profile_id": "p/1"}
    request, violations = dest().prepare(body, "profile_events", {})
    assert (request.path, violations) == ("/api/v2/user_profiles/p%2F1/events", [])
    assert request.body == {"event": VALID["event"]}
    assert body["profile_id"] == "p/1"  # the caller's body is not changed


def test_prepare_says_which_id_is_missing() -> None:
    request, violations = dest().prepare(copy.deepcopy(VALID), "user_events", {})
    assert request.path == "/api/v2/users/%7Buser_id%7D/events"
    assert [(v.path, v.message) for v in violations] == [
        (
            "user_id",
            "the user_events endpoint needs a non-empty `user_id` (in the body or `endpoint.user_id`)",
        )
    ]


USER_ID_RULE = "must be a Zendesk user id, digits only (Zendesk answers 400: id must be an integer)"


@pytest.mark.parametrize(
    ("body_edit", "params", "path"),
    [
        (None, {"user_id": "abc"}, "endpoint.user_id"),
        (None, {"user_id": "12 3"}, "endpoint.user_id"),
        (None, {"user_id": " 123"}, "endpoint.user_id"),
        (None, {"user_id": "-5"}, "endpoint.user_id"),
        (None, {"user_id": "\u0661\u0662"}, "endpoint.user_id"),  # digits, but not ASCII ones
        (None, {"user_id": "jane@example.com"}, "endpoint.user_id"),
        (_set("user_id", "u-1"), {}, "user_id"),
        (_set("profile.user_id", "zd-7"), {}, "profile.user_id"),
    ],
)
def test_user_events_refuses_a_user_id_that_is_not_a_number(
    body_edit: Edit | None, params: dict[str, Any], path: str
) -> None:
    body = copy.deepcopy(VALID)
    if body_edit is not None:
        body_edit(body)
    _, violations = dest().prepare(body, "user_events", params)
    assert [(v.path, v.message) for v in violations] == [(path, USER_ID_RULE)]


@pytest.mark.parametrize("user_id", ["123456", 123456, "0042"])
def test_user_events_takes_a_numeric_user_id(user_id: Any) -> None:
    request, violations = dest().prepare(copy.deepcopy(VALID), "user_events", {"user_id": user_id})
    assert violations == []
    assert request.path == f"/api/v2/users/{user_id}/events"
