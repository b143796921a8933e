"""Durable delivery in-process: 202 then background sends, retries, dead letters, idempotency,
backpressure. The fake Zendesk is a real server on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES, auth, zendesk_settings
from tests.fakes.zendesk import ERROR_BODIES, CannedResponse, FakeZendesk
from tests.load.loadgen import purchase, wait_until

Client = Callable[..., TestClient]
PURCHASE = (EXAMPLES / "purchase.json").read_bytes()
FAST_RETRIES = {"relay_retry_base_seconds": 0.05, "relay_retry_cap_seconds": 0.2}


def post(client: TestClient, body: bytes, query: str = "") -> Any:
    return client.post(f"/v1/events{query}", content=body, headers={**auth(), "Content-Type": "text/plain"})


def test_ingest_answers_202_queued_and_delivers_in_the_background(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    response = post(client, PURCHASE)
    assert response.status_code == 202
    [result] = response.json()["results"]
    assert result["status"] == "queued"
    assert wait_until(lambda: len(fake_zendesk.accepted) == 1, 10)
    assert wait_until(
        lambda: (
            client.get(f"/v1/deliveries/{result['delivery_id']}", headers=auth()).json()["status"]
            == "delivered"
        ),
        5,
    )
    delivery = client.get(f"/v1/deliveries/{result['delivery_id']}", headers=auth()).json()
    assert delivery["attempts"] == 1
    assert delivery["response"]["profile_id"]


def test_prefer_wait_header_returns_the_outcome(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    response = client.post("/v1/events", content=PURCHASE, headers={**auth(), "Prefer": "wait=10"})
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=10"
    assert response.json()["results"][0]["status"] == "delivered"


def test_wait_runs_out_and_says_queued(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(CannedResponse(202, {"status": "received"}, delay=3.0))
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    response = post(client, PURCHASE, "?wait=0.5")
    assert response.status_code == 202
    assert response.json()["results"][0]["status"] == "queued"


def test_wait_is_capped_at_30_seconds_and_must_be_a_number(relay_client: Client) -> None:
    client = relay_client()
    response = post(client, PURCHASE, "?wait=120")
    assert response.headers["preference-applied"] == "wait=30"
    bad = post(client, PURCHASE, "?wait=soon")
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_request"


def test_retry_after_is_honoured(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(CannedResponse(429, {"error": [{"code": "TooManyRequests"}]}, {"Retry-After": "3"}))
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    assert post(client, PURCHASE).status_code == 202
    assert wait_until(lambda: len(fake_zendesk.accepted) == 1, 15)
    first, second = fake_zendesk.received[:2]
    # Retry-After counts from the response: measured from when the 429 was written, so a slow
    # fake (a loaded machine) does not add its own handling time to the relay's wait
    assert first.answered_at is not None
    gap = second.received_at - first.answered_at
    # Never before Retry-After (the backoff alone would have said under 1 s). The upper bound leaves
    # room for a loaded machine: the retry came 0.46 s late on two busy cores.
    assert 2.95 <= gap <= 5.0, f"retried after {gap:.2f} s, Retry-After said 3 s"


def test_a_retry_after_of_a_day_waits_an_hour_at_most(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.enqueue(CannedResponse(503, {"error": "down"}, {"Retry-After": "86400"}))
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    [result] = post(client, PURCHASE).json()["results"]

    def delivery() -> Any:
        return client.get(f"/v1/deliveries/{result['delivery_id']}", headers=auth()).json()

    # the retry recorded (a lease alone counts the attempt, due again at its expiry)
    assert wait_until(lambda: "last_problem" in delivery(), 10)
    assert delivery()["attempts"] == 1
    assert 3500 <= delivery()["next_attempt_at"] - time.time() <= 3600


def test_retryable_failures_are_retried_until_delivered(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.enqueue(ERROR_BODIES["plain_text_500"], CannedResponse(502), CannedResponse(408))
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **FAST_RETRIES))
    response = post(client, PURCHASE, "?wait=10")
    [result] = response.json()["results"]
    assert result["status"] == "delivered"
    delivery = client.get(f"/v1/deliveries/{result['delivery_id']}", headers=auth()).json()
    assert delivery["attempts"] == 4
    assert [r.status for r in fake_zendesk.posts] == [500, 502, 408, 202]
    # after a 5xx the outcome is unknown until delivered: every resend looked first
    assert [r.status for r in fake_zendesk.reads] == [404, 404, 404]


def test_timeouts_are_retried(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(CannedResponse(202, {"status": "received"}, delay=8.0))
    # a read timeout that a loaded machine's quick answer still meets, far under the slow one
    settings = zendesk_settings(fake_zendesk.base_url, zendesk_read_timeout=2.0, **FAST_RETRIES)
    response = post(relay_client(settings), PURCHASE, "?wait=10")
    assert response.json()["results"][0]["status"] == "delivered"
    assert len(fake_zendesk.accepted) == 1  # the slow one was cut off unanswered


def test_a_4xx_goes_to_the_dead_letters_at_once(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.enqueue(ERROR_BODIES["errors_array_400"])
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **FAST_RETRIES))
    response = post(client, PURCHASE, "?wait=10")
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "destination_rejected"
    assert problem["upstream"]["status"] == 400
    [result] = problem["results"]
    assert result["status"] == "dead"
    delivery = client.get(f"/v1/deliveries/{result['delivery_id']}", headers=auth()).json()
    assert (delivery["status"], delivery["attempts"]) == ("dead", 1)
    assert delivery["last_problem"]["code"] == "destination_rejected"
    assert len(fake_zendesk.received) == 1


def test_a_409_is_final_after_one_attempt(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    """A conflict does not go away by waiting: like every 4xx but 408 and 429 it is not retried."""
    fake_zendesk.enqueue(CannedResponse(409))
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **FAST_RETRIES))
    response = post(client, PURCHASE, "?wait=10")
    problem = response.json()
    assert response.status_code == 409
    assert (problem["code"], problem["retryable"]) == ("destination_conflict", False)
    [result] = problem["results"]
    assert result["status"] == "dead"
    delivery = client.get(f"/v1/deliveries/{result['delivery_id']}", headers=auth()).json()
    assert (delivery["status"], delivery["attempts"]) == ("dead", 1)
    assert delivery["last_problem"]["retryable"] is False
    assert len(fake_zendesk.received) == 1


def test_retries_stop_after_max_attempts(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.set_default(CannedResponse(503, {"error": "down"}))
    settings = zendesk_settings(fake_zendesk.base_url, relay_max_attempts=3, **FAST_RETRIES)
    response = post(relay_client(settings), PURCHASE, "?wait=10")
    [result] = response.json()["results"]
    assert result["status"] == "dead"
    assert result["problem"]["code"] == "destination_unavailable"
    assert len(fake_zendesk.posts) == 3
    # a 503 may come after Zendesk stored the event: each resend looked for it first
    assert [r.status for r in fake_zendesk.reads] == [404, 404]


def test_the_same_event_id_is_sent_once(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    answers = [post(client, PURCHASE, "?wait=10").json()["results"][0] for _ in range(5)]
    assert [a["status"] for a in answers] == ["delivered"] + ["duplicate"] * 4
    assert {a["delivery_id"] for a in answers} == {answers[0]["delivery_id"]}
    assert len(fake_zendesk.received) == 1


def test_backpressure_refuses_with_503_and_loses_nothing(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.stop()  # Zendesk is down: deliveries pile up
    # its circuit opens while Zendesk is down: probe often, so it is seen back within seconds
    settings = zendesk_settings(
        fake_zendesk.base_url, relay_max_pending=5, relay_circuit_probe_seconds=1.0, **FAST_RETRIES
    )
    client = relay_client(settings)
    acked, refused = [], []
    for index in range(10):
        response = post(client, purchase(f"bp-{index}"))
        if response.status_code == 202:
            acked.append(f"bp-{index}")
        else:
            assert response.status_code == 503
            assert response.json()["code"] == "overloaded"
            assert int(response.headers["retry-after"]) >= 1
            refused.append(index)
    assert len(acked) == 5 and len(refused) == 5
    batch = {"events": [json.loads(purchase("bp-x1")), json.loads(purchase("bp-x2"))]}
    assert post(client, json.dumps(batch).encode()).status_code == 503  # nothing partial either
    fake_zendesk.start()
    assert wait_until(lambda: len(fake_zendesk.accepted) >= 5, 20)
    sent = {r.body["event"]["properties"]["order_id"] for r in fake_zendesk.accepted}
    assert sent == set(acked)


def by_user_mapping(folder: Path, user_id: str) -> Path:
    """A user_events mapping with the names Zendesk allows (`Zendesk` is not `zendesk`) and a
    repeated identifier (Adobe's extension asks for unique ones; Zendesk's pages do not)."""
    (folder / "by-user.yaml").write_text(
        "destination: zendesk\n"
        f"endpoint: {{name: user_events, user_id: '{user_id}'}}\n"
        "body:\n"
        "  profile: {source: Zendesk, type: customer, identifiers: [{type: external_id, value: c-1},"
        " {type: external_id, value: c-1}]}\n"
        "  event: {source: ZENDESK, type: order_completed, properties: {total: 1}}\n"
    )
    return folder


def test_a_recommendation_not_followed_is_sent_with_a_warning(
    relay_client: Client, fake_zendesk: FakeZendesk, tmp_path: Path
) -> None:
    settings = zendesk_settings(fake_zendesk.base_url, relay_mappings_dir=by_user_mapping(tmp_path, "12345"))
    [result] = post(relay_client(settings), PURCHASE, "?wait=10").json()["results"]
    assert result["status"] == "delivered", result
    assert [w["path"] for w in result["warnings"]] == ["profile.identifiers[1]"]
    [received] = fake_zendesk.accepted
    assert received.path == "/api/v2/users/12345/events"


def test_a_user_id_zendesk_would_refuse_is_not_sent(
    relay_client: Client, fake_zendesk: FakeZendesk, tmp_path: Path
) -> None:
    settings = zendesk_settings(
        fake_zendesk.base_url, relay_mappings_dir=by_user_mapping(tmp_path, "u-12345")
    )
    response = post(relay_client(settings), PURCHASE, "?wait=10")
    problem = response.json()
    assert (response.status_code, problem["code"]) == (422, "validation_failed")
    assert [v["path"] for v in problem["results"][0]["problem"]["violations"]] == ["endpoint.user_id"]
    assert fake_zendesk.received == []
