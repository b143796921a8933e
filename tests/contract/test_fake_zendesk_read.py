"""Tests of the fake Zendesk's stored events, read, profile and delete endpoints and fault modes,
over real HTTP with httpx."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.contract.test_fake_zendesk import DOCUMENTED_CODES, codes_in
from tests.fakes.rfc3339 import instant, is_rfc3339_date_time
from tests.fakes.zendesk import ERROR_BODIES, FakeZendesk

EVENTS = "/api/v2/user_profiles/events"
TOKEN_AUTH = "Basic " + base64.b64encode(b"agent@example.com/token:test-api-token").decode()
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
IDENTIFIER = "adobe:customer:email:ada@example.com"


def make_client(base_url: str, **kwargs: Any) -> httpx.Client:
    kwargs.setdefault("headers", {"Authorization": TOKEN_AUTH})
    kwargs.setdefault("timeout", 5.0)
    return httpx.Client(base_url=base_url, verify=False, **kwargs)


@pytest.fixture
def client(fake_zendesk: FakeZendesk) -> Iterator[httpx.Client]:
    with make_client(fake_zendesk.base_url) as c:
        yield c


def post(
    client: httpx.Client,
    *,
    event_type: str = "order_placed",
    created_at: str | None = "2024-05-01T12:00:00Z",
    properties: dict[str, Any] | None = None,
    description: str | None = None,
    email: str = "ada@example.com",
    path: str = EVENTS,
    **profile: Any,
) -> dict[str, Any]:
    """POST one event (202 expected); the answer."""
    event: dict[str, Any] = {
        "source": "adobe",
        "type": event_type,
        "properties": properties if properties is not None else {"order_id": "A-1"},
    }
    if created_at is not None:
        event["created_at"] = created_at
    if description is not None:
        event["description"] = description
    body: dict[str, Any] = {"event": event}
    if "/user_profiles/" not in path or path == EVENTS:
        body["profile"] = {
            "source": "adobe",
            "type": "customer",
            "identifiers": [{"type": "email", "value": email}],
            **profile,
        }
    r = client.post(path, json=body)
    assert r.status_code == 202, r.text
    answer: dict[str, Any] = r.json()
    return answer


def by_identifier(identifier: str = IDENTIFIER, **params: str) -> str:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"{EVENTS}?identifier={quote(identifier, safe='')}" + (f"&{query}" if query else "")


# -- storing -----------------------------------------------------------------------------------


def test_each_create_endpoint_stores_the_event(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    first = post(client, description="bought", created_at=None)
    post(client, path=f"/api/v2/user_profiles/{first['profile_id']}/events", event_type="viewed")
    by_user = post(client, path="/api/v2/users/42/events", event_type="called", email="bob@example.com")

    stored = fake_zendesk.stored_events
    assert [e.event["type"] for e in stored] == ["order_placed", "viewed", "called"]
    assert [e.profile_id for e in stored] == [first["profile_id"], first["profile_id"], by_user["profile_id"]]
    assert [e.user_id for e in stored] == [first["user_id"], first["user_id"], "42"]
    assert len({e.id for e in stored}) == 3
    one = stored[0].event
    assert set(one) == {"id", "source", "type", "properties", "description", "created_at", "received_at"}
    assert one["description"] == "bought"
    assert is_rfc3339_date_time(one["received_at"])
    assert one["created_at"] == one["received_at"]  # set by the server when absent
    assert stored[1].event["created_at"] == "2024-05-01T12:00:00Z"  # kept as posted


def test_read_only_fields_are_overwritten_and_refused_events_not_stored(
    fake_zendesk: FakeZendesk, client: httpx.Client
) -> None:
    r = client.post(
        EVENTS,
        json={
            "event": {"source": "adobe", "type": "t", "properties": {}, "id": "mine", "received_at": "x"},
            "profile": {
                "source": "adobe",
                "type": "customer",
                "identifiers": [{"type": "email", "value": "a@b.c"}],
            },
        },
    )
    assert r.status_code == 202
    [event] = fake_zendesk.stored_events
    assert event.id != "mine" and event.event["received_at"] != "x"
    assert client.post(EVENTS, json={"event": {}}).status_code == 400
    assert len(fake_zendesk.stored_events) == 1


# -- GET events --------------------------------------------------------------------------------


def test_get_events_by_identifier(client: httpx.Client) -> None:
    post(client, event_type="first", created_at="2024-05-01T12:00:00Z")
    post(client, event_type="second", created_at="2024-05-01T11:00:00Z", email="ADA@example.com")
    post(client, email="grace@example.com")

    r = client.get(by_identifier())
    assert r.status_code == 200
    assert r.headers["x-rate-limit"] == "700"
    body = r.json()
    assert set(body) == {"events", "links", "meta"}
    assert [e["type"] for e in body["events"]] == ["second", "first"]  # created_at order
    assert body["meta"]["has_more"] is False
    # matched as events' profiles are: e-mail in any case, google as email
    for other in ("adobe:customer:email:Ada@Example.COM", "adobe:customer:google:ada@example.com"):
        assert client.get(by_identifier(other)).json()["events"] == body["events"]


@pytest.mark.parametrize(
    "identifier",
    [
        "adobe:visitor:email:ada@example.com",
        "crm:customer:email:ada@example.com",
        "adobe:customer:email:x@y.z",
    ],
)
def test_get_events_by_unknown_identifier_is_404(client: httpx.Client, identifier: str) -> None:
    post(client)
    r = client.get(by_identifier(identifier))
    assert (r.status_code, r.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize(
    "query", ["", "?identifier=", "?identifier=adobe%3Acustomer%3Aemail", "?identifier=a%3A%3Ab%3Ac"]
)
def test_identifier_is_required_with_four_parts(client: httpx.Client, query: str) -> None:
    post(client)
    r = client.get(EVENTS + query)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "ClientError"


def test_identifier_value_may_hold_colons(client: httpx.Client) -> None:
    post(client, identifiers=[{"type": "external_id", "value": "urn:ecid:1"}])
    assert client.get(by_identifier("adobe:customer:external_id:urn:ecid:1")).json()["events"]


def test_get_events_of_profile_and_404(client: httpx.Client) -> None:
    created = post(client)
    post(client, email="grace@example.com")
    r = client.get(f"/api/v2/user_profiles/{created['profile_id']}/events")
    assert r.status_code == 200
    assert [e["properties"] for e in r.json()["events"]] == [{"order_id": "A-1"}]
    missing = client.get("/api/v2/user_profiles/01E1DPYAA7HW7645KMJEY9CXRJ/events")
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)


def test_get_events_of_user_includes_zendesk_standard_events(
    fake_zendesk: FakeZendesk, client: httpx.Client
) -> None:
    created = post(client, created_at="2024-05-01T12:00:00Z")
    user = created["user_id"]
    standard = fake_zendesk.add_zendesk_event(
        user, "ticket_requested", {"ticket_id": 7}, created_at="2024-05-01T11:00:00Z"
    )
    assert standard["source"] == "zendesk" and is_rfc3339_date_time(standard["received_at"])
    post(client, path=f"/api/v2/users/{user}/events", email="other@example.com", event_type="called",
         created_at="2024-05-01T14:00:00Z")  # fmt: skip

    events = client.get(f"/api/v2/users/{user}/events").json()["events"]
    assert [(e["source"], e["type"]) for e in events] == [
        ("zendesk", "ticket_requested"), ("adobe", "order_placed"), ("adobe", "called"),
    ]  # fmt: skip
    assert events == fake_zendesk.events_of_user(user)
    # a standard event is not on any profile
    assert [e["type"] for e in fake_zendesk.events_of(created["profile_id"])] == ["order_placed"]

    only = client.get(f"/api/v2/users/{user}/events", params={"filter[source]": "zendesk"}).json()
    assert [e["id"] for e in only["events"]] == [standard["id"]]

    fake_zendesk.add_zendesk_event("777")  # a user with only standard events is known
    assert client.get("/api/v2/users/777/events").status_code == 200
    assert client.get("/api/v2/users/778/events").json() == NOT_FOUND
    bad = client.get("/api/v2/users/abc/events")
    assert bad.status_code == 400
    assert bad.json()["error"]["title"] == "Invalid attribute"
    with pytest.raises(ValueError):
        fake_zendesk.add_zendesk_event("abc")


# -- filters -----------------------------------------------------------------------------------


def test_filters_on_source_and_type(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    created = post(client, event_type="a")
    post(client, event_type="b")
    fake_zendesk.add_zendesk_event(created["user_id"], "ticket_requested")
    path = f"/api/v2/users/{created['user_id']}/events"

    def types(**params: str) -> list[str]:
        r = client.get(path, params=params)
        assert r.status_code == 200, r.text
        return [e["type"] for e in r.json()["events"]]

    assert types() == ["a", "b", "ticket_requested"]
    assert types(**{"filter[source]": "adobe"}) == ["a", "b"]
    assert types(**{"filter[source]": "adobe", "filter[type]": "b"}) == ["b"]
    assert types(**{"filter[source]": "crm"}) == []
    assert types(**{"filter[source]": ""}) == ["a", "b", "ticket_requested"]  # blank: absent

    r = client.get(path, params={"filter[type]": "b"})  # needs filter[source]
    assert r.status_code == 400
    assert r.json()["errors"][0]["title"] == "filter[type]: needs filter[source]"


def test_time_filters_compare_instants_inclusively(client: httpx.Client) -> None:
    for n, created_at in enumerate(
        [
            "2024-05-01T10:00:00Z",
            "2024-05-01T12:00:00.500+02:00",
            "2024-05-01T11:00:00Z",
            "2024-05-01T09:59:59.999Z",
        ]
    ):
        post(client, event_type=f"e{n}", created_at=created_at)

    def types(**params: str) -> list[str]:
        r = client.get(by_identifier(**params))
        assert r.status_code == 200, r.text
        return [e["type"] for e in r.json()["events"]]

    assert types() == ["e3", "e0", "e1", "e2"]  # 10:00:00.500Z is e1
    assert types(**{"filter[start_time]": "2024-05-01T10:00:00Z"}) == ["e0", "e1", "e2"]
    assert types(**{"filter[end_time]": "2024-05-01T12:00:00.5+02:00"}) == ["e3", "e0", "e1"]
    assert types(
        **{"filter[start_time]": "2024-05-01T06:00:00.5-04:00", "filter[end_time]": "2024-05-01T10:30:00Z"}
    ) == ["e1"]
    assert types(**{"filter[start_time]": "2024-05-02T00:00:00Z"}) == []


@pytest.mark.parametrize(
    ("param", "code"),
    [("filter[start_time]", "StartTimestampNotValid"), ("filter[end_time]", "ClientError")],
)
@pytest.mark.parametrize("value", ["yesterday", "2024-05-01", "1714564800", "2024-05-01T10:00:00"])
def test_bad_time_filter_is_400(client: httpx.Client, param: str, code: str, value: str) -> None:
    post(client)
    r = client.get(by_identifier(**{param: value}))
    assert r.status_code == 400
    [error] = r.json()["errors"]
    assert error["code"] == code and error["title"].startswith(param)
    uuid.UUID(error["id"])


def test_instants_of_rfc3339_values() -> None:
    assert instant("2024-05-01T12:00:00Z") == instant("2024-05-01t14:00:00.000+02:00")
    assert instant("2024-05-01T12:00:00Z") == instant("2024-05-01T08:30:00-03:30")
    assert instant("2024-05-01T12:00:00.0001Z") > instant("2024-05-01T12:00:00Z")
    assert instant("2016-12-31T23:59:60Z") == instant("2017-01-01T00:00:00Z")
    assert instant("1970-01-01T00:00:01.5Z") == Decimal("1.5")
    with pytest.raises(ValueError):
        instant("2024-05-01T12:00:00")


# -- paging ------------------------------------------------------------------------------------


def test_cursor_pages_follow_links(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    for n in range(5):
        post(client, event_type=f"e{n}", created_at=f"2024-05-01T12:00:0{n}Z")
    url: str | None = by_identifier(**{"page[size]": "2", "filter[source]": "adobe"})
    pages = []
    while url is not None:
        body = client.get(url).json()
        pages.append(body)
        url = body["links"][0]["next"] if body["meta"]["has_more"] else None
    assert [[e["type"] for e in p["events"]] for p in pages] == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert [p["meta"]["has_more"] for p in pages] == [True, True, False]
    for page in pages:
        cursor = page["meta"]["after_cursor"]
        [link] = page["links"]
        assert link["next"].startswith(fake_zendesk.base_url + EVENTS + "?")
        assert f"page[after]={cursor}" in link["next"]
        assert "page[size]=2" in link["next"] and "filter[source]=adobe" in link["next"]
    # past the end: an empty page, no cursor, no links
    last = client.get(pages[-1]["links"][0]["next"]).json()
    assert last == {"events": [], "links": [], "meta": {"after_cursor": None, "has_more": False}}


def test_cursor_survives_changes_between_pages(client: httpx.Client) -> None:
    for n in range(4):
        post(client, event_type=f"e{n}", created_at=f"2024-05-01T12:00:0{n}Z")
    first = client.get(by_identifier(**{"page[size]": "2"})).json()
    post(client, event_type="early", created_at="2024-05-01T11:00:00Z")  # sorts before the cursor
    post(client, event_type="late", created_at="2024-05-01T13:00:00Z")
    second = client.get(first["links"][0]["next"]).json()
    assert [e["type"] for e in second["events"]] == ["e2", "e3"]
    assert second["meta"]["has_more"] is True


def test_default_and_largest_page_size(client: httpx.Client) -> None:
    for n in range(101):
        post(client, properties={"n": n})
    default = client.get(by_identifier()).json()
    assert len(default["events"]) == 100 and default["meta"]["has_more"] is True
    larger = client.get(by_identifier(**{"page[size]": "500"})).json()
    assert len(larger["events"]) == 100
    rest = client.get(default["links"][0]["next"]).json()
    assert [e["properties"] for e in rest["events"]] == [{"n": 100}]
    assert rest["meta"]["has_more"] is False


def test_page_size_setting() -> None:
    with FakeZendesk(page_size=1) as fake, make_client(fake.base_url) as c:
        post(c)
        post(c)
        body = c.get(by_identifier()).json()
        assert len(body["events"]) == 1 and body["meta"]["has_more"] is True


@pytest.mark.parametrize(
    ("param", "value"),
    [("page[size]", "0"), ("page[size]", "-1"), ("page[size]", "ten"), ("page[after]", "not-a-cursor!")],
)
def test_bad_paging_is_400(client: httpx.Client, param: str, value: str) -> None:
    post(client)
    r = client.get(by_identifier(**{param: value}))
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "ClientError"


# -- profiles ----------------------------------------------------------------------------------


def test_get_profile_by_identifier_and_id(client: httpx.Client) -> None:
    created = post(
        client,
        identifiers=[{"type": "email", "value": "Ada@Example.com"}, {"type": "external_id", "value": "c-1"}],
        attributes={"tier": "gold"},
    )
    r = client.get("/api/v2/user_profiles", params={"identifier": "adobe:customer:external_id:c-1"})
    assert r.status_code == 200
    profile = r.json()["profile"]
    assert set(profile) == {
        "id", "name", "source", "type", "identifiers", "attributes", "user_id", "created_at", "updated_at",
    }  # fmt: skip
    assert profile["id"] == created["profile_id"] and profile["user_id"] == created["user_id"]
    assert (profile["source"], profile["type"], profile["name"]) == ("adobe", "customer", "ada@example.com")
    assert profile["identifiers"] == [
        {"type": "email", "value": "ada@example.com"},
        {"type": "external_id", "value": "c-1"},
    ]
    assert profile["attributes"] == {"tier": "gold"}
    assert is_rfc3339_date_time(profile["created_at"]) and profile["updated_at"] == profile["created_at"]
    assert client.get(f"/api/v2/user_profiles/{created['profile_id']}").json() == {"profile": profile}

    time.sleep(0.002)  # the times are to the millisecond
    post(
        client, identifiers=[{"type": "external_id", "value": "c-1"}], name="Ada L.", attributes={"vip": True}
    )
    again = client.get(f"/api/v2/user_profiles/{created['profile_id']}").json()["profile"]
    assert again["name"] == "Ada L."
    assert again["attributes"] == {"tier": "gold", "vip": True}
    assert instant(again["updated_at"]) > instant(again["created_at"])


def test_profile_name_without_email() -> None:
    with FakeZendesk() as fake, make_client(fake.base_url) as c:
        post(c, identifiers=[{"type": "external_id", "value": "c-9"}])
        post(c, identifiers=[{"type": "phone_number", "value": "+15550100"}])
        names = [c.get(f"/api/v2/user_profiles/{p.id}").json()["profile"]["name"] for p in fake.profiles]
        assert names == ["User c-9", "User +15550100"]


def test_get_profile_404_and_400(client: httpx.Client) -> None:
    post(client)
    r = client.get("/api/v2/user_profiles", params={"identifier": "adobe:customer:email:nobody@example.com"})
    assert (r.status_code, r.json()) == (404, NOT_FOUND)
    assert client.get("/api/v2/user_profiles/01E1DPYAA7HW7645KMJEY9CXRJ").status_code == 404
    assert client.get("/api/v2/user_profiles").status_code == 400


def test_delete_profile(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    created = post(client)
    other = post(client, email="grace@example.com")
    fake_zendesk.add_zendesk_event(created["user_id"])
    profile_id = created["profile_id"]

    r = client.delete(f"/api/v2/user_profiles/{profile_id}")  # no body, no Content-Type
    assert (r.status_code, r.content) == (204, b"")
    assert [p.id for p in fake_zendesk.profiles] == [other["profile_id"]]
    assert fake_zendesk.events_of(profile_id) == []
    assert client.get(f"/api/v2/user_profiles/{profile_id}/events").status_code == 404
    assert client.get(by_identifier()).status_code == 404
    assert client.post(f"/api/v2/user_profiles/{profile_id}/events", json={"event": {}}).status_code == 404
    # the user stays, with its standard event
    left = client.get(f"/api/v2/users/{created['user_id']}/events").json()["events"]
    assert [e["source"] for e in left] == ["zendesk"]
    assert len(fake_zendesk.events_of(other["profile_id"])) == 1

    again = client.delete(f"/api/v2/user_profiles/{profile_id}")
    assert (again.status_code, again.json()) == (404, NOT_FOUND)
    deletes = [(r.method, r.status) for r in fake_zendesk.received if r.method == "DELETE"]
    assert deletes == [("DELETE", 204), ("DELETE", 404)]


def test_delete_with_a_body_needs_json_content_type(client: httpx.Client) -> None:
    created = post(client)
    path = f"/api/v2/user_profiles/{created['profile_id']}"
    r = client.request("DELETE", path, content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and "Content-Type" in r.text
    assert client.request("DELETE", path, json={}).status_code == 204


def test_get_needs_no_content_type(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    post(client)
    r = client.get(by_identifier(), headers={"Accept": "application/json"})
    assert r.status_code == 200
    rec = fake_zendesk.received[-1]
    assert (rec.method, rec.path, rec.status, rec.auth) == ("GET", EVENTS, 200, "api_token")
    assert "content-type" not in rec.headers
    assert "identifier=" in rec.query


# -- auth, rate limit, scripting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", EVENTS + "?identifier=" + quote(IDENTIFIER)),
        ("GET", "/api/v2/users/1/events"),
        ("GET", "/api/v2/user_profiles?identifier=" + quote(IDENTIFIER)),
        ("DELETE", "/api/v2/user_profiles/01E1DPYAA7HW7645KMJEY9CXRJ"),
    ],
)
def test_reads_and_deletes_need_auth(fake_zendesk: FakeZendesk, method: str, path: str) -> None:
    with make_client(fake_zendesk.base_url, headers={"Authorization": "Bearer nope"}) as c:
        r = c.request(method, path)
    assert (r.status_code, r.json()) == (401, {"error": "Couldn't authenticate you"})
    assert fake_zendesk.received[-1].method == method


def test_reads_and_deletes_count_in_the_rate_limit() -> None:
    # a 30 s window: the calls below land in one window even on a starved machine
    with FakeZendesk(rate_limit=3, rate_window=30.0) as fake, make_client(fake.base_url) as c:
        created = post(c)
        got = c.get(by_identifier())
        assert got.status_code == 200
        assert got.headers["x-rate-limit-remaining"] == str(round(1 * 60 / 30))
        assert c.get(by_identifier("adobe:customer:email:x@y.z")).status_code == 404  # not counted
        assert c.delete(f"/api/v2/user_profiles/{created['profile_id']}").status_code == 204
        limited = c.get("/api/v2/users/1/events")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        assert limited.headers["x-rate-limit-remaining"] == "0"
        assert c.delete(f"/api/v2/user_profiles/{created['profile_id']}").status_code == 429
        assert fake.throttled == 2


def test_enqueue_and_set_default_script_posts_only(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    post(client)
    fake_zendesk.enqueue(ERROR_BODIES["errors_array_400"])
    fake_zendesk.set_default(ERROR_BODIES["plain_text_503"])
    assert len(client.get(by_identifier()).json()["events"]) == 1  # a read takes neither
    assert client.post(EVENTS, json={}).status_code == 400  # the queue first
    assert client.post(EVENTS, json={}).status_code == 503  # then the default
    fake_zendesk.set_default(None)
    assert len(client.get(by_identifier()).json()["events"]) == 1


def test_every_read_error_is_a_documented_one(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    post(client)
    answers = []
    for method, path in [
        ("GET", EVENTS),
        ("GET", by_identifier("adobe:customer:email:nobody@example.com")),
        ("GET", by_identifier(**{"filter[start_time]": "x", "filter[end_time]": "y", "page[size]": "0"})),
        ("GET", by_identifier(**{"filter[type]": "t", "page[after]": "?"})),
        ("GET", "/api/v2/users/abc/events"),
        ("GET", "/api/v2/users/5/events"),
        ("GET", "/api/v2/user_profiles"),
        ("GET", "/api/v2/user_profiles/nope"),
        ("DELETE", "/api/v2/user_profiles/nope"),
    ]:
        r = client.request(method, path)
        assert r.status_code in (400, 404), (path, r.status_code)
        answers.append(r.json())
    found = set().union(*(codes_in(a) for a in answers))
    assert found <= DOCUMENTED_CODES, found - DOCUMENTED_CODES


# -- stored-event accessors --------------------------------------------------------------------


def test_duplicate_count_and_forget_events(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    ada = post(client, properties={"a": 1, "b": 2})
    post(client, properties={"b": 2, "a": 1})  # the same properties
    post(client, properties={"a": 1, "b": 2}, created_at="2024-05-01T14:00:00+02:00")  # the same instant
    post(client, properties={"a": 1, "b": 2}, created_at="2024-05-01T12:00:01Z")  # another time
    post(client, properties={"a": 1, "b": 3})
    post(client, properties={"a": 1, "b": 2}, event_type="other")
    grace = post(client, properties={"a": 1, "b": 2}, email="grace@example.com")  # another profile
    fake_zendesk.add_zendesk_event(ada["user_id"])
    fake_zendesk.add_zendesk_event(ada["user_id"])  # standard events are not counted

    assert fake_zendesk.duplicate_count() == 2
    assert fake_zendesk.duplicate_count(ada["profile_id"]) == 2
    assert fake_zendesk.duplicate_count(grace["profile_id"]) == 0
    assert len(fake_zendesk.events_of(ada["profile_id"])) == 6

    assert fake_zendesk.forget_events(grace["profile_id"]) == 1
    assert fake_zendesk.events_of(grace["profile_id"]) == []
    assert fake_zendesk.forget_events() == 8
    assert fake_zendesk.stored_events == []
    assert len(fake_zendesk.profiles) == 2  # profiles stay
    assert client.get(by_identifier()).json()["events"] == []


def test_accessors_return_copies(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    created = post(client)
    fake_zendesk.events_of(created["profile_id"])[0]["properties"]["x"] = 1
    fake_zendesk.stored_events[0].event["type"] = "changed"
    fake_zendesk.profiles[0].identifiers.clear()
    [event] = fake_zendesk.events_of(created["profile_id"])
    assert event["properties"] == {"order_id": "A-1"} and event["type"] == "order_placed"
    assert fake_zendesk.profiles[0].identifiers


def test_reset_forgets_events_users_and_faults(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    created = post(client)
    fake_zendesk.fail_reads(500)
    fake_zendesk.lose_requests(3)
    fake_zendesk.reset()
    assert fake_zendesk.stored_events == []
    assert client.get(f"/api/v2/users/{created['user_id']}/events").status_code == 404
    post(client)  # not lost


# -- fault modes -------------------------------------------------------------------------------


def test_slow_accept_stores_then_answers_late(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.slow_accept(count=1, delay=0.5)
    started = time.monotonic()
    with make_client(fake_zendesk.base_url) as patient:
        answer = post(patient)
        assert time.monotonic() - started >= 0.5
        assert post(patient)["profile_id"] == answer["profile_id"]  # the next one is on time
    assert len(fake_zendesk.stored_events) == 2
    assert [r.status for r in fake_zendesk.received] == [202, 202]


def test_slow_accept_times_a_client_out_yet_stores_the_event(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.slow_accept(delay=2.0)
    body = {
        "event": {"source": "adobe", "type": "t", "properties": {"k": "v"}},
        "profile": {
            "source": "adobe",
            "type": "customer",
            "identifiers": [{"type": "email", "value": "a@b.c"}],
        },
    }
    with (
        make_client(fake_zendesk.base_url, timeout=httpx.Timeout(5.0, read=0.2)) as hasty,
        pytest.raises(httpx.ReadTimeout),
    ):
        hasty.post(EVENTS, json=body)
    # stored before the (late) answer: visible at once
    [stored] = fake_zendesk.stored_events
    assert stored.event["properties"] == {"k": "v"}
    with make_client(fake_zendesk.base_url) as c:
        assert len(c.get(by_identifier("adobe:customer:email:a@b.c")).json()["events"]) == 1
    # the hasty client is gone when the answer is due: nobody is answered
    [record, _] = fake_zendesk.received
    assert not fake_zendesk.wait_for(1, timeout=max(0.0, record.received_at + 3.0 - time.monotonic()))
    assert record.status is None and fake_zendesk.accepted == []


def test_lost_requests_are_not_stored_nor_answered(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    fake_zendesk.lose_requests(2)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            post(client)
    assert fake_zendesk.stored_events == []
    assert [(r.method, r.status) for r in fake_zendesk.received] == [("POST", None), ("POST", None)]
    assert client.get("/api/v2/users/1/events").status_code == 404  # reads are not lost
    post(client)
    assert len(fake_zendesk.stored_events) == 1
    assert len(fake_zendesk.accepted) == 1


def test_enqueued_answers_go_before_lost_requests(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    fake_zendesk.lose_requests(1)
    fake_zendesk.enqueue(ERROR_BODIES["plain_text_503"])
    assert client.post(EVENTS, json={}).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        post(client)
    post(client)


def test_fail_reads_for_a_count(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    created = post(client)
    fake_zendesk.fail_reads(500, count=2)
    first = client.get(by_identifier())
    assert (first.status_code, first.text) == (500, "Internal Server Error")
    assert first.headers["content-type"].startswith("text/plain")
    post(client)  # writes are not affected, nor counted
    assert client.get(f"/api/v2/user_profiles/{created['profile_id']}").status_code == 500
    assert len(client.get(by_identifier()).json()["events"]) == 2


def test_fail_reads_with_no_count_left_is_off(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    post(client)
    fake_zendesk.fail_reads(503)
    fake_zendesk.fail_reads(500, count=0)
    assert client.get(by_identifier()).status_code == 200


def test_fail_reads_until_cleared(fake_zendesk: FakeZendesk, client: httpx.Client) -> None:
    created = post(client)
    fake_zendesk.fail_reads(ERROR_BODIES["plain_text_503"])
    for path in (
        by_identifier(),
        f"/api/v2/users/{created['user_id']}/events",
        "/api/v2/user_profiles?identifier=x",
    ):
        r = client.get(path)
        assert r.status_code == 503 and r.headers["retry-after"] == "3"
    assert client.get("/api/v2/nowhere").status_code == 404  # not a read endpoint
    assert client.delete(f"/api/v2/user_profiles/{created['profile_id']}").status_code == 204
    fake_zendesk.clear_faults()
    assert client.get(f"/api/v2/users/{created['user_id']}/events").status_code == 200
