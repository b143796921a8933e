"""``GET /v1/trace/{event_id}`` and ``POST /v1/erasure``: admin only, against the fake Zendesk's
read, profile and delete endpoints, on both stores."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES, auth, log_lines, zendesk_settings
from tests.fakes.redis_server import RedisServer
from tests.fakes.zendesk import ERROR_BODIES, FakeZendesk
from tests.load.loadgen import purchase

Client = Callable[..., TestClient]
ADMIN = "test-admin-token"
PURCHASE = (EXAMPLES / "purchase.json").read_bytes()
EVENT_ID = json.loads(PURCHASE)["xdm"]["_id"]
FAST = {"relay_retry_base_seconds": 0.05, "relay_retry_cap_seconds": 0.2}
JANE = {"identifiers": [{"type": "email", "value": "Jane.Smith@example.com"}]}


def admin() -> dict[str, str]:
    return auth(ADMIN)


def post(client: TestClient, body: bytes) -> dict[str, Any]:
    [result] = client.post("/v1/events?wait=10", content=body, headers=auth()).json()["results"]
    return dict(result)


def someone_else(event_id: str) -> bytes:
    body = json.loads(purchase(event_id))
    body["xdm"]["identityMap"] = {"Email": [{"id": "max.other@example.com", "primary": True}]}
    return json.dumps(body).encode()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return "sqlite:///:memory:"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


def start(
    relay_client: Client, fake: FakeZendesk, store: str = "sqlite:///:memory:", **extra: Any
) -> TestClient:
    prefix = {"relay_redis_prefix": f"t-{id(fake)}-{len(fake.received)}"} if store.startswith("redis") else {}
    settings = zendesk_settings(
        fake.base_url, relay_admin_token=ADMIN, relay_store=store, **prefix, **FAST, **extra
    )
    return relay_client(settings)


def test_trace_shows_each_delivery_its_body_and_attempts(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.enqueue(ERROR_BODIES["plain_text_503"])
    client = start(relay_client, fake_zendesk)
    assert post(client, PURCHASE)["status"] == "delivered"
    trace = client.get(f"/v1/trace/{EVENT_ID}", headers=admin()).json()
    [sent] = trace["deliveries"]
    assert (trace["event_id"], sent["status"], sent["mapping"]) == (EVENT_ID, "delivered", "order-completed")
    assert sent["body"]["event"]["properties"]["order_id"] == "ORD-1001"
    assert [(a["outcome"], a["code"], a["upstream_status"]) for a in sent["history"]] == [
        ("retry", "destination_unavailable", 503),
        ("delivered", "ok", 202),
    ]
    assert all(a["latency_ms"] >= 0 and a["at"] > 0 for a in sent["history"])
    assert "verified" not in sent  # not asked


def test_trace_with_verify_asks_zendesk(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = start(relay_client, fake_zendesk)
    assert post(client, PURCHASE)["status"] == "delivered"
    [held] = client.get(f"/v1/trace/{EVENT_ID}?verify=true", headers=admin()).json()["deliveries"]
    assert held["verified"] is True
    fake_zendesk.forget_events()  # past Zendesk's retention, or deleted there
    [gone] = client.get(f"/v1/trace/{EVENT_ID}?verify=true", headers=admin()).json()["deliveries"]
    assert gone["verified"] is False
    fake_zendesk.fail_reads(500)
    [unknown] = client.get(f"/v1/trace/{EVENT_ID}?verify=true", headers=admin()).json()["deliveries"]
    assert unknown["verified"] is None


def test_trace_of_a_dry_run_cannot_be_verified(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = start(relay_client, fake_zendesk, relay_dry_run=True)
    assert post(client, PURCHASE)["status"] == "dry_run"
    [kept] = client.get(f"/v1/trace/{EVENT_ID}?verify=true", headers=admin()).json()["deliveries"]
    assert (kept["status"], kept["verified"], kept["history"]) == ("dry_run", None, [])
    assert fake_zendesk.received == []


def test_trace_of_an_unknown_event_is_a_404_problem(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = start(relay_client, fake_zendesk)
    response = client.get("/v1/trace/never-seen", headers=admin())
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(("method", "path"), [("GET", f"/v1/trace/{EVENT_ID}"), ("POST", "/v1/erasure")])
def test_trace_and_erasure_refuse_the_ingest_token(
    relay_client: Client, fake_zendesk: FakeZendesk, method: str, path: str
) -> None:
    client = start(relay_client, fake_zendesk)
    assert client.request(method, path, json=JANE, headers=auth()).status_code == 401
    assert client.request(method, path, json=JANE).status_code == 401
    closed = relay_client(zendesk_settings(fake_zendesk.base_url))  # no admin token: admin routes off
    assert closed.request(method, path, json=JANE, headers=auth()).json()["code"] == "forbidden"


def test_erasure_deletes_at_zendesk_and_in_the_store_and_a_second_finds_nothing(
    relay_client: Client, fake_zendesk: FakeZendesk, store_url: str, logs: io.StringIO
) -> None:
    client = start(relay_client, fake_zendesk, store_url)
    delivered = post(client, PURCHASE)
    fake_zendesk.enqueue(ERROR_BODIES["errors_array_400"])
    dead = post(client, purchase("jane-dead"))
    other = post(client, someone_else("max-1"))
    assert (delivered["status"], dead["status"], other["status"]) == ("delivered", "dead", "delivered")
    assert len(fake_zendesk.profiles) == 2

    response = client.post("/v1/erasure", json=JANE, headers=admin())
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["relay"] == {"deliveries": 1, "dead_letters": 1, "idempotency_keys": 2}
    [profile] = report["zendesk"]["profiles_deleted"]
    assert (profile["source"], profile["type"], profile["result"]) == ("shop", "customer", "deleted")
    [left] = fake_zendesk.profiles
    assert left.identifiers[0]["value"] == "max.other@example.com"
    for gone in (delivered, dead):
        assert client.get(f"/v1/deliveries/{gone['delivery_id']}", headers=auth()).status_code == 404
    assert client.get(f"/v1/deliveries/{other['delivery_id']}", headers=auth()).status_code == 200
    assert client.get(f"/v1/trace/{EVENT_ID}", headers=admin()).status_code == 404

    again = client.post("/v1/erasure", json=JANE, headers=admin()).json()
    assert again["relay"] == {"deliveries": 0, "dead_letters": 0, "idempotency_keys": 0}
    assert again["zendesk"]["profiles_deleted"] == []
    # the event's idempotency record went too: the same event is new again
    assert post(client, PURCHASE)["status"] == "delivered"

    text = logs.getvalue()
    assert "jane.smith" not in text.lower()
    audit = [line for line in log_lines(logs) if line["event"].startswith("erasure_")]
    assert [line["event"] for line in audit] == ["erasure_requested", "erasure_done"] * 2
    assert all(line.get("request_id") for line in audit)


def test_erasure_when_zendesk_fails_answers_the_problem_with_the_report_so_far(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = start(relay_client, fake_zendesk)
    assert post(client, PURCHASE)["status"] == "delivered"
    fake_zendesk.fail_reads(503)
    response = client.post("/v1/erasure", json=JANE, headers=admin())
    assert response.status_code == 502
    problem = response.json()
    assert problem["code"] == "destination_unavailable"
    assert problem["report"]["relay"]["deliveries"] == 1
    fake_zendesk.clear_faults()
    retried = client.post("/v1/erasure", json=JANE, headers=admin()).json()
    assert retried["relay"]["deliveries"] == 0
    assert [p["result"] for p in retried["zendesk"]["profiles_deleted"]] == ["deleted"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"identifiers": []},
        {"identifiers": [{"type": "email"}]},
        {"identifiers": [{"type": "", "value": "x"}]},
    ],
)
def test_an_erasure_request_without_identifiers_is_a_400(
    relay_client: Client, fake_zendesk: FakeZendesk, body: dict[str, Any]
) -> None:
    response = start(relay_client, fake_zendesk).post("/v1/erasure", json=body, headers=admin())
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_both_routes_are_in_the_openapi_document(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    paths = start(relay_client, fake_zendesk).get("/openapi.json").json()["paths"]
    assert "get" in paths["/v1/trace/{event_id}"]
    assert "post" in paths["/v1/erasure"]
