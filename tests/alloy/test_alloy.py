"""Adobe's own Web SDK against the relay.

``@adobe/alloy`` (npm, pinned in package-lock.json) runs a shop visit in Debian's chromium
(tests/alloy/capture.py); what it sends to its (fake, loopback) Edge is posted to the relay,
which must match the mappings it should, render what it should and answer a resend
``duplicate``. The same holds for the bodies saved in tests/data/alloy, and a fresh capture
must still look like them: when alloy changes what it sends, this says where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.mapping.functions import format_timestamp, parse_timestamp
from tests.alloy.capture import LEGACY_ECID, SAVED, Capture, capture, missing
from tests.alloy.servers import IDENTITY_COOKIE, alloy_version
from tests.conftest import MAPPINGS, auth, make_settings

Client = Callable[..., TestClient]
NAMES = sorted(path.stem for path in SAVED.glob("*.json"))
EMAIL = {"type": "email", "value": "jane.smith@example.com"}
SHOPPER = {"source": "shop", "type": "customer"}
SD_CARD = {"sku": "SD-64", "name": "SD card 64 GB", "quantity": 2, "price": 39.98}


def zendesk_event(type_: str, created_at: str, properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"source": "shop", "type": type_, "created_at": created_at, **more, "properties": properties}


def expected(name: str, created_at: str) -> dict[str, dict[str, Any]]:
    """What each mapping that matches a capture renders (Yotpo: the fields other than
    ``customer`` and ``id``, checked on their own), by mapping name; ``{}`` for an ignored event."""
    if name == "01-pageview-identified":
        properties = {"url": "http://www.shop.example/", "page_name": "home", "referrer": ""}
        return {
            "identified-page-view": {
                "profile": {**SHOPPER, "identifiers": [EMAIL]},
                "event": zendesk_event("page_viewed", created_at, properties, description="Viewed home"),
            }
        }
    if name == "02-cart-add":
        properties = {"cart_id": "cart-7f3a", "items": [SD_CARD], "item_count": 2}  # no ECID: see test below
        return {
            "product-added-to-cart": {
                "profile": {**SHOPPER, "identifiers": [EMAIL]},
                "event": zendesk_event("product_added_to_cart", created_at, properties),
            },
            "yotpo-product-added-to-cart": {
                "type": "product_added_to_cart",
                "source": "adobe_experience_platform",
                "timestamp": created_at,
                "properties": {
                    "cart_id": "cart-7f3a",
                    "skus": "SD-64",
                    "item_count": 2,
                    "value": 39.98,
                    "currency": "USD",
                },
            },
        }
    if name == "03-purchase":
        camera = {"sku": "CAM-1", "name": "Camera", "quantity": 1, "price": 499.99}
        properties = {
            "order_id": "ORD-1001",
            "total": 539.97,
            "currency": "USD",
            "items": [camera, SD_CARD],
            "customer_tier": "gold",
        }
        return {
            "order-completed": {
                "profile": {
                    **SHOPPER,
                    "name": "Jane Smith",
                    "identifiers": [EMAIL, {"type": "external_id", "value": "CRM-0987654321"}],
                },
                "event": zendesk_event(
                    "order_completed", created_at, properties, description="Order ORD-1001"
                ),
            },
            "yotpo-order-completed": {
                "type": "order_completed",
                "source": "adobe_experience_platform",
                "timestamp": created_at,
                "properties": {"order_id": "ORD-1001", "total": 539.97, "currency": "USD", "item_count": 3},
            },
        }
    return {}  # anonymous page views: no mapping applies


def check_relay(client: TestClient, name: str, body: bytes) -> None:
    """Post one captured body twice: the mappings, what they render, then ``duplicate``."""
    [event] = json.loads(body)["events"]
    timestamp = parse_timestamp(event["xdm"]["timestamp"])
    assert timestamp is not None
    want = expected(name, format_timestamp(timestamp))  # as the mappings' iso8601() gives it
    first = client.post("/v1/events", content=body, headers={**auth(), "Content-Type": "text/plain"})
    assert first.status_code == 200, first.text
    results = first.json()["results"]
    if not want:
        assert results == [{"event_index": 0, "status": "ignored"}]
        return
    rendered = {r["mapping"]: r for r in results}
    assert sorted(rendered) == sorted(want), results
    for mapping, result in rendered.items():
        assert result["status"] == "dry_run", result
        assert result["event_id_source"] == "derived"  # alloy sends no xdm._id
        body_sent = dict(result["body"])
        if result["destination"] == "yotpo":
            assert body_sent.pop("id"), result
            customer = body_sent.pop("customer")
            identity = (
                {"external_id": "CRM-0987654321"} if name == "03-purchase" else {"email": EMAIL["value"]}
            )
            assert identity.items() <= customer.items(), customer
        assert body_sent == want[mapping], mapping
    again = client.post("/v1/events", content=body, headers={**auth(), "Content-Type": "text/plain"})
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] * len(want)
    assert {r["delivery_id"] for r in again.json()["results"]} == {r["delivery_id"] for r in results}


@pytest.fixture
def relay(relay_client: Client) -> TestClient:
    """The relay with every shipped mapping; no destination configured, so each delivery is a
    dry run whose result shows the body."""
    return relay_client(make_settings(relay_mappings_dir=MAPPINGS))


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_capture_reaches_its_mappings_once(relay: TestClient, name: str) -> None:
    check_relay(relay, name, (SAVED / f"{name}.json").read_bytes())


def test_the_saved_captures_say_which_alloy_sent_them() -> None:
    assert NAMES == [
        "01-pageview-identified",
        "02-cart-add",
        "03-purchase",
        "04-pageview-anonymous-legacy-cookie",
        "05-pageview-anonymous",
    ]
    sources = (SAVED / "SOURCES.md").read_text()
    assert f"`@adobe/alloy` {alloy_version()}" in sources
    for name in NAMES:
        saved = json.loads((SAVED / f"{name}.json").read_text())
        assert saved["events"][0]["xdm"]["implementationDetails"]["version"] == alloy_version()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Capture]]:
    """A fresh capture (about 5 s); never skipped, as `make test` installs what it needs."""
    reason = missing()
    if reason:
        pytest.fail(reason)
    yield capture(tmp_path_factory.mktemp("alloy"))


VOLATILE = re.compile(r"(timestamp|localTime|queueTimeMillis|entries\[\d+\]\.value)$")


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a JSON value by its path; the values that differ on each run as ``...``."""
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in leaves(item, f"{path}.{key}".lstrip(".")).items()
        }
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}[{i}]").items()}
    return {path: "..." if VOLATILE.search(path) else value}


@pytest.mark.slow(seconds=15)
def test_alloy_sends_what_was_saved(live: list[Capture]) -> None:
    assert [c.step.name for c in live] == NAMES
    for item in live:
        saved = json.loads((SAVED / f"{item.step.name}.json").read_text())
        assert leaves(item.request.payload) == leaves(saved), (
            f"{item.step.name}: alloy {alloy_version()} sends something else than the saved capture; "
            "look at the difference and rerun `python -m tests.alloy.capture`"
        )


@pytest.mark.slow(seconds=15)
def test_what_alloy_sends_live_reaches_its_mappings_once(relay: TestClient, live: list[Capture]) -> None:
    for item in live:
        check_relay(relay, item.step.name, item.request.body)


@pytest.mark.slow(seconds=15)
def test_how_the_web_sdk_sends_events_and_the_ecid(live: list[Capture]) -> None:
    """What docs/http.md and docs/mapping.md say about the Web SDK's bodies."""
    by_name = {c.step.name: c.request for c in live}
    # `/interact`, or `/collect` for a beacon as the page unloads; always the batch shape
    assert {name: r.path for name, r in by_name.items()} == {
        "01-pageview-identified": "/ee/v1/interact",
        "02-cart-add": "/ee/v1/collect",
        "03-purchase": "/ee/v1/interact",
        "04-pageview-anonymous-legacy-cookie": "/ee/v1/interact",
        "05-pageview-anonymous": "/ee/v1/interact",
    }
    # a visitor's first request goes to Adobe's third-party id domain (alloy's default
    # thirdPartyCookiesEnabled), the others to the configured edgeDomain
    assert {name: r.host for name, r in by_name.items()} == {
        "01-pageview-identified": "adobedc.demdex.net",
        "02-cart-add": "edge.example",
        "03-purchase": "edge.example",
        "04-pageview-anonymous-legacy-cookie": "adobedc.demdex.net",
        "05-pageview-anonymous": "edge.example",
    }
    for request in by_name.values():
        assert set(request.payload) <= {"events", "xdm", "meta", "query"}
        [event] = request.payload["events"]
        assert "_id" not in event["xdm"]
        assert "ECID" not in event["xdm"].get("identityMap", {})
    # The request-level identity map holds an ECID only on the first request of a visitor who
    # has the older Visitor ID service's AMCV_ cookie ...
    request_maps = {name: r.payload.get("xdm", {}).get("identityMap") for name, r in by_name.items()}
    assert request_maps == {
        "01-pageview-identified": None,
        "02-cart-add": None,
        "03-purchase": None,
        "04-pageview-anonymous-legacy-cookie": {"ECID": [{"id": LEGACY_ECID}]},
        "05-pageview-anonymous": None,
    }
    # ... otherwise the ECID travels only inside Edge's identity cookie, in `meta.state`, from
    # a visitor's second request on
    cookies = {
        name: [e["key"] for e in r.payload["meta"]["state"].get("entries", [])] for name, r in by_name.items()
    }
    assert cookies == {
        "01-pageview-identified": [],
        "02-cart-add": [IDENTITY_COOKIE],
        "03-purchase": [IDENTITY_COOKIE],
        "04-pageview-anonymous-legacy-cookie": [],
        "05-pageview-anonymous": [IDENTITY_COOKIE],
    }
