"""Tests of the fake Zendesk server itself, over real HTTP with httpx."""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.zendesk import (
    ERROR_BODIES,
    CannedResponse,
    FakeZendesk,
    is_rfc3339_date_time,
    profile_id_for,
)

EVENTS = "/api/v2/user_profiles/events"
EMAIL = "agent@example.com"


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


TOKEN_AUTH = basic(f"{EMAIL}/token", "test-api-token")
OAUTH_AUTH = "Bearer test-oauth-token"
PASSWORD_AUTH = basic(EMAIL, "test-password")


def make_client(base_url: str, **kwargs: Any) -> httpx.Client:
    """A client for the plain-http fake; verify=False skips building a TLS context (~30 ms)."""
    return httpx.Client(base_url=base_url, verify=False, **kwargs)


def payload() -> dict[str, Any]:
    return {
        "profile": {
            "source": "adobe",
            "type": "customer",
            "identifiers": [
                {"type": "email", "value": "ada@example.com"},
                {"type": "external_id", "value": "ecid-123"},
            ],
        },
        "event": {
            "source": "adobe",
            "type": "order_placed",
            "properties": {"order_id": "A-1", "total": 12.5},
            "created_at": "2024-05-01T12:00:00Z",
        },
    }


@pytest.fixture
def client(fake_zendesk: FakeZendesk) -> Iterator[httpx.Client]:
    with make_client(
        fake_zendesk.base_url,
        headers={"Authorization": TOKEN_AUTH},
        timeout=5.0,
    ) as c:
        yield c


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "form"),
    [(TOKEN_AUTH, "api_token"), (OAUTH_AUTH, "oauth"), (PASSWORD_AUTH, "password")],
)
def test_each_auth_form_is_accepted(
    fake_zendesk: FakeZendesk,
    client: httpx.Client,
    header: str,
    form: str,
) -> None:
    r = client.post(EVENTS, json=payload(), headers={"Authorization": header})
    assert r.status_code == 202, r.text
    (rec,) = fake_zendesk.received
    assert rec.auth == form
    assert rec.status == 202
    assert fake_zendesk.accepted == [rec]


@pytest.mark.parametrize(
    "header",
    [
        None,
        basic(f"{EMAIL}/token", "wrong-token"),
        basic("other@example.com/token", "test-api-token"),
        basic(EMAIL, "wrong-password"),
        basic(EMAIL, "test-api-token"),  # token used as a password
        "Bearer wrong-oauth-token",
        "Bearer " + base64.b64encode(f"{EMAIL}/token:test-api-token".encode()).decode(),
        "Basic not*base64",
        "Token test-api-token",
    ],
)
def test_bad_auth_is_401(
    fake_zendesk: FakeZendesk,
    header: str | None,
) -> None:
    headers = {"Authorization": header} if header else {}
    with make_client(fake_zendesk.base_url, headers=headers) as c:
        r = c.post(EVENTS, json=payload())
    assert r.status_code == 401
    assert r.json() == {"error": "Couldn't authenticate you"}
    (rec,) = fake_zendesk.received
    assert rec.auth is None
    assert rec.status == 401
    assert fake_zendesk.accepted == []


def test_auth_is_checked_before_routing(client: httpx.Client) -> None:
    r = client.post("/api/v2/nowhere", json={}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "header"),
    [
        ({"api_token": None}, TOKEN_AUTH),
        ({"oauth_token": None}, OAUTH_AUTH),
        ({"password": None}, PASSWORD_AUTH),
    ],
)
def test_unconfigured_credential_is_refused(kwargs: dict[str, Any], header: str) -> None:
    with (
        FakeZendesk(**kwargs) as fake,
        make_client(fake.base_url, headers={"Authorization": header}) as c,
    ):
        assert c.post(EVENTS, json=payload()).status_code == 401


def test_custom_credentials() -> None:
    with (
        FakeZendesk(email="me@corp.test", api_token="tok") as fake,
        make_client(fake.base_url) as c,
    ):
        ok = c.post(EVENTS, json=payload(), headers={"Authorization": basic("me@corp.test/token", "tok")})
        assert ok.status_code == 202
        assert c.post(EVENTS, json=payload(), headers={"Authorization": TOKEN_AUTH}).status_code == 401


# -- success -----------------------------------------------------------------------------------


def test_success_shape_and_headers(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    r = client.post(EVENTS, json=payload())
    assert r.status_code == 202
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"status", "profile_id", "user_id"}
    assert body["status"] == "received"
    assert re.fullmatch(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", body["profile_id"])
    assert body["profile_id"] == profile_id_for(payload()["profile"])
    assert isinstance(body["user_id"], str)
    assert body["user_id"].isdigit()
    uuid.UUID(r.headers["x-zendesk-request-id"])
    assert r.headers["x-rate-limit"] == "700"
    assert r.headers["x-rate-limit-remaining"] == "699"

    r2 = client.post(EVENTS, json=payload())
    assert r2.json() == body  # deterministic
    assert r2.headers["x-zendesk-request-id"] != r.headers["x-zendesk-request-id"]
    assert r2.headers["x-rate-limit-remaining"] == "698"

    reordered = payload()
    reordered["profile"]["identifiers"].reverse()
    assert client.post(EVENTS, json=reordered).json()["profile_id"] == body["profile_id"]
    other = payload()
    other["profile"]["identifiers"] = [{"type": "email", "value": "grace@example.com"}]
    assert client.post(EVENTS, json=other).json()["profile_id"] != body["profile_id"]


def test_received_records_request_details(
    fake_zendesk: FakeZendesk,
    client: httpx.Client,
) -> None:
    before = time.monotonic()
    client.post(EVENTS + "?x=1", json=payload(), headers={"X-Custom": "yes"})
    (rec,) = fake_zendesk.received
    assert rec.method == "POST"
    assert rec.path == EVENTS
    assert rec.query == "x=1"
    assert rec.headers["x-custom"] == "yes"
    assert rec.headers["content-type"] == "application/json"
    assert rec.body == payload()
    assert json.loads(rec.raw) == payload()
    assert rec.received_at >= before


def test_users_endpoint(client: httpx.Client) -> None:
    r = client.post("/api/v2/users/123456/events", json=payload())
    assert r.status_code == 202
    assert r.json()["user_id"] == "123456"
    assert r.json()["profile_id"] == profile_id_for(payload()["profile"])


def test_users_endpoint_non_numeric_id(client: httpx.Client) -> None:
    r = client.post("/api/v2/users/abc/events", json=payload())
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["title"] == "Invalid attribute"
    assert "id must be an integer" in error["message"]


def test_profile_id_endpoint(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    body = {"event": payload()["event"]}
    created = client.post(EVENTS, json=payload()).json()
    r = client.post(f"/api/v2/user_profiles/{created['profile_id']}/events", json=body)
    assert r.status_code == 202
    assert r.json() == created  # the profile's id and its user

    # "Returns an error if the profile does not exist"
    missing = client.post("/api/v2/user_profiles/01E1DPYAA7HW7645KMJEY9CXRJ/events", json=body)
    assert missing.status_code == 404
    assert missing.json() == {"error": "RecordNotFound", "description": "Not found"}

    with_profile = client.post(f"/api/v2/user_profiles/{created['profile_id']}/events", json=payload())
    assert with_profile.status_code == 400
    assert with_profile.json()["errors"][0]["title"].startswith("profile: not allowed")


def identified(
    *identifiers: tuple[str, str], source: str = "adobe", kind: str = "customer"
) -> dict[str, Any]:
    body = payload()
    body["profile"] = {
        "source": source,
        "type": kind,
        "identifiers": [{"type": t, "value": v} for t, v in identifiers],
    }
    return body


def test_a_profile_is_matched_on_source_type_and_any_one_identifier(
    fake_zendesk: FakeZendesk, client: httpx.Client
) -> None:
    """Reference 1.1-1.2: the profile is created if missing, extra identifiers are added to it;
    `google` is matched as `email`, and e-mail values are lower-cased."""
    first = client.post(EVENTS, json=identified(("email", "ada@example.com"))).json()
    also = [
        identified(("external_id", "c-1"), ("email", "ada@example.com")),  # adds external_id
        identified(("external_id", "c-1"), ("phone_number", "+15550100")),  # matched on c-1
        identified(("email", "Ada@Example.COM")),
        identified(("google", "ada@example.com")),
    ]
    for body in also:
        answer = client.post(EVENTS, json=body).json()
        assert (answer["profile_id"], answer["user_id"]) == (first["profile_id"], first["user_id"])
    [profile] = fake_zendesk.profiles
    assert profile.id == first["profile_id"]
    assert profile.identifiers == [
        {"type": "email", "value": "ada@example.com"},
        {"type": "external_id", "value": "c-1"},
        {"type": "phone_number", "value": "+15550100"},
    ]
    others = [
        identified(("email", "ada@example.com"), kind="visitor"),
        identified(("email", "ada@example.com"), source="crm"),
        identified(("external_id", "c-2")),
    ]
    ids = {client.post(EVENTS, json=body).json()["profile_id"] for body in others}
    assert len(ids) == 3 and first["profile_id"] not in ids
    assert len(fake_zendesk.profiles) == 4
    fake_zendesk.reset()
    assert fake_zendesk.profiles == []


# Every error code (and `error` string) the reference shows for Zendesk (sections 1.5, 1.6).
DOCUMENTED_CODES = {
    "StartTimestampNotValid", "ClientError", "TooManyRequests", "RecordNotFound", "RecordInvalid",
    "Couldn't authenticate you", "invalid_token", "InvalidProfileTypeLength",
    "MissingOrInvalidAuthentication", "PermissionDenied", "RouteNotFound",
}  # fmt: skip


def codes_in(body: Any) -> set[str]:
    """The error codes of an answer: `errors[].code`, `error[].code`, `error` as text, `title`
    beside `description` (the Adobe doc's RouteNotFound)."""
    if not isinstance(body, dict):
        return set()
    codes = set()
    for key in ("errors", "error"):
        value = body.get(key)
        if isinstance(value, list):
            codes |= {str(e["code"]) for e in value if isinstance(e, dict) and "code" in e}
        elif isinstance(value, str):
            codes.add(value)
    if "description" in body and isinstance(body.get("title"), str):
        codes.add(body["title"])
    return codes


def test_every_error_the_fake_gives_is_a_documented_one(client: httpx.Client) -> None:
    answers = [canned.body for canned in ERROR_BODIES.values()]
    broken = payload()
    broken["event"]["source"] = "zendesk"
    for method, path, body, headers in [
        ("POST", EVENTS, broken, {}),
        ("POST", EVENTS, None, {"Content-Type": "application/json"}),
        ("POST", "/api/v2/nowhere", payload(), {}),
        (
            "POST",
            "/api/v2/user_profiles/01E1DPYAA7HW7645KMJEY9CXRJ/events",
            {"event": payload()["event"]},
            {},
        ),
        ("POST", "/api/v2/users/abc/events", payload(), {}),
        ("POST", EVENTS, payload(), {"Authorization": "Bearer nope"}),
    ]:
        r = client.request(method, path, json=body, headers=headers)
        assert r.status_code >= 400
        answers.append(r.json())
    found = set().union(*(codes_in(a) for a in answers))
    assert found <= DOCUMENTED_CODES, found - DOCUMENTED_CODES


@pytest.mark.parametrize(
    "value",
    ["2024-05-01T12:00:00Z", "2024-05-01t12:00:00z", "2024-05-01T12:00:00.123456789+02:00",
     "2024-05-01T12:00:00-23:59", "2016-12-31T23:59:60Z", "2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z",
     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-04-30T00:00:00Z"],
)  # fmt: skip
def test_created_at_is_an_rfc3339_date_time(client: httpx.Client, value: str) -> None:
    assert is_rfc3339_date_time(value)
    body = payload()
    body["event"]["created_at"] = value
    assert client.post(EVENTS, json=body).status_code == 202


@pytest.mark.parametrize(
    "value",
    ["2024-05-01", "2024-W18-3", "2024-122", "2024-05-01T12:00:00", "20240501T120000Z",
     "2024-05-01 12:00:00Z", "2024-05-01T12:00Z", "2024-05-01T12:00:00+0200", "2024-05-01T12:00:00+02",
     "2024-05-01T12:00:00.Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
     "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-05-00T00:00:00Z", "2024-05-01T24:00:00Z",
     "2024-05-01T12:60:00Z", "2024-05-01T12:00:61Z", "2024-05-01T12:00:00+24:00", "2024-05-01T12:00:00+01:60",
     "2024-05-01T12:00:00Z\n", " 2024-05-01T12:00:00Z", "\u0662024-05-01T12:00:00Z", "+2024-05-01T12:00:00Z",
     "", 1714564800, None],
)  # fmt: skip
def test_created_at_in_any_other_form_is_refused(client: httpx.Client, value: Any) -> None:
    assert not is_rfc3339_date_time(value)
    body = payload()
    body["event"]["created_at"] = value
    r = client.post(EVENTS, json=body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["title"] == "event.created_at: must be an RFC 3339 date-time with an offset"


@given(st.datetimes(timezones=st.timezones()), st.sampled_from(["seconds", "milliseconds", "microseconds"]))
def test_every_aware_datetime_the_standard_library_writes_is_accepted(when: datetime, spec: str) -> None:
    """Independent of the relay's check: Python's own RFC 3339 output (an aware `isoformat`)."""
    text = when.isoformat(timespec=spec)
    if re.search(r"[+-]\d{2}:\d{2}:\d{2}", text[19:]):  # an offset with seconds (old local times)
        return  # is not RFC 3339
    assert is_rfc3339_date_time(text)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v2/nowhere"),
        ("POST", "/api/v2/user_profiles"),
        ("GET", "/api/v2/nowhere"),
        ("PUT", "/api/v2/users/1/events"),
        ("PATCH", "/api/v2/user_profiles/01E1DPYAA7HW7645KMJEY9CXRJ"),
    ],
)
def test_unknown_route_is_404(client: httpx.Client, method: str, path: str) -> None:
    r = client.request(method, path, json=payload())
    assert r.status_code == 404
    assert r.json() == {"error": "RecordNotFound", "description": "Not found"}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_content_type_required(client: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(EVENTS, content=json.dumps(payload()).encode(), headers=headers)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/plain")
    assert "Content-Type must be application/json" in r.text


def test_content_type_with_charset_is_fine(client: httpx.Client) -> None:
    r = client.post(
        EVENTS,
        content=json.dumps(payload()).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 202


def test_chunked_body(client: httpx.Client) -> None:
    data = json.dumps(payload()).encode()

    def chunks() -> Iterator[bytes]:
        yield data[:10]
        yield data[10:]

    r = client.post(EVENTS, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 202


# -- body rules --------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def mutate(body: dict[str, Any]) -> None:
        target: Any = body
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value

    return mutate


_DELETE = object()

BODY_RULES = [
    ("event", _DELETE, "event: is required"),
    ("event", "x", "event: must be an object"),
    ("event.source", _DELETE, "event.source: is required"),
    ("event.source", "", "event.source: must be a non-empty string"),
    ("event.source", 5, "event.source: must be a non-empty string"),
    ("event.source", "s" * 41, "event.source: must be at most 40 characters"),
    ("event.source", "zendesk", "event.source: 'zendesk' is a protected"),
    ("event.type", _DELETE, "event.type: is required"),
    ("event.type", "   ", "event.type: must be a non-empty string"),
    ("event.type", "t" * 41, "event.type: must be at most 40 characters"),
    ("event.properties", _DELETE, "event.properties: is required"),
    ("event.properties", ["a"], "event.properties: must be an object"),
    ("event.created_at", "yesterday", "event.created_at: must be an RFC 3339 date-time"),
    ("event.created_at", 1714564800, "event.created_at: must be an RFC 3339 date-time"),
    ("event.created_at", "2024-05-01", "event.created_at: must be an RFC 3339 date-time"),
    ("profile", _DELETE, "profile: is required"),
    ("profile", [], "profile: must be an object"),
    ("profile.source", _DELETE, "profile.source: is required"),
    ("profile.source", "zendesk", "profile.source: 'zendesk' is a protected"),
    ("profile.source", "p" * 41, "profile.source: must be at most 40 characters"),
    ("profile.type", "", "profile.type: must be a non-empty string"),
    ("profile.type", "p" * 41, "profile.type: must be at most 40 characters"),
    ("profile.identifiers", _DELETE, "profile.identifiers: is required"),
    ("profile.identifiers", {}, "profile.identifiers: must be an array"),
    ("profile.identifiers", [], "profile.identifiers: must hold 1 to 20"),
    (
        "profile.identifiers",
        [{"type": "email", "value": f"u{i}@example.com"} for i in range(21)],
        "profile.identifiers: must hold 1 to 20",
    ),
    ("profile.identifiers", ["ada@example.com"], "profile.identifiers[0]: must be an object"),
    ("profile.identifiers", [{"value": "x"}], "profile.identifiers[0].type: must be a non-empty"),
    (
        "profile.identifiers",
        [{"type": "email", "value": "a@b.c"}, {"type": "email", "value": ""}],
        "profile.identifiers[1].value: must be a non-empty",
    ),
]


@pytest.mark.parametrize(("path", "value", "title"), BODY_RULES, ids=[r[2] for r in BODY_RULES])
def test_body_rule_refused(client: httpx.Client, path: str, value: Any, title: str) -> None:
    body = payload()
    _set(path, value)(body)
    r = client.post(EVENTS, json=body)
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert all(e["code"] == "ClientError" for e in errors)
    assert any(e["title"].startswith(title) for e in errors), errors


def test_body_rules_apply_to_users_endpoint(client: httpx.Client) -> None:
    body = payload()
    del body["profile"]
    r = client.post("/api/v2/users/1/events", json=body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["title"] == "profile: is required"


def test_all_broken_rules_are_reported(client: httpx.Client) -> None:
    body = payload()
    body["event"]["source"] = "zendesk"
    body["profile"]["type"] = ""
    titles = [e["title"] for e in client.post(EVENTS, json=body).json()["errors"]]
    assert len(titles) == 2


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_non_object_body_refused(client: httpx.Client, raw: bytes) -> None:
    r = client.post(EVENTS, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "ClientError"


def test_valid_edge_values_accepted(client: httpx.Client) -> None:
    body = payload()
    body["event"]["source"] = "s" * 40
    body["event"]["type"] = "t" * 40
    body["event"]["properties"] = {}
    body["event"]["created_at"] = "2024-05-01T12:00:00.123+02:00"
    body["profile"]["identifiers"] = [{"type": "email", "value": f"{i}@x.io"} for i in range(20)]
    body["profile"]["source"] = "Zendesk-like"
    r = client.post(EVENTS, json=body)
    assert r.status_code == 202, r.text


# -- scripting ---------------------------------------------------------------------------------


def test_error_bodies_catalogue() -> None:
    expected = {
        "errors_array_400", "client_error_403", "too_many_resources_429", "error_object_400",
        "no_help_desk_404", "record_not_found_404", "record_invalid_422",
        "couldnt_authenticate_401", "route_not_found_401", "adobe_error_array_401",
        "permission_denied_403", "too_many_requests_429", "plain_text_429", "plain_text_400",
        "plain_text_500", "plain_text_503",
    }  # fmt: skip
    assert expected <= set(ERROR_BODIES)
    encoded = {name: c.encode() for name, c in ERROR_BODIES.items()}
    assert len(set(encoded.values())) == len(encoded), "bodies must be distinguishable"
    for name, canned in ERROR_BODIES.items():
        assert canned.status >= 400, name
        assert str(canned.status) in name, name
        assert encoded[name], name
    assert ERROR_BODIES["too_many_requests_429"].headers["Retry-After"] == "7"
    assert ERROR_BODIES["plain_text_429"].headers["Retry-After"] == "5"
    assert ERROR_BODIES["plain_text_503"].headers["Retry-After"] == "3"
    assert "Retry-After" in ERROR_BODIES["too_many_resources_429"].headers


@pytest.mark.parametrize("name", sorted(ERROR_BODIES))
def test_error_bodies_served(
    fake_zendesk: FakeZendesk,
    client: httpx.Client,
    name: str,
) -> None:
    canned = ERROR_BODIES[name]
    fake_zendesk.enqueue(canned)
    r = client.post(EVENTS, json=payload())
    assert r.status_code == canned.status
    assert r.content == canned.encode()
    assert r.headers["content-type"] == canned.content_type
    for header, value in canned.headers.items():
        assert r.headers[header] == value
    assert "x-zendesk-request-id" in r.headers
    if canned.content_type.startswith("application/json"):
        assert r.json() == canned.body


def test_enqueue_is_fifo_and_bypasses_checks(
    fake_zendesk: FakeZendesk,
) -> None:
    fake_zendesk.enqueue(
        CannedResponse(503, {"n": 1}),
        CannedResponse(202, {"status": "received", "profile_id": "P", "user_id": "1"}),
    )
    with make_client(fake_zendesk.base_url) as c:  # no auth, no body
        first = c.post("/anything")
        second = c.post("/else")
        third = c.post(EVENTS, json=payload())
    assert (first.status_code, first.json()) == (503, {"n": 1})
    assert second.status_code == 202
    assert third.status_code == 401  # queue drained: back to normal
    assert [r.status for r in fake_zendesk.received] == [503, 202, 401]
    assert [r.path for r in fake_zendesk.accepted] == ["/else"]


def test_canned_body_kinds(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    fake_zendesk.enqueue(
        CannedResponse(200, "hello", content_type="text/plain"),
        CannedResponse(200, b"\x00\x01", content_type="application/octet-stream"),
        CannedResponse(204),
        CannedResponse(200, [1, 2], headers={"X-Rate-Limit": "9", "X-Extra": "e"}),
    )
    text = client.post(EVENTS, json={})
    assert (text.text, text.headers["content-type"]) == ("hello", "text/plain")
    assert client.post(EVENTS, json={}).content == b"\x00\x01"
    empty = client.post(EVENTS, json={})
    assert empty.status_code == 204
    assert empty.content == b""
    listed = client.post(EVENTS, json={})
    assert listed.json() == [1, 2]
    assert listed.headers["x-rate-limit"] == "9"
    assert listed.headers["x-extra"] == "e"


def test_set_default_and_reset(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    fake_zendesk.set_default(ERROR_BODIES["plain_text_500"])
    fake_zendesk.enqueue(CannedResponse(409))
    assert client.post(EVENTS, json=payload()).status_code == 409  # queue first
    assert [client.post(EVENTS, json=payload()).status_code for _ in range(3)] == [500] * 3
    fake_zendesk.set_default(None)
    assert client.post(EVENTS, json=payload()).status_code == 202
    assert len(fake_zendesk.received) == 5

    fake_zendesk.set_default(CannedResponse(503))
    fake_zendesk.enqueue(CannedResponse(500))
    fake_zendesk.reset()
    assert fake_zendesk.received == []
    assert fake_zendesk.accepted == []
    assert client.post(EVENTS, json=payload()).status_code == 202


def test_wait_for(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    assert fake_zendesk.wait_for(0, timeout=0.01)
    assert not fake_zendesk.wait_for(1, timeout=0.05)

    def later() -> None:
        time.sleep(0.1)
        client.post(EVENTS, json={"event": {}})  # 400: does not count
        client.post(EVENTS, json=payload())

    t = threading.Thread(target=later)
    t.start()
    try:
        assert fake_zendesk.wait_for(1, timeout=5)
        assert len(fake_zendesk.accepted) == 1
        assert len(fake_zendesk.received) == 2
    finally:
        t.join()


# -- rate limit --------------------------------------------------------------------------------


def test_rate_limit_429_then_next_window() -> None:
    with (
        # a 5 s window: the four calls below must land in one window even on a starved machine
        FakeZendesk(rate_limit=2, rate_window=5.0) as fake,
        make_client(fake.base_url, headers={"Authorization": TOKEN_AUTH}) as c,
    ):
        first = c.post(EVENTS, json=payload())
        # per-minute equivalents, as Zendesk counts: 2 per 5 s window is 24 per minute
        assert first.headers["x-rate-limit"] == "24"
        assert first.headers["x-rate-limit-remaining"] == "12"
        bad = c.post(EVENTS, json={"event": {}})  # refused bodies are not counted
        assert bad.status_code == 400
        second = c.post(EVENTS, json=payload())
        assert second.status_code == 202
        assert second.headers["x-rate-limit-remaining"] == "0"

        third = c.post(EVENTS, json=payload())
        assert third.status_code == 429
        assert third.json() == {"error": [{"code": "TooManyRequests", "title": "Too Many Requests"}]}
        assert 1 <= int(third.headers["retry-after"]) <= 5  # whole seconds to the window's end
        assert third.headers["x-rate-limit-remaining"] == "0"
        assert fake.throttled == 1
        assert c.post(EVENTS, json=payload()).status_code == 429
        assert fake.throttled == 2
        assert len(fake.accepted) == 2

        # Windows are aligned to start(): the next one begins at most 5 s later.
        deadline = time.monotonic() + 8
        while (r := c.post(EVENTS, json=payload())).status_code == 429:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 202
        assert len(fake.accepted) == 3


def test_rate_limit_retry_after_override_and_canned_bypass() -> None:
    with (
        FakeZendesk(rate_limit=1, rate_window=60.0, retry_after=42) as fake,
        make_client(fake.base_url, headers={"Authorization": TOKEN_AUTH}) as c,
    ):
        assert c.post(EVENTS, json=payload()).status_code == 202
        r = c.post(EVENTS, json=payload())
        assert r.status_code == 429
        assert r.headers["retry-after"] == "42"
        fake.enqueue(CannedResponse(202, {"status": "received"}))
        assert c.post(EVENTS, json=payload()).status_code == 202
        assert fake.throttled == 1


def test_rate_limit_retry_after_counts_down() -> None:
    with (
        FakeZendesk(rate_limit=0, rate_window=60.0) as fake,
        make_client(fake.base_url, headers={"Authorization": TOKEN_AUTH}) as c,
    ):
        r = c.post(EVENTS, json=payload())
        assert r.status_code == 429
        assert 59 <= int(r.headers["retry-after"]) <= 60


# -- delays, stop, restart ---------------------------------------------------------------------


def test_delayed_response(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    fake_zendesk.enqueue(CannedResponse(202, {"status": "received"}, delay=0.3))
    start = time.monotonic()
    r = client.post(EVENTS, json=payload())
    assert r.status_code == 202
    assert time.monotonic() - start >= 0.3


def test_delay_causes_read_timeout_and_stop_does_not_hang() -> None:
    fake = FakeZendesk()
    fake.start()
    try:
        fake.set_default(CannedResponse(202, delay=30))
        with (
            make_client(fake.base_url, timeout=httpx.Timeout(5.0, read=0.2)) as c,
            pytest.raises(httpx.ReadTimeout),
        ):
            c.post(EVENTS, json=payload())
        assert len(fake.received) == 1
        assert fake.received[0].status is None
    finally:
        start = time.monotonic()
        fake.stop()
        assert time.monotonic() - start < 2


def test_a_client_gone_before_a_delayed_answer_is_not_answered(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(CannedResponse(202, {"status": "received"}, delay=2.0))
    started = time.monotonic()
    with (
        make_client(fake_zendesk.base_url, timeout=httpx.Timeout(5.0, read=0.2)) as c,
        pytest.raises(httpx.ReadTimeout),
    ):
        c.post(EVENTS, json=payload())
    gone_after = time.monotonic() - started
    deadline = time.monotonic() + 5
    while not fake_zendesk.received and time.monotonic() < deadline:
        time.sleep(0.05)
    if not fake_zendesk.received:  # starved: the client hung up before the fake read the request
        assert fake_zendesk.accepted == []
        return
    [record] = fake_zendesk.received
    # until the delay has run out and the handler looked (returns at once if it answered)
    fake_zendesk.wait_for(1, timeout=max(0.0, record.received_at + 4.0 - time.monotonic()))
    if gone_after < 1.5:  # the client hung up well before the delay ran out (not on a starved machine)
        assert record.status is None and record.answered_at is None
        assert fake_zendesk.accepted == []


def test_stop_drops_keepalive_connections_and_restart_keeps_port() -> None:
    fake = FakeZendesk()
    fake.start()
    try:
        url = fake.base_url
        with make_client(url, headers={"Authorization": TOKEN_AUTH}, timeout=2) as c:
            assert c.post(EVENTS, json=payload()).status_code == 202
            fake.stop()
            assert not fake.running
            with pytest.raises(httpx.TransportError):
                c.post(EVENTS, json=payload())
            fake.start()
            assert fake.base_url == url
            assert c.post(EVENTS, json=payload()).status_code == 202
    finally:
        fake.stop()
    assert len(fake.accepted) == 2


def test_base_url_before_start() -> None:
    with pytest.raises(RuntimeError):
        _ = FakeZendesk().base_url


def test_fixture_is_running(fake_zendesk: FakeZendesk) -> None:
    assert fake_zendesk.running
    assert fake_zendesk.base_url.startswith("http://127.0.0.1:")
    assert copy.copy(fake_zendesk.received) == []
