"""Events without an id, as Adobe's Web SDK sends them (no ``xdm._id``): the relay derives one
from the event's content, de-duplicates on it and delivers with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.mapping.event_ids import derived_event_id
from app.payloads import parse_payload
from tests.api.test_fanout import fanout_settings
from tests.conftest import auth, zendesk_settings
from tests.fakes.yotpo import FakeYotpo
from tests.fakes.zendesk import FakeZendesk

Client = Callable[..., TestClient]
ALLOY = Path(__file__).resolve().parents[1] / "data" / "alloy"
PURCHASE = (ALLOY / "03-purchase.json").read_bytes()  # a purchase as alloy 2.33 sent it


def post(client: TestClient, body: bytes) -> Any:
    return client.post("/v1/events?wait=10", content=body, headers={**auth(), "Content-Type": "text/plain"})


def test_an_event_without_an_id_is_delivered_once_with_a_derived_id(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    [first] = post(client, PURCHASE).json()["results"]
    [again] = post(client, PURCHASE).json()["results"]
    [event] = parse_payload(PURCHASE).events
    assert first["status"] == "delivered"
    assert (first["event_id"], first["event_id_source"]) == (derived_event_id(event), "derived")
    assert again["status"] == "duplicate"
    assert (again["delivery_id"], again["event_id"]) == (first["delivery_id"], first["event_id"])
    assert len(fake_zendesk.received) == 1
    delivery = client.get(f"/v1/deliveries/{first['delivery_id']}", headers=auth()).json()
    assert delivery["event_id"] == first["event_id"]


def test_a_resend_with_other_request_meta_is_still_a_duplicate(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    # The Web SDK's `meta` changes from send to send (its state cookies, its queue time)
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    resent = json.loads(PURCHASE)
    resent["meta"] = {"queueTimeMillis": 2500, "state": {"domain": "shop.example", "cookiesEnabled": True}}
    assert post(client, PURCHASE).json()["results"][0]["status"] == "delivered"
    assert post(client, json.dumps(resent).encode()).json()["results"][0]["status"] == "duplicate"
    assert len(fake_zendesk.received) == 1


def test_an_id_the_mapping_names_is_used_as_before(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    body = json.loads(PURCHASE)
    body["events"][0]["xdm"]["_id"] = "a1b2c3d4-0000-4000-8000-000000000042"
    [result] = post(client, json.dumps(body).encode()).json()["results"]
    assert (result["event_id"], result["event_id_source"]) == (
        "a1b2c3d4-0000-4000-8000-000000000042",
        "mapping",
    )


def test_yotpo_gets_an_id_for_an_event_without_one(
    relay_client: Client, fake_zendesk: FakeZendesk, fake_yotpo: FakeYotpo
) -> None:
    client = relay_client(fanout_settings(fake_zendesk, fake_yotpo))
    first = {r["destination"]: r for r in post(client, PURCHASE).json()["results"]}
    again = {r["destination"]: r for r in post(client, PURCHASE).json()["results"]}
    assert first["yotpo"]["status"] == "delivered", first["yotpo"]  # was rejected: `id` required
    assert first["yotpo"]["event_id_source"] == "derived"
    assert again["yotpo"]["status"] == again["zendesk"]["status"] == "duplicate"
    [sent] = fake_yotpo.accepted
    assert isinstance(sent.body["id"], str) and sent.body["id"]
