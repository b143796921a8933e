"""One Adobe purchase fanned out to Zendesk and Yotpo: each outcome on its own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.destinations.yotpo import default_event_id
from tests.conftest import EXAMPLES, MAPPINGS, auth, zendesk_settings
from tests.fakes.yotpo import ERROR_BODIES as YOTPO_ERRORS
from tests.fakes.yotpo import CannedResponse, FakeYotpo
from tests.fakes.zendesk import FakeZendesk
from tests.load.loadgen import wait_until

Client = Callable[..., TestClient]
ROOT = Path(__file__).resolve().parents[2]


def fanout_settings(zendesk: FakeZendesk, yotpo: FakeYotpo, **extra: Any) -> Any:
    return zendesk_settings(
        zendesk.base_url,
        yotpo_store_id="store-123",
        yotpo_secret="test-yotpo-secret",
        yotpo_base_url=yotpo.base_url,
        relay_retry_base_seconds=0.05,
        relay_retry_cap_seconds=0.2,
        **{"relay_mappings_dir": MAPPINGS, **extra},
    )


def post(client: TestClient, body: bytes) -> Any:
    return client.post("/v1/events?wait=10", content=body, headers={**auth(), "Content-Type": "text/plain"})


def test_one_purchase_reaches_zendesk_and_yotpo(
    relay_client: Client, fake_zendesk: FakeZendesk, fake_yotpo: FakeYotpo
) -> None:
    client = relay_client(fanout_settings(fake_zendesk, fake_yotpo))
    response = post(client, (EXAMPLES / "purchase.json").read_bytes())
    assert response.status_code == 200, response.text
    results = {r["destination"]: r for r in response.json()["results"]}
    assert results["zendesk"]["status"] == "delivered"
    assert results["yotpo"]["status"] == "delivered"
    [event] = fake_yotpo.accepted
    # made from the mapping's name and its event_id
    assert event.body["id"] == default_event_id(
        "yotpo-order-completed", "a1b2c3d4-0000-4000-8000-000000000001"
    )
    assert event.body["type"] == "order_completed"
    # Yotpo takes external_id with email (it refuses e-mail plus phone only without an external id)
    assert event.body["customer"] == {"external_id": "CRM-0987654321", "email": "jane.smith@example.com"}
    assert event.body["timestamp"]


def test_a_rejection_by_one_destination_does_not_hold_back_the_other(
    relay_client: Client, fake_zendesk: FakeZendesk, fake_yotpo: FakeYotpo
) -> None:
    fake_yotpo.set_default(YOTPO_ERRORS["validation_422"])
    client = relay_client(fanout_settings(fake_zendesk, fake_yotpo))
    response = post(client, (EXAMPLES / "purchase.json").read_bytes())
    assert response.status_code == 207
    results = {r["destination"]: r for r in response.json()["results"]}
    assert results["zendesk"]["status"] == "delivered"
    assert results["yotpo"]["status"] == "dead"
    assert results["yotpo"]["problem"]["code"] == "destination_rejected"
    assert len(fake_zendesk.accepted) == 1


def test_a_body_yotpo_would_refuse_is_rejected_before_sending(
    relay_client: Client, fake_zendesk: FakeZendesk, fake_yotpo: FakeYotpo, tmp_path: Path
) -> None:
    (tmp_path / "to-zendesk.yaml").write_text(
        "destination: zendesk\n"
        "body:\n"
        "  profile: {source: shop, type: customer, identifiers: [{type: email, value: a@example.com}]}\n"
        "  event: {source: shop, type: purchase, properties: {n: 1}}\n"
    )
    (tmp_path / "to-yotpo.yaml").write_text(
        "destination: yotpo\n"
        "event_id: xdm._id\n"
        "body:\n"
        "  type: purchase\n"
        "  customer: {email: a@example.com, phone_number: '+14155550100'}\n"  # both: Yotpo refuses
    )
    client = relay_client(fanout_settings(fake_zendesk, fake_yotpo, relay_mappings_dir=tmp_path))
    response = post(client, json.dumps({"xdm": {"_id": "e-1", "eventType": "x"}}).encode())
    assert response.status_code == 207
    results = {r["destination"]: r for r in response.json()["results"]}
    assert results["zendesk"]["status"] == "delivered"
    assert results["yotpo"]["status"] == "rejected"
    assert results["yotpo"]["problem"]["code"] == "validation_failed"
    assert [v["path"] for v in results["yotpo"]["problem"]["violations"]] == ["customer"]
    assert fake_yotpo.received == []  # nothing was sent to Yotpo


def test_what_yotpo_only_recommends_is_sent_with_a_warning(
    relay_client: Client, fake_zendesk: FakeZendesk, fake_yotpo: FakeYotpo, tmp_path: Path
) -> None:
    (tmp_path / "to-yotpo.yaml").write_text(
        "destination: yotpo\n"
        "event_id: xdm._id\n"
        "body:\n"
        "  type: OrderPlaced\n"  # the page says types "should" be snake_case
        "  timestamp: '2024-05-01T12:00:00Z'\n"
        "  customer: {external_id: c-1}\n"
        "  properties: {'coupon code': SPRING}\n"  # spaces in keys: refused in customer properties only
    )
    client = relay_client(fanout_settings(fake_zendesk, fake_yotpo, relay_mappings_dir=tmp_path))
    response = post(client, json.dumps({"xdm": {"_id": "e-1", "eventType": "x"}}).encode())
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["status"] == "delivered"
    assert [w["path"] for w in result["warnings"]] == ["type"]
    [event] = fake_yotpo.accepted
    assert (event.body["type"], event.body["properties"]) == ("OrderPlaced", {"coupon code": "SPRING"})


def test_two_yotpo_mappings_on_one_purchase_do_not_overwrite_each_other(
    relay_client: Client, fake_zendesk: FakeZendesk, fake_yotpo: FakeYotpo, tmp_path: Path
) -> None:
    for name in ("order_completed", "order_paid"):
        (tmp_path / f"{name}.yaml").write_text(
            "destination: yotpo\n"
            "when: \"xdm.eventType == 'commerce.purchases'\"\n"
            "event_id: xdm._id\n"
            f"body: {{type: {name}, timestamp: '2024-05-01T12:00:00Z', customer: {{external_id: c-1}}}}\n"
        )
    client = relay_client(fanout_settings(fake_zendesk, fake_yotpo, relay_mappings_dir=tmp_path))
    purchase = (EXAMPLES / "purchase.json").read_bytes()
    response = post(client, purchase)
    assert [r["status"] for r in response.json()["results"]] == ["delivered", "delivered"]
    assert sorted(e["type"] for e in fake_yotpo.events.values()) == ["order_completed", "order_paid"]
    assert fake_yotpo.updates == 0
    assert len(fake_yotpo.events) == 2


@pytest.mark.parametrize("status", [429, 500, 400])
def test_rate_limit_headers_of_a_failed_answer_pace_the_destination(
    relay_client: Client, fake_zendesk: FakeZendesk, fake_yotpo: FakeYotpo, status: int
) -> None:
    # every attempt answered so (a 2xx would set the ceiling anyway): 2 per second is 120 a minute
    headers = {"RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": "60"}
    fake_yotpo.set_default(CannedResponse(status, None, headers))
    client = relay_client(fanout_settings(fake_zendesk, fake_yotpo))
    limiter = client.app.state.relay.dispatcher.limiters["yotpo"]
    assert limiter.ceiling_per_minute == 300  # YOTPO_RATE_LIMIT_PER_MINUTE's default
    body = (EXAMPLES / "purchase.json").read_bytes()
    assert client.post("/v1/events", content=body, headers=auth()).status_code == 202
    assert wait_until(lambda: limiter.ceiling_per_minute == 120, 5.0), limiter.ceiling_per_minute
    assert fake_yotpo.received[-1].status == status
