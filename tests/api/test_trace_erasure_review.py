"""Trace and erasure at their edges: what Zendesk answers and what the data holds, against the
fake Zendesk."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from app.trace import VERIFY_WAIT
from tests.conftest import EXAMPLES, auth, zendesk_settings
from tests.fakes.http_fake import CannedResponse
from tests.fakes.zendesk import FakeZendesk

Client = Callable[..., TestClient]
ADMIN = "test-admin-token"
PURCHASE = json.loads((EXAMPLES / "purchase.json").read_bytes())
CRM_ID = "CRM-0987654321"  # the purchase's CRMID: an external_id, which no log pattern masks


def start(relay_client: Client, fake: FakeZendesk) -> TestClient:
    return relay_client(zendesk_settings(fake.base_url, relay_admin_token=ADMIN))


def ingest(client: TestClient, body: dict[str, object]) -> str:
    response = client.post("/v1/events?wait=10", content=json.dumps(body), headers=auth())
    [result] = response.json()["results"]
    return str(result["status"])


def test_an_erasure_by_external_id_writes_the_value_in_no_log_line(
    relay_client: Client, fake_zendesk: FakeZendesk, logs: io.StringIO
) -> None:
    client = start(relay_client, fake_zendesk)
    assert ingest(client, PURCHASE) == "delivered"
    logs.truncate(0)
    logs.seek(0)
    erase = {"identifiers": [{"type": "external_id", "value": CRM_ID}]}
    response = client.post("/v1/erasure", json=erase, headers=auth(ADMIN))
    assert response.status_code == 200, response.text
    assert response.json()["zendesk"]["profiles_deleted"]  # it did look the value up at Zendesk
    assert CRM_ID not in logs.getvalue()


def test_verify_of_an_event_at_the_end_of_time_is_null_not_a_500(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = start(relay_client, fake_zendesk)
    body = json.loads(json.dumps(PURCHASE))
    body["xdm"]["timestamp"] = "9999-12-31T23:59:59.999Z"  # valid RFC 3339, sent as it came
    ingest(client, body)
    response = client.get(f"/v1/trace/{body['xdm']['_id']}?verify=true", headers=auth(ADMIN))
    assert response.status_code == 200, response.text
    [traced] = response.json()["deliveries"]
    assert traced["verified"] is None


def test_a_429_on_a_verify_read_pauses_the_limiter(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = start(relay_client, fake_zendesk)
    assert ingest(client, PURCHASE) == "delivered"
    fake_zendesk.rate_limit, fake_zendesk.retry_after = 1, 30  # the send took the window's one request
    response = client.get(f"/v1/trace/{PURCHASE['xdm']['_id']}?verify=true", headers=auth(ADMIN))
    assert response.json()["deliveries"][0]["verified"] is None
    assert fake_zendesk.received[-1].status == 429
    limiter = client.app.state.relay.dispatcher.limiters["zendesk"]  # type: ignore[attr-defined]
    assert limiter.paused_until > time.monotonic()  # Zendesk asked for 30 s: nothing goes before


def test_an_erasure_during_an_attempt_leaves_no_profile_at_zendesk(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(
        zendesk_settings(
            fake_zendesk.base_url,
            relay_admin_token=ADMIN,
            relay_retry_base_seconds=0.05,
            relay_retry_cap_seconds=0.2,
        )
    )
    fake_zendesk.lose_requests(1)  # the first send's outcome is unknown: the next one reads back
    fake_zendesk.fail_reads(CannedResponse(500, "slow failure", delay=READ_DELAY), count=1)
    response = client.post("/v1/events?wait=0", content=json.dumps(PURCHASE), headers=auth())
    assert response.status_code in (200, 202), response.text
    assert _until(lambda: len(fake_zendesk.reads) == 1)  # the read-back is under way
    erase = {"identifiers": [{"type": "email", "value": "jane.smith@example.com"}]}
    report = client.post("/v1/erasure", json=erase, headers=auth(ADMIN)).json()
    assert report["relay"]["deliveries"] == 1  # the delivery in flight went
    _until(lambda: len(fake_zendesk.posts) >= 2, READ_DELAY + 5)  # a resend, if one comes
    time.sleep(0.5)  # whatever the attempt does after its read, it has done by now
    assert fake_zendesk.profiles == []  # nothing of Jane's reached Zendesk after the erasure


READ_DELAY = 2.0  # far longer than an erasure against the local fake takes


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_verify_that_zendesk_throttles_answers_null_for_the_rest_at_once(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(
        zendesk_settings(fake_zendesk.base_url, relay_admin_token=ADMIN, relay_idempotency_ttl=0.05)
    )
    for _ in range(3):  # the same event again once its idempotency key expired: three deliveries
        assert ingest(client, PURCHASE) == "delivered"
        time.sleep(0.1)
    fake_zendesk.rate_limit, fake_zendesk.retry_after = 3, 60  # the sends took the window
    started = time.monotonic()
    response = client.get(f"/v1/trace/{PURCHASE['xdm']['_id']}?verify=true", headers=auth(ADMIN))
    took = time.monotonic() - started
    assert [d["verified"] for d in response.json()["deliveries"]] == [None, None, None]
    assert len(fake_zendesk.reads) == 1  # throttled once, asked no more
    assert took < VERIFY_WAIT  # not a wait for a slot per delivery while Zendesk said wait 60 s
