"""The dead-letter admin API and ``GET /v1/deliveries/{id}``, in-process.

Dead letters are made for real: the fake Zendesk answers a non-retryable 4xx, so the
dispatcher moves the delivery to the dead letters at once, and ``?wait=10`` returns that outcome.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES, auth, zendesk_settings
from tests.fakes.zendesk import ERROR_BODIES, CannedResponse, FakeZendesk

Client = Callable[..., TestClient]
ADMIN_TOKEN = "admin-token"
ADMIN = auth(ADMIN_TOKEN)
PURCHASE = json.loads((EXAMPLES / "purchase.json").read_bytes())
CART_ADD = json.loads((EXAMPLES / "cart-add.json").read_bytes())


def start(relay_client: Client, fake: FakeZendesk, **overrides: Any) -> TestClient:
    values: dict[str, Any] = {"relay_admin_token": ADMIN_TOKEN, **overrides}
    return relay_client(zendesk_settings(fake.base_url, **values))


def event(template: dict[str, Any], event_id: str) -> dict[str, Any]:
    """A copy of an example payload with its own ``xdm._id`` (so it is not a duplicate)."""
    payload: dict[str, Any] = json.loads(json.dumps(template))
    payload["xdm"]["_id"] = event_id
    return payload


def kill(client: TestClient, payload: dict[str, Any]) -> str:
    """Post an event the fake rejects; return the id of the dead delivery."""
    response = client.post(
        "/v1/events?wait=10",
        content=json.dumps(payload),
        headers={**auth(), "Content-Type": "text/plain"},
    )
    [result] = response.json()["results"]
    assert result["status"] == "dead", response.text
    assert result["problem"]["retryable"] is False
    delivery_id: str = result["delivery_id"]
    return delivery_id


def dead_ids(client: TestClient, **params: Any) -> list[str]:
    response = client.get("/v1/dead-letters", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["count"] == len(doc["dead_letters"])
    return sorted(d["id"] for d in doc["dead_letters"])


def wait_for_status(
    client: TestClient, delivery_id: str, status: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Poll ``GET /v1/deliveries/{id}`` (ingest token) until ``status``, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/deliveries/{delivery_id}", headers=auth())
        assert response.status_code == 200, response.text
        doc: dict[str, Any] = response.json()
        if doc["status"] == status or time.monotonic() > deadline:
            assert doc["status"] == status, doc
            return doc
        time.sleep(0.02)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = response.json()
    assert doc["status"] == status
    assert doc["code"] == code
    assert doc["type"] == "/problems/" + code.replace("_", "-")
    return doc


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def rejecting(fake_zendesk: FakeZendesk) -> FakeZendesk:
    fake_zendesk.set_default(ERROR_BODIES["errors_array_400"])
    return fake_zendesk


# -- listing and showing -------------------------------------------------------------------------


def test_list_shows_each_dead_letter_with_its_problem(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    first = kill(client, event(PURCHASE, "e1"))
    second = kill(client, event(CART_ADD, "e2"))
    response = client.get("/v1/dead-letters", headers=ADMIN)
    assert response.status_code == 200
    doc = response.json()
    assert doc["count"] == 2
    newest, oldest = doc["dead_letters"]  # newest first
    assert (newest["id"], oldest["id"]) == (second, first)
    assert oldest["status"] == "dead"
    assert oldest["mapping"] == "order-completed"
    assert oldest["destination"] == "zendesk"
    assert oldest["event_id"] == "e1"
    assert oldest["attempts"] == 1
    assert oldest["last_problem"]["code"] == "destination_rejected"
    assert "StartTimestampNotValid" in oldest["last_problem"]["detail"]
    assert "body" not in oldest  # only `show` has the body
    assert len(rejecting.received) == 2 and rejecting.accepted == []


def test_list_filters_by_destination_mapping_and_code(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    purchase = kill(client, event(PURCHASE, "p1"))
    cart = kill(client, event(CART_ADD, "c1"))
    rejecting.enqueue(ERROR_BODIES["record_not_found_404"])
    missing = kill(client, event(PURCHASE, "p2"))
    everything = sorted([purchase, cart, missing])

    assert dead_ids(client) == everything
    assert dead_ids(client, destination="zendesk") == everything
    assert dead_ids(client, destination="yotpo") == []
    assert dead_ids(client, mapping="order-completed") == sorted([purchase, missing])
    assert dead_ids(client, mapping="product-added-to-cart") == [cart]
    assert dead_ids(client, code="destination_rejected") == sorted([purchase, cart])
    assert dead_ids(client, code="destination_not_found") == [missing]
    assert dead_ids(client, code="destination_not_found", mapping="product-added-to-cart") == []
    assert len(dead_ids(client, limit=2)) == 2


def test_list_filters_by_time(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    early = kill(client, event(PURCHASE, "t1"))
    middle = time.time()
    late = kill(client, event(PURCHASE, "t2"))
    assert dead_ids(client, since=iso(middle)) == [late]
    assert dead_ids(client, until=iso(middle)) == [early]
    assert dead_ids(client, since=iso(middle - 3600), until=iso(middle + 3600)) == sorted([early, late])
    assert dead_ids(client, since=iso(middle + 3600)) == []
    offset = datetime.fromtimestamp(middle, UTC).astimezone().isoformat()  # "+hh:mm" offsets too
    assert dead_ids(client, since=offset) == [late]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "since=yesterday", "until=13/01/2026"])
def test_list_refuses_bad_filters(relay_client: Client, fake_zendesk: FakeZendesk, query: str) -> None:
    client = start(relay_client, fake_zendesk)
    doc = assert_problem(client.get(f"/v1/dead-letters?{query}", headers=ADMIN), 400, "invalid_request")
    assert doc["errors"][0]["path"] == "query." + query.split("=")[0]


def test_show_has_the_body_and_the_upstream_answer(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    delivery_id = kill(client, event(PURCHASE, "s1"))
    response = client.get(f"/v1/dead-letters/{delivery_id}", headers=ADMIN)
    assert response.status_code == 200
    doc = response.json()
    assert doc["id"] == delivery_id and doc["status"] == "dead"
    [sent] = rejecting.received
    assert doc["body"] == sent.body
    assert doc["body"]["event"]["type"] == "order_completed"
    assert doc["endpoint"] == "POST /api/v2/user_profiles/events"
    problem = doc["last_problem"]
    assert problem["code"] == "destination_rejected"
    assert problem["upstream"]["status"] == 400
    assert problem["upstream"]["body"] == ERROR_BODIES["errors_array_400"].body
    assert problem["upstream"]["request_id"]  # the fake's X-Zendesk-Request-Id
    assert "test-api-token" not in response.text


def test_delivery_shows_status_attempts_and_last_problem(
    relay_client: Client, rejecting: FakeZendesk
) -> None:
    client = start(relay_client, rejecting)
    delivery_id = kill(client, event(PURCHASE, "d1"))
    for headers in (auth(), ADMIN):  # the ingest token or the admin token
        response = client.get(f"/v1/deliveries/{delivery_id}", headers=headers)
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["id"] == delivery_id
        assert doc["status"] == "dead"
        assert doc["attempts"] == 1
        assert doc["last_problem"]["code"] == "destination_rejected"
        assert doc["last_problem"]["upstream"]["status"] == 400
        assert "next_attempt_at" not in doc
    assert_problem(client.get(f"/v1/deliveries/{delivery_id}"), 401, "unauthorized")


# -- auth ---------------------------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/v1/dead-letters"),
    ("GET", "/v1/dead-letters/some-id"),
    ("POST", "/v1/dead-letters/some-id/replay"),
    ("POST", "/v1/dead-letters/replay"),
    ("DELETE", "/v1/dead-letters/some-id"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_are_off_without_an_admin_token(
    relay_client: Client, fake_zendesk: FakeZendesk, method: str, path: str
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))  # no RELAY_ADMIN_TOKEN
    for headers in ({}, auth(), ADMIN):
        assert_problem(client.request(method, path, headers=headers), 403, "forbidden")


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_refuse_the_ingest_token(
    relay_client: Client, fake_zendesk: FakeZendesk, method: str, path: str
) -> None:
    client = start(relay_client, fake_zendesk)
    for headers in ({}, auth(), {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
        assert_problem(client.request(method, path, headers=headers), 401, "unauthorized")


def test_admin_routes_do_nothing_for_a_wrong_token(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    delivery_id = kill(client, event(PURCHASE, "w1"))
    assert client.post("/v1/dead-letters/replay", headers=auth()).status_code == 401
    assert client.delete(f"/v1/dead-letters/{delivery_id}", headers=auth()).status_code == 401
    assert dead_ids(client) == [delivery_id]


# -- replay -------------------------------------------------------------------------------------


def test_replay_one_delivers_it(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    delivery_id = kill(client, event(PURCHASE, "r1"))
    other = kill(client, event(PURCHASE, "r2"))
    rejecting.set_default(None)  # Zendesk accepts again
    response = client.post(f"/v1/dead-letters/{delivery_id}/replay", headers=ADMIN)
    assert response.status_code == 202, response.text
    assert response.json() == {"replayed": 1}
    doc = wait_for_status(client, delivery_id, "delivered")
    assert doc["attempts"] == 1  # reset by the replay, then one successful attempt
    [accepted] = rejecting.accepted
    assert accepted.body["event"]["type"] == "order_completed"
    assert dead_ids(client) == [other]
    assert_problem(client.get(f"/v1/dead-letters/{delivery_id}", headers=ADMIN), 404, "not_found")
    # a delivered delivery is no dead letter: replaying it again does nothing
    assert_problem(client.post(f"/v1/dead-letters/{delivery_id}/replay", headers=ADMIN), 404, "not_found")


def test_replay_one_that_fails_again_is_dead_again(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    delivery_id = kill(client, event(PURCHASE, "again"))
    assert client.post(f"/v1/dead-letters/{delivery_id}/replay", headers=ADMIN).status_code == 202
    deadline = time.monotonic() + 10
    while len(rejecting.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    doc = wait_for_status(client, delivery_id, "dead")
    assert len(rejecting.received) == 2
    assert doc["attempts"] == 1
    assert doc["last_problem"]["code"] == "destination_rejected"


def test_replay_by_filter(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    purchases = [kill(client, event(PURCHASE, f"f{i}")) for i in range(3)]
    cart = kill(client, event(CART_ADD, "f-cart"))
    rejecting.set_default(None)
    response = client.post("/v1/dead-letters/replay", params={"mapping": "order-completed"}, headers=ADMIN)
    assert response.status_code == 202, response.text
    assert response.json() == {"replayed": 3}
    for delivery_id in purchases:
        wait_for_status(client, delivery_id, "delivered")
    assert dead_ids(client) == [cart]
    assert len(rejecting.accepted) == 3
    response = client.post("/v1/dead-letters/replay", params={"code": "timeout"}, headers=ADMIN)
    assert response.json() == {"replayed": 0}
    assert dead_ids(client) == [cart]


def test_replay_by_time_filter(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    early = kill(client, event(PURCHASE, "te"))
    middle = time.time()
    late = kill(client, event(PURCHASE, "tl"))
    rejecting.set_default(None)
    response = client.post("/v1/dead-letters/replay", params={"since": iso(middle)}, headers=ADMIN)
    assert response.json() == {"replayed": 1}
    wait_for_status(client, late, "delivered")
    assert dead_ids(client) == [early]


# -- purge and unknown ids ----------------------------------------------------------------------


def test_purge_one_then_it_is_gone(relay_client: Client, rejecting: FakeZendesk) -> None:
    client = start(relay_client, rejecting)
    purged = kill(client, event(PURCHASE, "g1"))
    kept = kill(client, event(PURCHASE, "g2"))
    response = client.delete(f"/v1/dead-letters/{purged}", headers=ADMIN)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(f"/v1/dead-letters/{purged}", headers=ADMIN), 404, "not_found")
    assert_problem(client.get(f"/v1/deliveries/{purged}", headers=auth()), 404, "not_found")
    assert_problem(client.delete(f"/v1/dead-letters/{purged}", headers=ADMIN), 404, "not_found")
    assert_problem(client.post(f"/v1/dead-letters/{purged}/replay", headers=ADMIN), 404, "not_found")
    assert dead_ids(client) == [kept]


def test_purge_refuses_a_delivery_that_is_not_dead(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = start(relay_client, fake_zendesk)
    response = client.post(
        "/v1/events?wait=10",
        content=json.dumps(event(PURCHASE, "ok")),
        headers={**auth(), "Content-Type": "text/plain"},
    )
    [result] = response.json()["results"]
    assert result["status"] == "delivered"
    delivery_id = result["delivery_id"]
    assert_problem(client.delete(f"/v1/dead-letters/{delivery_id}", headers=ADMIN), 404, "not_found")
    assert_problem(client.get(f"/v1/dead-letters/{delivery_id}", headers=ADMIN), 404, "not_found")
    assert client.get(f"/v1/deliveries/{delivery_id}", headers=auth()).json()["status"] == "delivered"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/deliveries/no-such-id", auth()),
        ("GET", "/v1/dead-letters/no-such-id", ADMIN),
        ("POST", "/v1/dead-letters/no-such-id/replay", ADMIN),
        ("DELETE", "/v1/dead-letters/no-such-id", ADMIN),
    ],
)
def test_unknown_id_is_a_404_problem(
    relay_client: Client, fake_zendesk: FakeZendesk, method: str, path: str, headers: dict[str, str]
) -> None:
    client = start(relay_client, fake_zendesk)
    doc = assert_problem(client.request(method, path, headers=headers), 404, "not_found")
    assert "no-such-id" in doc["detail"]
    assert doc["retryable"] is False


def test_an_auth_failure_upstream_is_a_dead_letter_too(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.enqueue(CannedResponse(403, {"errors": [{"code": "PermissionDenied", "title": "No"}]}))
    client = start(relay_client, fake_zendesk)
    delivery_id = kill(client, event(PURCHASE, "auth"))
    [letter] = client.get("/v1/dead-letters", headers=ADMIN).json()["dead_letters"]
    assert letter["id"] == delivery_id
    assert letter["last_problem"]["upstream"]["status"] == 403


@pytest.fixture
def far_east_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The relay's process runs with a local time zone other than UTC (UTC+9, no DST)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_time_filter_without_offset_does_not_depend_on_the_servers_time_zone(
    relay_client: Client, rejecting: FakeZendesk, far_east_clock: None
) -> None:
    client = start(relay_client, rejecting)
    early = kill(client, event(PURCHASE, "tz1"))
    middle = time.time()
    late = kill(client, event(PURCHASE, "tz2"))
    naive_utc = datetime.fromtimestamp(middle, UTC).replace(tzinfo=None).isoformat()
    assert dead_ids(client, since=naive_utc) == [late]
    assert dead_ids(client, until=naive_utc) == [early]
