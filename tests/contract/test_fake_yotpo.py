"""Tests of the fake Yotpo server itself, over real HTTP with httpx."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.yotpo import ERROR_BODIES, CannedResponse, FakeYotpo

STORE = "store-123"
SECRET = "test-yotpo-secret"
TOKENS = f"/core/v3/stores/{STORE}/access_tokens"
EVENTS = f"/core/v3/stores/{STORE}/custom_events"
ACCESS_DENIED = {
    "status": {
        "message": "You are not authorized to access this page.",
        "code": 401,
        "error_type": "Exceptions::AccessDenied",
    }
}


def make_client(base_url: str, **kwargs: Any) -> httpx.Client:
    """A client for the plain-http fake; verify=False skips building a TLS context."""
    return httpx.Client(base_url=base_url, verify=False, timeout=5.0, **kwargs)


def payload(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "order_shipped",
        "source": "adobe_experience_platform",
        "timestamp": "2024-05-01T12:00:00Z",
        "id": "0b6f1c3e-5d7a-4c1e-9f1e-2b7f1d2c3a4b",
        "customer": {
            "external_id": "cust-42",
            "email": "ada@example.com",
            "properties": {"tier": "gold", "vip": True, "visits": 3},
        },
        "properties": {"order_id": "A-1", "total": 12.5, "shipped_on": "2024-05-01T12:00:00Z"},
    }
    body.update(overrides)
    return body


def get_token(client: httpx.Client) -> str:
    r = client.post(TOKENS, json={"secret": SECRET})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert isinstance(token, str) and token
    return token


@pytest.fixture
def client(fake_yotpo: FakeYotpo) -> Iterator[httpx.Client]:
    with make_client(fake_yotpo.base_url) as c:
        c.headers["X-Yotpo-Token"] = get_token(c)
        yield c


# -- tokens ------------------------------------------------------------------------------------


def test_token_flow(fake_yotpo: FakeYotpo) -> None:
    with make_client(fake_yotpo.base_url) as c:
        first, second = get_token(c), get_token(c)
        assert first != second
        assert fake_yotpo.token_requests == 2
        assert fake_yotpo.tokens == {first, second}
        for token in (first, second):
            r = c.post(EVENTS, json=payload(), headers={"X-Yotpo-Token": token})
            assert r.status_code == 200, r.text
    (tok_rec, _, ev1, ev2) = fake_yotpo.received
    assert tok_rec.auth == "secret" and tok_rec.body == {"secret": SECRET}
    assert ev1.auth == ev2.auth == "token"
    assert fake_yotpo.accepted == [ev1, ev2]  # token calls are not "accepted" events


@pytest.mark.parametrize("body", [{"secret": "wrong"}, {}, {"secret": None}, None])
def test_bad_secret_is_401(fake_yotpo: FakeYotpo, body: dict[str, Any] | None) -> None:
    with make_client(fake_yotpo.base_url) as c:
        r = c.post(TOKENS, json=body) if body is not None else c.post(TOKENS)
    assert r.status_code == 401
    assert r.json() == ACCESS_DENIED
    assert "ratelimit-limit" not in r.headers
    assert fake_yotpo.token_requests == 1
    assert fake_yotpo.tokens == frozenset()


def test_wrong_store_is_404(fake_yotpo: FakeYotpo, client: httpx.Client) -> None:
    expected = {
        "status": {
            "message": "Couldn't find Account with app_key = other-store",
            "code": 404,
            "error_type": "Exceptions::RecordNotFound",
        }
    }
    r = client.post("/core/v3/stores/other-store/access_tokens", json={"secret": SECRET})
    assert (r.status_code, r.json()) == (404, expected)
    r = client.post("/core/v3/stores/other-store/custom_events", json=payload())
    assert (r.status_code, r.json()) == (404, expected)
    assert fake_yotpo.events == {}


def test_custom_store_and_secret() -> None:
    with FakeYotpo("acme", "s3cret") as fake, make_client(fake.base_url) as c:
        assert fake.events_path == "/core/v3/stores/acme/custom_events"
        assert c.post(fake.token_path, json={"secret": SECRET}).status_code == 401
        r = c.post(fake.token_path, json={"secret": "s3cret"})
        assert r.status_code == 200
        token = r.json()["access_token"]
        r = c.post(fake.events_path, json=payload(), headers={"X-Yotpo-Token": token})
        assert r.status_code == 200


# -- events ------------------------------------------------------------------------------------


def test_event_accepted(fake_yotpo: FakeYotpo, client: httpx.Client) -> None:
    body = payload()
    r = client.post(EVENTS, json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"event": {"id": body["id"], "type": "order_shipped"}}
    assert r.headers["ratelimit-limit"] == "1000"
    assert r.headers["ratelimit-remaining"] == "999"
    assert fake_yotpo.events == {body["id"]: body}
    assert fake_yotpo.updates == 0
    (rec,) = fake_yotpo.accepted
    assert rec.method == "POST" and rec.path == EVENTS and rec.body == body and rec.status == 200
    assert rec.headers["x-yotpo-token"] == client.headers["X-Yotpo-Token"]


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
def test_event_without_valid_token_is_401(fake_yotpo: FakeYotpo, token: str | None) -> None:
    headers = {"X-Yotpo-Token": token} if token is not None else {}
    with make_client(fake_yotpo.base_url) as c:
        r = c.post(EVENTS, json=payload(), headers=headers)
    assert r.status_code == 401
    assert r.json() == ACCESS_DENIED
    assert "ratelimit-remaining" in r.headers
    assert fake_yotpo.events == {} and fake_yotpo.accepted == []


def test_expired_token_is_401_and_a_new_one_works(fake_yotpo: FakeYotpo, client: httpx.Client) -> None:
    assert client.post(EVENTS, json=payload()).status_code == 200
    fake_yotpo.expire_tokens()
    r = client.post(EVENTS, json=payload())
    assert (r.status_code, r.json()) == (401, ACCESS_DENIED)
    client.headers["X-Yotpo-Token"] = get_token(client)
    assert client.post(EVENTS, json=payload()).status_code == 200
    assert fake_yotpo.token_requests == 2


def test_issue_token_helper(fake_yotpo: FakeYotpo) -> None:
    token = fake_yotpo.issue_token()
    with make_client(fake_yotpo.base_url, headers={"X-Yotpo-Token": token}) as c:
        assert c.post(EVENTS, json=payload()).status_code == 200
    assert fake_yotpo.token_requests == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_content_type_required(client: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(EVENTS, content=json.dumps(payload()).encode(), headers=headers)
    assert r.status_code == 400
    assert "Content-Type" in r.json()["errors"][0]["message"]


def test_content_type_with_charset_and_chunked_body(client: httpx.Client) -> None:
    data = json.dumps(payload()).encode()
    r = client.post(
        EVENTS,
        content=iter([data[:10], data[10:]]),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("raw", [b"", b"{not json"])
def test_invalid_json_is_400(client: httpx.Client, raw: bytes) -> None:
    r = client.post(EVENTS, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"].startswith("Bad request")


@pytest.mark.parametrize(
    ("method", "path"), [("GET", EVENTS), ("PATCH", EVENTS), ("POST", "/core/v3/stores/store-123/nowhere")]
)
def test_unknown_route_is_404(client: httpx.Client, method: str, path: str) -> None:
    r = client.request(method, path, json=payload())
    assert (r.status_code, r.content) == (404, b"")  # no body documented for it


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = key.split(".")
        for part in parents:
            body = body[part]
        del body[last]

    return edit


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = key.split(".")
        for part in parents:
            body = body[part]
        body[last] = value

    return edit


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("type_missing", _delete("type"), "type"),
    ("type_not_string", _set("type", 3), "type"),
    ("type_empty", _set("type", ""), "type"),
    ("type_too_long", _set("type", "a" * 256), "type"),
    ("source_null", _set("source", None), "source"),
    ("source_too_long", _set("source", "b" * 256), "source"),
    ("source_empty", _set("source", ""), "source"),
    ("timestamp_missing", _delete("timestamp"), "timestamp"),
    ("timestamp_garbage", _set("timestamp", "yesterday"), "timestamp"),
    ("timestamp_number", _set("timestamp", 1714564800), "timestamp"),
    # RFC 3339 date-times only: none of these other ISO 8601 forms
    ("timestamp_date_only", _set("timestamp", "2024-05-01"), "timestamp"),
    ("timestamp_week_date", _set("timestamp", "2024-W18-3"), "timestamp"),
    ("timestamp_no_offset", _set("timestamp", "2024-05-01T12:00:00"), "timestamp"),
    ("timestamp_basic_format", _set("timestamp", "20240501T120000Z"), "timestamp"),
    ("timestamp_no_seconds", _set("timestamp", "2024-05-01T12:00Z"), "timestamp"),
    ("timestamp_short_offset", _set("timestamp", "2024-05-01T12:00:00+02"), "timestamp"),
    ("timestamp_space", _set("timestamp", "2024-05-01 12:00:00Z"), "timestamp"),
    ("timestamp_30_february", _set("timestamp", "2024-02-30T12:00:00Z"), "timestamp"),
    ("timestamp_29_february_2023", _set("timestamp", "2023-02-29T12:00:00Z"), "timestamp"),
    ("timestamp_month_13", _set("timestamp", "2024-13-01T12:00:00Z"), "timestamp"),
    ("timestamp_hour_24", _set("timestamp", "2024-05-01T24:00:00Z"), "timestamp"),
    ("timestamp_second_61", _set("timestamp", "2024-05-01T12:00:61Z"), "timestamp"),
    ("timestamp_offset_24", _set("timestamp", "2024-05-01T12:00:00+24:00"), "timestamp"),
    ("timestamp_other_digits", _set("timestamp", "٢٠٢٤-05-01T12:00:00Z"), "timestamp"),
    ("id_missing", _delete("id"), "id"),
    ("id_empty", _set("id", ""), "id"),
    ("id_number", _set("id", 7), "id"),
    ("customer_missing", _delete("customer"), "customer"),
    ("customer_not_object", _set("customer", "cust-42"), "customer"),
    ("customer_no_identifier", _set("customer", {"properties": {}}), "customer"),
    ("external_id_not_string", _set("customer.external_id", 42), "customer.external_id"),
    ("email_not_string", _set("customer.email", 42), "customer.email"),
    ("phone_not_e164", _set("customer.phone_number", "0612345678"), "customer.phone_number"),
    ("phone_too_short", _set("customer.phone_number", "+12345"), "customer.phone_number"),
    ("phone_newline", _set("customer.phone_number", "+4915112345678\n"), "customer.phone_number"),
    ("phone_other_digits", _set("customer.phone_number", "+4" + "\u0665" * 12), "customer.phone_number"),
    ("customer_properties_not_object", _set("customer.properties", []), "customer.properties"),
    ("customer_property_null", _set("customer.properties.tier", None), "customer.properties.tier"),
    ("customer_property_object", _set("customer.properties.tier", {"a": 1}), "customer.properties.tier"),
    (
        "customer_property_key_space",
        _set("customer.properties", {"loyalty tier": "gold"}),
        "customer.properties.loyalty tier",
    ),
    ("properties_not_object", _set("properties", "x"), "properties"),
    ("property_array", _set("properties.total", [1, 2]), "properties.total"),
]


@pytest.mark.parametrize(("edit", "field"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_body_rule_refused(
    fake_yotpo: FakeYotpo, client: httpx.Client, edit: Callable[[dict[str, Any]], None], field: str
) -> None:
    body = copy.deepcopy(payload())
    edit(body)
    r = client.post(EVENTS, json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert [e["field"] for e in errors] == [field], errors
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    assert fake_yotpo.events == {} and fake_yotpo.accepted == []


def test_all_broken_rules_are_reported(client: httpx.Client) -> None:
    r = client.post(
        EVENTS,
        json={
            "type": "",
            "customer": {"email": "a@b.c", "phone_number": "+15551234567"},
            "properties": {"x": [1]},
        },
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["type", "timestamp", "id", "customer", "properties.x"]


# What Yotpo's page only recommends (snake_case names), states for customer properties only
# (no null, no spaces in keys) or does not state at all (an e-mail format) is accepted.
ACCEPTED: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("type_camel", _set("type", "OrderShipped")),
    ("type_dash", _set("type", "order-shipped")),
    ("type_double_underscore", _set("type", "order__shipped")),
    ("source_not_snake", _set("source", "Adobe AEP")),
    ("property_null", _set("properties.total", None)),
    ("property_key_space", _set("properties", {"order id": "A-1"})),
    # the reference states no format for the address: any string
    ("email_any_string", _set("customer.email", "not-an-email")),
    ("email_with_spaces", _set("customer.email", "Jane Smith <jane@example.com>")),
]


@pytest.mark.parametrize("edit", [a[1] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_what_yotpo_is_not_said_to_refuse_is_accepted(
    fake_yotpo: FakeYotpo, client: httpx.Client, edit: Callable[[dict[str, Any]], None]
) -> None:
    body = copy.deepcopy(payload())
    edit(body)
    r = client.post(EVENTS, json=body)
    assert r.status_code == 200, r.text
    assert fake_yotpo.events == {body["id"]: body}


@pytest.mark.parametrize("raw", [b"[]", b'"event"', b"null", b"1"])
def test_non_object_body_refused(client: httpx.Client, raw: bytes) -> None:
    r = client.post(EVENTS, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json() == {"errors": [{"field": "body", "message": "must be a JSON object"}]}


def test_both_email_and_phone_refused_without_external_id(client: httpx.Client) -> None:
    body = payload(customer={"email": "ada@example.com", "phone_number": "+4915112345678"})
    r = client.post(EVENTS, json=body)
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["field"] == "customer" and "not both" in error["message"]


@pytest.mark.parametrize(
    "customer",
    [
        {"external_id": "cust-42"},
        {"email": "ada@example.com"},
        {"phone_number": "+4915112345678"},
        {"external_id": "cust-42", "email": "ada@example.com", "phone_number": "+15551234567"},
    ],
)
def test_customer_identifiers_accepted(client: httpx.Client, customer: dict[str, Any]) -> None:
    assert client.post(EVENTS, json=payload(customer=customer)).status_code == 200


def test_valid_edge_values_accepted(client: httpx.Client) -> None:
    body = payload(type="a" * 255, source="x1_2", timestamp="2024-05-01T12:00:00.123+02:00")
    body["properties"] = {"s": "", "b": False, "i": -1, "f": 0.5}
    del body["source"]
    assert client.post(EVENTS, json=body).status_code == 200
    minimal = {"type": "x", "timestamp": "2024-05-01T12:00:00Z", "id": "e3", "customer": {"external_id": "c"}}
    assert client.post(EVENTS, json=minimal).status_code == 200


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01t12:00:00z",  # RFC 3339 allows the lower-case letters
        "2024-05-01T07:00:00-05:00",
        "2024-05-01T12:00:00.123456789+13:45",
        "2024-02-29T00:00:00Z",
        "2000-02-29T00:00:00Z",
        "2016-12-31T23:59:60Z",  # a leap second
        "0001-01-01T00:00:00+00:00",
    ],
)
def test_rfc3339_timestamps_accepted(client: httpx.Client, timestamp: str) -> None:
    r = client.post(EVENTS, json=payload(timestamp=timestamp))
    assert r.status_code == 200, r.text


def test_same_id_updates(fake_yotpo: FakeYotpo, client: httpx.Client) -> None:
    first = payload(properties={"status": "packed"})
    second = payload(properties={"status": "shipped"})
    other = payload(id="another-id")
    for body in (first, second, other):
        assert client.post(EVENTS, json=body).status_code == 200
    assert fake_yotpo.updates == 1
    assert fake_yotpo.events == {first["id"]: second, "another-id": other}
    assert len(fake_yotpo.accepted) == 3


# -- scripting ---------------------------------------------------------------------------------


def test_enqueue_is_fifo_and_bypasses_checks(fake_yotpo: FakeYotpo) -> None:
    fake_yotpo.enqueue(
        ERROR_BODIES["server_error_500"], CannedResponse(200, {"event": {"id": "x", "type": "y"}})
    )
    with make_client(fake_yotpo.base_url) as c:
        token = get_token(c)  # token calls do not consume the event script
        r1 = c.post(EVENTS, json={})  # no token, bad body: scripted anyway
        r2 = c.post(EVENTS, content=b"nope")
        r3 = c.post(EVENTS, json=payload(), headers={"X-Yotpo-Token": token})
        r4 = c.post(EVENTS, json=payload())
    assert (r1.status_code, r1.content) == (500, b"")
    assert r1.headers["ratelimit-limit"] == "1000"  # every events response carries the headers
    assert r2.status_code == 200 and r2.json() == {"event": {"id": "x", "type": "y"}}
    assert r3.status_code == 200
    assert r4.status_code == 401
    assert len(fake_yotpo.accepted) == 2
    assert list(fake_yotpo.events) == [payload()["id"]]  # scripted answers store nothing


def test_enqueue_token(fake_yotpo: FakeYotpo) -> None:
    fake_yotpo.enqueue_token(ERROR_BODIES["server_error_500"])
    with make_client(fake_yotpo.base_url) as c:
        r = c.post(TOKENS, json={"secret": SECRET})
        assert r.status_code == 500
        assert "ratelimit-limit" not in r.headers
        get_token(c)
    assert fake_yotpo.token_requests == 2
    assert len(fake_yotpo.tokens) == 1


def test_set_default_and_reset(fake_yotpo: FakeYotpo, client: httpx.Client) -> None:
    assert client.post(EVENTS, json=payload()).status_code == 200
    fake_yotpo.set_default(ERROR_BODIES["server_error_500"])
    fake_yotpo.enqueue(ERROR_BODIES["errors_array_400"])
    assert client.post(EVENTS, json=payload()).status_code == 400
    for _ in range(2):
        r = client.post(EVENTS, json=payload())
        assert r.status_code == 500 and r.content == b""
    assert client.post(TOKENS, json={"secret": SECRET}).status_code == 200  # token calls unaffected
    fake_yotpo.set_default(None)
    assert client.post(EVENTS, json=payload()).status_code == 200
    fake_yotpo.set_default(ERROR_BODIES["server_error_500"])
    fake_yotpo.reset()
    assert fake_yotpo.received == [] and fake_yotpo.events == {}
    assert (fake_yotpo.token_requests, fake_yotpo.updates, fake_yotpo.throttled) == (0, 0, 0)
    assert client.post(EVENTS, json=payload()).status_code == 200  # tokens survive reset


def test_wait_for(fake_yotpo: FakeYotpo, client: httpx.Client) -> None:
    assert fake_yotpo.wait_for(1, timeout=0.05) is False
    token = client.headers["X-Yotpo-Token"]

    def later() -> None:
        time.sleep(0.05)
        with make_client(fake_yotpo.base_url, headers={"X-Yotpo-Token": token}) as c:
            c.post(EVENTS, json=payload())

    t = threading.Thread(target=later)
    t.start()
    assert fake_yotpo.wait_for(1, timeout=5) is True
    t.join()


def test_error_bodies_catalogue() -> None:
    assert set(ERROR_BODIES) == {
        "access_denied_401",
        "record_not_found_404",
        "invalid_client_401",
        "validation_422",
        "too_many_requests_429",
        "server_error_500",
        "errors_array_400",
    }
    answers = [(c.status, c.encode()) for c in ERROR_BODIES.values()]
    assert len(set(answers)) == len(answers)
    for name, canned in ERROR_BODIES.items():
        assert name.endswith(str(canned.status))
    assert ERROR_BODIES["invalid_client_401"].body == {"error": "invalid_client"}
    assert ERROR_BODIES["access_denied_401"].body == ACCESS_DENIED
    # Yotpo documents no body for these: the fake invents none
    assert ERROR_BODIES["too_many_requests_429"].body is None
    assert ERROR_BODIES["server_error_500"].body is None
    for canned in ERROR_BODIES.values():  # only the shapes of reference section 2.5
        body = canned.body
        assert body is None or (isinstance(body, dict) and set(body) in ({"status"}, {"error"}, {"errors"}))


@pytest.mark.parametrize("name", sorted(ERROR_BODIES))
def test_error_bodies_served(fake_yotpo: FakeYotpo, client: httpx.Client, name: str) -> None:
    canned = ERROR_BODIES[name]
    fake_yotpo.enqueue(canned)
    r = client.post(EVENTS, json=payload())
    assert r.status_code == canned.status
    assert r.content == canned.encode()
    if canned.body is not None:
        assert r.headers["content-type"] == canned.content_type
    for header, value in canned.headers.items():
        assert r.headers[header] == value
    if name == "too_many_requests_429":
        assert (r.headers["ratelimit-reset"], r.headers["ratelimit-remaining"]) == ("2", "0")


# -- rate limit --------------------------------------------------------------------------------


def test_rate_limit_429_with_reset() -> None:
    with FakeYotpo(rate_limit=2, rate_window=30.0) as fake, make_client(fake.base_url) as c:
        c.headers["X-Yotpo-Token"] = get_token(c)
        bad = c.post(EVENTS, json={})  # refused bodies do not count
        assert bad.status_code == 422 and bad.headers["ratelimit-remaining"] == "2"
        r1 = c.post(EVENTS, json=payload(id="1"))
        get_token(c)  # token calls do not count
        r2 = c.post(EVENTS, json=payload(id="2"))
        r3 = c.post(EVENTS, json=payload(id="3"))
        assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 429]
        assert [r.headers["ratelimit-remaining"] for r in (r1, r2, r3)] == ["1", "0", "0"]
        assert r3.headers["ratelimit-limit"] == "2"
        assert 1 <= int(r3.headers["ratelimit-reset"]) <= 30
        assert r3.content == b""  # Yotpo documents the status and headers of a 429, no body
        assert fake.throttled == 1
        assert set(fake.events) == {"1", "2"}


def test_rate_limit_next_window_accepts_again() -> None:
    with FakeYotpo(rate_limit=1, rate_window=0.2) as fake, make_client(fake.base_url) as c:
        c.headers["X-Yotpo-Token"] = get_token(c)
        for n in range(20):  # two calls in one 0.2 s window: the second is throttled
            r = c.post(EVENTS, json=payload(id=str(n)))
            if r.status_code == 429:
                break
        assert r.status_code == 429
        assert r.headers["ratelimit-reset"] == "1"  # under 0.2 s left, rounded up
        time.sleep(0.25)
        assert c.post(EVENTS, json=payload(id="next")).status_code == 200
        assert fake.throttled == 1


# -- lifecycle ---------------------------------------------------------------------------------


def test_stop_does_not_hang_and_restart_keeps_port_and_tokens() -> None:
    fake = FakeYotpo()
    fake.start()
    try:
        port = fake.port
        with make_client(fake.base_url) as c:
            c.headers["X-Yotpo-Token"] = get_token(c)
            assert c.post(EVENTS, json=payload()).status_code == 200  # keep-alive connection open
            fake.enqueue(CannedResponse(200, {}, delay=30))
            errors: list[Exception] = []

            def slow_call() -> None:
                with make_client(fake.base_url, headers=c.headers) as other:
                    try:
                        other.post(EVENTS, json=payload())
                    except httpx.HTTPError as exc:
                        errors.append(exc)

            t = threading.Thread(target=slow_call)
            t.start()
            time.sleep(0.1)
            start = time.monotonic()
            fake.stop()
            assert time.monotonic() - start < 2
            t.join(timeout=5)
            assert not t.is_alive() and len(errors) == 1  # hung up without an answer
            assert not fake.running
            with pytest.raises(httpx.ConnectError):
                c.post(EVENTS, json=payload())
            fake.start()
            assert fake.port == port
            assert c.post(EVENTS, json=payload()).status_code == 200
    finally:
        fake.stop()


def test_base_url_before_start() -> None:
    with pytest.raises(RuntimeError):
        _ = FakeYotpo().base_url


def test_fixture_is_running(fake_yotpo: FakeYotpo) -> None:
    assert fake_yotpo.running
    assert fake_yotpo.base_url.startswith("http://127.0.0.1:")
