"""Yotpo's pre-send rules, defaults and response classification (pure functions, no network)."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.destinations.base import Delivered
from app.destinations.yotpo import (
    EVENT_ID_NAMESPACE,
    YotpoConfig,
    YotpoDestination,
    classify_response,
    default_event_id,
    error_message,
    validate_body,
)
from app.problems import Problem
from app.settings import ConfigError, Settings
from tests.conftest import make_settings

VALID: dict[str, Any] = {
    "type": "order_shipped",
    "source": "adobe_relay",
    "timestamp": "2024-05-01T12:00:00Z",
    "id": "evt-1",
    "customer": {"external_id": "c-1", "email": "a@example.com", "properties": {"tier": "gold"}},
    "properties": {"order_total": 12.5, "gift": False, "items": 2, "currency": "EUR"},
}


def dest(**overrides: Any) -> YotpoDestination:
    values: dict[str, Any] = {"yotpo_store_id": "store-123", "yotpo_secret": "s3cret-value"}
    values.update(overrides)
    return YotpoDestination(YotpoConfig.from_settings(make_settings(**values)), dry_run=True)


def body_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    change(body)
    return body


def paths(body: dict[str, Any]) -> list[str]:
    """The paths of the rules broken (the request would not be sent)."""
    return [v.path for v in validate_body(body) if not v.warning]


def warned(body: dict[str, Any]) -> list[str]:
    """The paths of the recommendations not followed (sent, with a warning)."""
    return [v.path for v in validate_body(body) if v.warning]


def test_a_valid_body_has_no_violations_and_is_sent_unchanged() -> None:
    request, violations = dest().prepare(VALID, None, {"event_id": "other"})
    assert violations == []
    assert request.body == VALID
    assert request.method == "POST"
    assert request.path == "/core/v3/stores/store-123/custom_events"


# (name, change to VALID, exact violation paths)
FAILING: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    ("type missing", lambda b: b.pop("type"), ["type"]),
    ("type empty", lambda b: b.update(type=""), ["type"]),
    ("type not a string", lambda b: b.update(type=3), ["type"]),
    ("type too long", lambda b: b.update(type="a" * 256), ["type"]),
    ("source too long", lambda b: b.update(source="b" * 256), ["source"]),
    ("source null", lambda b: b.update(source=None), ["source"]),
    ("timestamp not ISO", lambda b: b.update(timestamp="yesterday"), ["timestamp"]),
    ("timestamp a number", lambda b: b.update(timestamp=1714564800), ["timestamp"]),
    # RFC 3339 only: ISO 8601 forms without a time, an offset or the extended format are refused
    ("timestamp a date only", lambda b: b.update(timestamp="2024-05-01"), ["timestamp"]),
    ("timestamp a week date", lambda b: b.update(timestamp="2024-W18-3"), ["timestamp"]),
    ("timestamp without an offset", lambda b: b.update(timestamp="2024-05-01T12:00:00"), ["timestamp"]),
    ("timestamp in basic format", lambda b: b.update(timestamp="20240501T120000Z"), ["timestamp"]),
    ("timestamp not a real date", lambda b: b.update(timestamp="2024-02-30T12:00:00Z"), ["timestamp"]),
    ("id empty", lambda b: b.update(id=""), ["id"]),
    ("id a number", lambda b: b.update(id=42), ["id"]),
    ("customer missing", lambda b: b.pop("customer"), ["customer"]),
    ("customer not an object", lambda b: b.update(customer="c-1"), ["customer"]),
    (
        "customer with no identifier",
        lambda b: b.update(customer={"properties": {"tier": "gold"}}),
        ["customer"],
    ),
    (
        "customer with both email and phone",
        lambda b: b.update(customer={"email": "a@example.com", "phone_number": "+14155550123"}),
        ["customer"],
    ),
    (
        "phone not E.164",
        lambda b: b.update(customer={"phone_number": "(415) 555-0123"}),
        ["customer.phone_number"],
    ),
    (
        "phone without plus",
        lambda b: b.update(customer={"external_id": "c-1", "phone_number": "14155550123"}),
        ["customer.phone_number"],
    ),
    (
        "phone with a trailing newline",
        lambda b: b.update(customer={"phone_number": "+14155550123\n"}),
        ["customer.phone_number"],
    ),
    (
        "phone in other digits",
        lambda b: b.update(customer={"phone_number": "+1" + "\u0665" * 10}),
        ["customer.phone_number"],
    ),
    (
        "external_id empty",
        lambda b: b.update(customer={"external_id": "", "email": "a@example.com"}),
        ["customer.external_id"],
    ),
    (
        "external_id a number",
        lambda b: b.update(customer={"external_id": 7, "email": "a@example.com"}),
        ["customer.external_id"],
    ),
    (
        "customer.properties not an object",
        lambda b: b["customer"].update(properties=["gold"]),
        ["customer.properties"],
    ),
    (
        "customer.properties null value and key with a space",
        lambda b: b["customer"].update(properties={"loyalty tier": "gold", "age": None}),
        ["customer.properties.loyalty tier", "customer.properties.age"],
    ),
    ("properties not an object", lambda b: b.update(properties="x"), ["properties"]),
    ("properties object value", lambda b: b["properties"].update(meta={"a": 1}), ["properties.meta"]),
    ("properties list value", lambda b: b["properties"].update(skus=["a"]), ["properties.skus"]),
    ("properties NaN", lambda b: b["properties"].update(ratio=float("nan")), ["properties.ratio"]),
    ("unknown top-level key", lambda b: b.update(event="x", Profile={}), ["Profile", "event"]),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(c, e) for _, c, e in FAILING], ids=[n for n, _, _ in FAILING]
)
def test_each_rule_reports_its_field_path(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    assert paths(body_with(change)) == expected


PASSING: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("type of 255 characters", lambda b: b.update(type="a" * 255)),
    ("type with digits", lambda b: b.update(type="step_2_done")),
    ("source absent", lambda b: b.pop("source")),
    ("source of 255 characters", lambda b: b.update(source="s" * 255)),
    ("timestamp with offset and millis", lambda b: b.update(timestamp="2024-05-01T12:00:00.123+02:00")),
    ("timestamp with a negative offset", lambda b: b.update(timestamp="2024-05-01T07:00:00-05:00")),
    ("id a UUID", lambda b: b.update(id="3b0c4f5e-8a4a-4c5e-9a61-0d0a7f5b2c11")),
    ("customer by external_id only", lambda b: b.update(customer={"external_id": "c-1"})),
    ("customer by email only", lambda b: b.update(customer={"email": "a@example.com"})),
    ("customer by E.164 phone only", lambda b: b.update(customer={"phone_number": "+14155550123"})),
    (
        "external_id with email and phone",
        lambda b: b.update(
            customer={"external_id": "c-1", "email": "a@x.io", "phone_number": "+447700900123"}
        ),
    ),
    ("properties absent", lambda b: b.pop("properties")),
    ("properties empty", lambda b: b.update(properties={})),
    (
        "properties of every primitive",
        lambda b: b.update(properties={"s": "x", "t": True, "i": 1, "f": 1.5, "d": "2024-05-01T00:00:00Z"}),
    ),
    ("customer.properties absent", lambda b: b["customer"].pop("properties")),
    # Yotpo states the null and key rules for customer properties, not for event properties
    ("properties key with a space", lambda b: b["properties"].update({"order total": 3})),
    ("properties null value", lambda b: b["properties"].update(coupon=None)),
]


@pytest.mark.parametrize("change", [c for _, c in PASSING], ids=[n for n, _ in PASSING])
def test_each_rule_accepts_a_conforming_body(change: Callable[[dict[str, Any]], None]) -> None:
    assert paths(body_with(change)) == []


# Yotpo's page says type and source "should" be snake_case: a warning, and the event is sent
WARNING_ONLY: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    ("type with spaces and capitals", lambda b: b.update(type="Order Shipped"), ["type"]),
    ("type camelCase", lambda b: b.update(type="orderShipped"), ["type"]),
    ("type double underscore", lambda b: b.update(type="order__shipped"), ["type"]),
    ("source with a dash", lambda b: b.update(source="Adobe-Relay"), ["source"]),
    ("both", lambda b: b.update(type="OrderShipped", source="AEP"), ["type", "source"]),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(c, e) for _, c, e in WARNING_ONLY], ids=[n for n, _, _ in WARNING_ONLY]
)
def test_names_not_in_snake_case_are_warnings(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    body = body_with(change)
    assert (paths(body), warned(body)) == ([], expected)
    [message, *_] = [v.message for v in validate_body(body)]
    assert message.startswith("should be snake_case") and "snake_case(" in message


def test_a_valid_body_warns_of_nothing() -> None:
    assert warned(VALID) == []


def test_messages_name_the_mapping_function_that_fixes_the_data() -> None:
    def change(b: dict[str, Any]) -> None:
        b.update(customer={"phone_number": "+1 415 555 0123", "properties": {"loyalty tier": 3, "x": None}})

    body = body_with(change)
    messages = {v.path: v.message for v in validate_body(body)}
    assert "e164(" in messages["customer.phone_number"]
    assert "underscore_keys(" in messages["customer.properties.loyalty tier"]
    assert "drop_nulls(" in messages["customer.properties.x"]


def test_data_is_never_normalised_silently() -> None:
    body = body_with(lambda b: b["customer"]["properties"].update({"loyalty tier": 3}))
    original = copy.deepcopy(body)
    request, violations = dest().prepare(body, None, {})
    assert [v.path for v in violations] == ["customer.properties.loyalty tier"]
    assert request.body == original
    assert body == original


def test_a_body_that_is_not_an_object() -> None:
    _, violations = dest().prepare(["x"], None, {})
    assert [v.path for v in violations] == [""]


def test_an_unknown_endpoint_is_a_violation() -> None:
    _, violations = dest().prepare(VALID, "profiles", {})
    assert [v.path for v in violations] == [""]
    _, violations = dest().prepare(VALID, "custom_events", {})
    assert violations == []


# Defaults


def test_timestamp_is_stamped_when_missing() -> None:
    body = body_with(lambda b: b.pop("timestamp"))
    before = datetime.now(UTC)
    request, violations = dest().prepare(body, None, {})
    assert violations == []
    stamp = request.body["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= when <= datetime.now(UTC) + timedelta(seconds=1)
    assert "timestamp" not in body  # the caller's body is not mutated


def test_a_null_timestamp_counts_as_missing() -> None:
    request, _ = dest().prepare(body_with(lambda b: b.update(timestamp=None)), None, {})
    assert request.body["timestamp"].endswith("Z")


def test_a_given_timestamp_is_kept() -> None:
    request, _ = dest().prepare(
        body_with(lambda b: b.update(timestamp="2020-01-01T00:00:00+02:00")), None, {}
    )
    assert request.body["timestamp"] == "2020-01-01T00:00:00+02:00"


def default_id(mapping: str, event_id: str) -> str:
    request, violations = dest().prepare(
        body_with(lambda b: b.pop("id")), None, {"event_id": event_id, "mapping": mapping}
    )
    assert violations == []
    return str(request.body["id"])


def test_id_defaults_to_a_uuid5_of_the_mapping_and_the_event_id() -> None:
    made = default_id("yotpo-order-completed", "adobe-evt-9")
    assert made == default_event_id("yotpo-order-completed", "adobe-evt-9")
    assert uuid.UUID(made).version == 5
    # pinned: the namespace and the name's spelling are documented, and ids must not move
    assert made == str(uuid.uuid5(EVENT_ID_NAMESPACE, '["yotpo-order-completed","adobe-evt-9"]'))
    assert str(EVENT_ID_NAMESPACE) == "489c7d1d-df33-5f75-9987-794a04e1cb58"  # as docs/yotpo.md says
    shown = default_event_id("yotpo-order-completed", "a1b2c3d4-0000-4000-8000-000000000001")
    assert shown == "9a0690c0-00ee-5d91-9286-ed554c7458f2"


def test_two_mappings_on_one_event_get_two_ids_each_stable() -> None:
    completed = default_id("yotpo-order-completed", "adobe-evt-9")
    paid = default_id("yotpo-order-paid", "adobe-evt-9")
    assert completed != paid
    assert default_id("yotpo-order-completed", "adobe-evt-9") == completed  # a retry, a replay
    assert default_id("yotpo-order-completed", "adobe-evt-10") != completed
    # the parts cannot run into each other
    assert default_id("a", "bc") != default_id("ab", "c")


def test_a_given_id_is_kept() -> None:
    request, _ = dest().prepare(VALID, None, {"event_id": "adobe-evt-9"})
    assert request.body["id"] == "evt-1"


def test_id_missing_without_an_event_id_is_a_violation() -> None:
    for params in ({}, {"event_id": None}):
        request, violations = dest().prepare(body_with(lambda b: b.pop("id")), None, params)
        assert [v.path for v in violations] == ["id"]
        assert "id" not in request.body


# Configuration


def test_config_from_settings() -> None:
    d = dest(yotpo_store_id="a/b", yotpo_events_method="patch", yotpo_rate_limit_per_minute=120)
    assert d.config.base_url == "https://api.yotpo.com"
    assert d.name == "yotpo"
    assert d.endpoints == ("custom_events",)
    assert d.rate_limit_per_minute == 120
    assert d.account == "yotpo:https://api.yotpo.com:a/b"
    request, _ = d.prepare(VALID, None, {})
    assert (request.method, request.path) == ("PATCH", "/core/v3/stores/a%2Fb/custom_events")


@pytest.mark.parametrize(
    ("values", "has"),
    [
        ({"yotpo_store_id": "s", "yotpo_secret": "x"}, True),
        ({"yotpo_store_id": "s", "yotpo_access_token": "x"}, True),
        ({"yotpo_store_id": "s", "yotpo_api_key": "x"}, True),  # the deprecated name
        ({"yotpo_store_id": "s"}, False),
        ({"yotpo_secret": "x", "yotpo_access_token": "y"}, False),
    ],
)
def test_credentials_need_a_store_id_and_a_key_or_secret(values: dict[str, Any], has: bool) -> None:
    assert YotpoConfig.from_settings(make_settings(**values)).has_credentials is has


def test_plain_http_is_refused_for_non_loopback_hosts() -> None:
    with pytest.raises(ConfigError, match="https"):
        YotpoConfig.from_settings(make_settings(yotpo_base_url="http://10.0.0.5"))


# Error messages and classification

SHAPES: list[tuple[Any, str]] = [
    (
        {
            "status": {
                "message": "You are not authorized to access this page.",
                "code": 401,
                "error_type": "Exceptions::AccessDenied",
            }
        },
        "Exceptions::AccessDenied: You are not authorized to access this page.",
    ),
    ({"status": {"message": "Couldn't find Account", "code": 404}}, "Couldn't find Account"),
    (
        {"errors": [{"field": "customer.email", "message": "is invalid"}, {"message": "type is missing"}]},
        "customer.email: is invalid; type is missing",
    ),
    ({"errors": ["bad timestamp"]}, "bad timestamp"),
    ({"error": "invalid_client"}, "invalid_client"),
    ({"error": "invalid_grant", "error_description": "secret revoked"}, "invalid_grant: secret revoked"),
    ("Service  Unavailable\n", "Service Unavailable"),
    ({"message": "Internal error"}, "Internal error"),
]


@pytest.mark.parametrize(("body", "text"), SHAPES)
def test_error_message_reads_each_shape(body: Any, text: str) -> None:
    assert error_message(body) == text


def test_error_message_without_a_message() -> None:
    assert error_message(None) is None
    assert error_message({"unexpected": True}) is None
    assert error_message("") is None


def problem_for(status: int, body: bytes = b"", headers: dict[str, str] | None = None, **kw: Any) -> Problem:
    with pytest.raises(Problem) as caught:
        classify_response(status, headers or {}, body, **kw)
    return caught.value


@pytest.mark.parametrize(
    ("status", "code", "caller_status", "retryable"),
    [
        (400, "destination_rejected", 422, False),
        (401, "destination_auth_failed", 502, False),
        (403, "destination_auth_failed", 502, False),
        (404, "destination_not_found", 502, False),
        (301, "destination_not_found", 502, False),
        (408, "timeout", 504, True),
        (409, "destination_conflict", 409, False),
        (422, "destination_rejected", 422, False),
        (429, "rate_limited", 429, True),
        (500, "destination_unavailable", 502, True),
        (503, "destination_unavailable", 502, True),
    ],
)
def test_each_status_is_classified(status: int, code: str, caller_status: int, retryable: bool) -> None:
    problem = problem_for(status, b'{"errors":[{"message":"nope"}]}', {"X-Request-Id": "req-1"})
    doc = problem.to_dict()
    assert (doc["code"], doc["status"], doc["retryable"]) == (code, caller_status, retryable)
    assert doc["detail"] == "Yotpo: nope"
    assert doc["destination"] == "yotpo"
    assert doc["upstream"] == {
        "status": status,
        "request_id": "req-1",
        "body": {"errors": [{"message": "nope"}]},
    }


def test_an_empty_error_body_names_the_status() -> None:
    assert problem_for(502).detail == "Yotpo: HTTP 502"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"RateLimit-Reset": "3"}, 3.0),
        ({"Retry-After": "5", "RateLimit-Reset": "3"}, 5.0),
        ({}, 1.0),
        ({"Retry-After": "7200"}, 3600.0),  # at most an hour, whatever the header says
        ({"RateLimit-Reset": "604800"}, 3600.0),
        ({"RateLimit-Reset": "inf"}, 3600.0),
    ],
)
def test_429_retry_after(headers: dict[str, str], expected: float) -> None:
    assert problem_for(429, b"", headers).retry_after == expected


def test_5xx_retry_after_only_when_given() -> None:
    assert problem_for(503, b"down", {"Retry-After": "30"}).retry_after == 30.0
    assert problem_for(500, b"down").retry_after is None
    assert problem_for(503, b"down", {"Retry-After": "999999"}).retry_after == 3600.0
    assert problem_for(400, b"bad", {"Retry-After": "30"}).retry_after is None


def test_success_with_rate_limit_headers_per_minute() -> None:
    delivered = classify_response(
        201,
        {"X-Request-Id": "req-2", "RateLimit-Limit": "5", "RateLimit-Remaining": "4"},
        b'{"id":"evt-1"}',
    )
    assert delivered == Delivered(
        status=201, request_id="req-2", response={"id": "evt-1"}, rate_limit=300, rate_remaining=240
    )


def test_success_without_a_body() -> None:
    delivered = classify_response(204, {}, b"")
    assert delivered == Delivered(status=204)
    nested = classify_response(200, {}, b'{"custom_event":{"id":"evt-2"}}')
    assert nested.response == {"id": "evt-2"}


def test_secrets_and_tokens_are_masked_in_upstream_bodies() -> None:
    problem = problem_for(
        400,
        b'{"error":"bad token tok-abc123 for secret s3cret-value"}',
        secrets=("s3cret-value", "tok-abc123"),
    )
    text = str(problem.to_dict())
    assert "tok-abc123" not in text
    assert "s3cret-value" not in text
    assert problem.detail == "Yotpo: bad token *** for secret ***"


@pytest.mark.parametrize("status", [400, 429, 500, 503])
def test_rate_limit_headers_are_read_on_error_answers_too(status: int) -> None:
    headers = {"RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": "1"}
    problem = problem_for(status, b"", headers)
    assert (problem.rate_limit, problem.rate_remaining) == (120, 0)
    assert "rate_limit" not in problem.to_dict()  # for the limiter, not the caller
    assert (problem_for(status).rate_limit, problem_for(status).rate_remaining) == (None, None)


def test_the_access_token_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("pre-issued-token\n")
    monkeypatch.setenv("YOTPO_ACCESS_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("YOTPO_STORE_ID", "store-123")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert YotpoConfig.from_settings(settings).access_token == "pre-issued-token"
    assert "pre-issued-token" in settings.secret_values()  # masked in every log line
    assert settings.deprecated_in_use() == []


def test_the_deprecated_name_is_read_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOTPO_API_KEY", "old-name-token")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert YotpoConfig.from_settings(settings).access_token == "old-name-token"
    assert "old-name-token" in settings.secret_values()
    assert settings.deprecated_in_use() == [("YOTPO_API_KEY", "YOTPO_ACCESS_TOKEN")]
