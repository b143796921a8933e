"""Effectively once to Zendesk: a send whose outcome is unknown is looked for before it is sent
again (app.delivery.readback), against the fake Zendesk's read endpoints and fault modes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES, auth, zendesk_settings
from tests.fakes.zendesk import ERROR_BODIES, FakeZendesk
from tests.load.loadgen import purchase

Client = Callable[..., TestClient]
PURCHASE = (EXAMPLES / "purchase.json").read_bytes()
# a read timeout that a loaded machine's quick answer still meets, far under the slow answer
SLOW = {"zendesk_read_timeout": 1.5, "relay_retry_base_seconds": 0.05, "relay_retry_cap_seconds": 0.2}
SLOW_ANSWER = 5.0


def post(client: TestClient, body: bytes, wait: float = 20) -> dict[str, Any]:
    response = client.post(f"/v1/events?wait={wait}", content=body, headers=auth())
    [result] = response.json()["results"]
    return dict(result)


def delivery(client: TestClient, delivery_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/deliveries/{delivery_id}", headers=auth()).json())


def readbacks(client: TestClient, result: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("aep_relay_readbacks_total{") and f'result="{result}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_slow_202_that_outlives_the_read_timeout_is_verified_not_resent(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.slow_accept(count=1, delay=SLOW_ANSWER)
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **SLOW))
    result = post(client, PURCHASE)
    assert (result["status"], result["verified"]) == ("delivered", True)
    [stored] = fake_zendesk.stored_events
    assert result["zendesk_event_id"] == stored.id
    assert len(fake_zendesk.posts) == 1  # never sent again
    assert fake_zendesk.duplicate_count() == 0
    sent = delivery(client, result["delivery_id"])
    assert sent["attempts"] == 2
    assert sent["response"] == {"verified": True, "zendesk_event_id": stored.id}
    assert readbacks(client, "verified") == 1


def test_a_request_lost_before_zendesk_stored_it_is_resent(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **SLOW))
    assert post(client, purchase("before"))["status"] == "delivered"  # the profile exists, with one event
    fake_zendesk.lose_requests(1)
    result = post(client, purchase("lost"))
    assert result["status"] == "delivered"
    assert "verified" not in result
    assert [r.status for r in fake_zendesk.posts] == [202, None, 202]
    assert [r.status for r in fake_zendesk.reads] == [200]  # found the other event only
    assert len(fake_zendesk.stored_events) == 2
    assert fake_zendesk.duplicate_count() == 0
    assert readbacks(client, "resent") == 1


def test_a_read_back_that_fails_falls_back_to_resending(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.slow_accept(count=1, delay=SLOW_ANSWER)
    fake_zendesk.fail_reads(500)
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **SLOW))
    result = post(client, PURCHASE)
    assert result["status"] == "delivered"
    assert len(fake_zendesk.posts) == 2
    # at least once is the floor: it could not tell, so Zendesk has it twice
    assert fake_zendesk.duplicate_count() == 1
    assert readbacks(client, "failed") == 1


def test_a_5xx_leaves_the_outcome_unknown_until_delivered(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.enqueue(ERROR_BODIES["plain_text_500"], ERROR_BODIES["errors_array_400"])
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **SLOW))
    result = post(client, PURCHASE)
    assert result["status"] == "dead"
    letter = delivery(client, result["delivery_id"])
    # the 400 is definite, but the 500 before it may have been stored: the mark stays
    assert letter["last_problem"]["code"] == "destination_rejected"
    assert letter["last_problem"]["outcome_unknown"] is True


def test_created_at_is_stamped_at_ingest_and_sent_the_same_by_every_attempt(
    relay_client: Client, fake_zendesk: FakeZendesk, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "no-created-at.yaml").write_text(
        "name: no-created-at\n"
        "destination: zendesk\n"
        "event_id: xdm._id\n"
        "body:\n"
        "  profile:\n"
        "    source: shop\n"
        "    type: customer\n"
        "    identifiers: [{type: email, value: \"{{ lower(primary_identity(xdm.identityMap, 'email')) }}\"}]\n"
        "  event:\n"
        "    source: shop\n"
        "    type: order_completed\n"
        '    properties: {order_id: "{{ xdm.commerce.order.purchaseID }}"}\n'
    )
    fake_zendesk.enqueue(ERROR_BODIES["plain_text_503"])
    settings = zendesk_settings(fake_zendesk.base_url, relay_mappings_dir=mappings, **SLOW)
    client = relay_client(settings)
    result = post(client, PURCHASE)
    assert result["status"] == "delivered"
    first, second = (r.body["event"]["created_at"] for r in fake_zendesk.posts)
    assert first == second and first.endswith("Z")
    assert fake_zendesk.reads[0].status == 404  # looked for it (no such profile yet), then sent it


def test_a_read_back_follows_cursor_pages_to_the_event(relay_client: Client) -> None:
    with FakeZendesk(max_page_size=2) as fake:  # Zendesk's pages may be shorter than asked
        client = relay_client(zendesk_settings(fake.base_url, **SLOW))
        for n in range(5):  # the same person, source, type and created_at: one window
            assert post(client, purchase(f"page-{n}"))["status"] == "delivered"
        fake.slow_accept(count=1, delay=SLOW_ANSWER)
        result = post(client, purchase("page-last"))
        assert (result["status"], result["verified"]) == ("delivered", True)
        pages = fake.reads
        assert len(pages) == 3  # six events, two a page, the sixth on the last
        assert "page%5Bafter%5D=" in pages[-1].query
        assert fake.duplicate_count() == 0


def test_read_backs_take_rate_limit_slots(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    """At 60 a minute (one slot a second), a send, a read-back and a resend of one event
    take three slots: the resend goes at least a slot after the read."""
    fake_zendesk.lose_requests(1)
    settings = zendesk_settings(fake_zendesk.base_url, zendesk_rate_limit_per_minute=60, **SLOW)
    client = relay_client(settings)
    assert post(client, PURCHASE)["status"] == "delivered"
    [read] = fake_zendesk.reads
    first, resend = fake_zendesk.posts
    assert resend.received_at - read.received_at >= 0.5  # a slot is 1/0.98 s; generous
    assert read.received_at - first.received_at >= 0.5
