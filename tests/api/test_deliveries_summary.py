"""``GET /v1/deliveries/summary`` in-process against the fake Zendesk: deliveries counted in
their minute, dead letters of the last hour by code, the backlog while Zendesk is down, the
admin token, and the answer documented in the OpenAPI (and valid against it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
from fastapi.testclient import TestClient

from tests.api.test_dead_letters import ADMIN, ADMIN_TOKEN, CART_ADD, PURCHASE, assert_problem, event, kill
from tests.conftest import auth, zendesk_settings
from tests.fakes.zendesk import ERROR_BODIES, CannedResponse, FakeZendesk
from tests.load.loadgen import wait_until

Client = Callable[..., TestClient]


def start(relay_client: Client, fake: FakeZendesk, **overrides: Any) -> TestClient:
    return relay_client(zendesk_settings(fake.base_url, relay_admin_token=ADMIN_TOKEN, **overrides))


def summary(client: TestClient) -> dict[str, Any]:
    response = client.get("/v1/deliveries/summary", headers=ADMIN)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def zendesk(doc: dict[str, Any]) -> dict[str, Any]:
    [found] = [d for d in doc["destinations"] if d["name"] == "zendesk"]
    return found


def deliver(client: TestClient, event_id: str) -> None:
    response = client.post(
        "/v1/events?wait=10",
        content=json.dumps(event(PURCHASE, event_id)),
        headers={**auth(), "Content-Type": "text/plain"},
    )
    assert response.json()["results"][0]["status"] == "delivered", response.text


def test_delivered_minutes_dead_letters_and_the_limit(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = start(relay_client, fake_zendesk)
    before = zendesk(summary(client))
    assert before["pending"] == 0 and before["dead_last_hour"] == 0
    assert sum(before["delivered_per_minute"]) == 0
    for index in range(3):
        deliver(client, f"sum-ok-{index}")
    fake_zendesk.set_default(ERROR_BODIES["errors_array_400"])
    kill(client, event(CART_ADD, "sum-dead-1"))
    doc = summary(client)
    found = zendesk(doc)
    assert len(found["delivered_per_minute"]) == doc["minutes"] == 15
    assert sum(found["delivered_per_minute"]) == 3  # two minutes if a minute turned meanwhile
    assert found["dead_last_hour"] == 1
    assert list(found["dead_last_hour_by_code"].values()) == [1]
    assert found["limit_per_minute"] > 0
    assert found["circuit"]["state"] == "closed"
    assert found["dry_run"] is False
    assert doc["dead_letters"] == 1 and doc["dead_last_hour_capped"] is False
    yotpo = [d for d in doc["destinations"] if d["name"] == "yotpo"]
    assert yotpo == [] or (yotpo[0]["dry_run"] is True and yotpo[0]["circuit"] is None)


def test_the_backlog_and_its_age_while_zendesk_is_down(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.set_default(CannedResponse(503, {"error": "down"}))
    client = start(relay_client, fake_zendesk, relay_retry_base_seconds=5.0, relay_retry_cap_seconds=10.0)
    for index in range(2):
        response = client.post(
            "/v1/events", content=json.dumps(event(PURCHASE, f"sum-wait-{index}")), headers=auth()
        )
        assert response.status_code == 202, response.text
    assert wait_until(lambda: zendesk(summary(client))["oldest_pending_age_seconds"] >= 0.5, 10)
    found = zendesk(summary(client))
    assert found["pending"] == 2
    assert sum(found["delivered_per_minute"]) == 0


def test_the_summary_needs_the_admin_token(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = start(relay_client, fake_zendesk)
    assert_problem(client.get("/v1/deliveries/summary"), 401, "unauthorized")
    assert_problem(client.get("/v1/deliveries/summary", headers=auth()), 401, "unauthorized")
    closed = relay_client(zendesk_settings(fake_zendesk.base_url))
    assert_problem(closed.get("/v1/deliveries/summary", headers=ADMIN), 403, "forbidden")


def test_the_answer_is_documented_and_valid_against_its_schema(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = start(relay_client, fake_zendesk)
    deliver(client, "sum-doc-1")
    operation = client.get("/openapi.json").json()["paths"]["/v1/deliveries/summary"]["get"]
    assert {"200", "401", "403", "503"} <= set(operation["responses"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(summary(client), schema)
