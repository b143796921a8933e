"""GET /metrics after a scripted run against the fake Zendesk: the counters add up, and no
label ever carries an event id, an e-mail or a request id."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import EXAMPLES, FIXTURES, auth, make_settings, zendesk_settings
from tests.fakes.zendesk import ERROR_BODIES, CannedResponse, FakeZendesk
from tests.load.loadgen import purchase, wait_until

Client = Callable[..., TestClient]
Samples = dict[str, dict[frozenset[tuple[str, str]], float]]
FAST_RETRIES = {"relay_retry_base_seconds": 0.05, "relay_retry_cap_seconds": 0.2, "relay_max_attempts": 5}


def scrape(client: TestClient, accept: str | None = None) -> Samples:
    """Every sample of /metrics: name -> {labels -> value}."""
    response = client.get("/metrics", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name][frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= key)


def post(client: TestClient, body: bytes, query: str = "", **headers: str) -> Any:
    return client.post(f"/v1/events{query}", content=body, headers={**auth(), **headers})


def test_counters_add_up_after_a_scripted_run(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **FAST_RETRIES))
    # dead at once: Zendesk refuses the first purchase
    fake_zendesk.enqueue(ERROR_BODIES["errors_array_400"])
    assert post(client, purchase("m-dead"), "?wait=10").json()["results"][0]["status"] == "dead"
    # delivered on the second attempt after a 500
    fake_zendesk.enqueue(ERROR_BODIES["plain_text_500"])
    assert post(client, purchase("m-retried"), "?wait=10").json()["results"][0]["status"] == "delivered"
    # a batch of two purchases, both delivered, plus one anonymous page view (ignored)
    pageview = json.loads((EXAMPLES / "pageview-anonymous.json").read_bytes())
    batch = {"events": [json.loads(purchase("m-b1")), json.loads(purchase("m-b2")), pageview]}
    statuses = [r["status"] for r in post(client, json.dumps(batch).encode(), "?wait=10").json()["results"]]
    assert sorted(statuses) == ["delivered", "delivered", "ignored"]
    # the same event again: a duplicate, not stored twice
    assert post(client, purchase("m-b1")).json()["results"][0]["status"] == "duplicate"
    # ignored single, rejected (no identity), and two request-level problems
    assert post(client, (EXAMPLES / "pageview-anonymous.json").read_bytes()).status_code == 200
    assert post(client, (FIXTURES / "purchase-without-identity.json").read_bytes()).status_code == 422
    assert post(client, b"{not json").status_code == 400
    assert client.post("/v1/events", content=purchase("m-noauth")).status_code == 401
    # Zendesk goes down for long: one delivery waits after its first attempt (Retry-After: an
    # hour), the next one waits behind the paused rate limiter without an attempt
    fake_zendesk.set_default(CannedResponse(503, {"error": "down"}, {"Retry-After": "3600"}))
    first = post(client, purchase("m-pending-1")).json()["results"][0]["delivery_id"]

    def attempts(delivery_id: str) -> tuple[str, int]:
        delivery = client.get(f"/v1/deliveries/{delivery_id}", headers=auth()).json()
        return delivery["status"], delivery["attempts"]

    assert wait_until(lambda: attempts(first) == ("pending", 1), 10)
    second = post(client, purchase("m-pending-2")).json()["results"][0]["delivery_id"]
    assert attempts(second) == ("pending", 0)

    m = scrape(client)
    received = value(m, "aep_relay_events_received_total")
    assert received == 10  # 1 + 1 + 3 (batch) + 1 (duplicate) + 1 + 1 + 2 (pending); failed requests had none
    assert value(m, "aep_relay_events_received_total", shape="batch") == 3
    matched = value(m, "aep_relay_events_routed_total", result="matched")
    ignored = value(m, "aep_relay_events_routed_total", result="ignored")
    rejected = value(m, "aep_relay_events_routed_total", result="rejected")
    assert (matched, ignored, rejected) == (6 + 1, 2, 1)  # the duplicate matched too
    assert received == matched + ignored + rejected
    assert value(m, "aep_relay_mapping_events_total", mapping="order-completed", result="matched") == 7
    assert (
        value(m, "aep_relay_mapping_events_total", mapping="order-completed", result="validation_failed") == 1
    )
    assert value(m, "aep_relay_ingest_problems_total", code="invalid_json") == 1
    assert value(m, "aep_relay_ingest_problems_total", code="unauthorized") == 1
    assert value(m, "aep_relay_ingest_duration_seconds_count") == 10  # every ingest request

    stored = value(m, "aep_relay_deliveries_accepted_total", destination="zendesk", result="stored")
    delivered = value(m, "aep_relay_deliveries_delivered_total", destination="zendesk")
    dead = value(m, "aep_relay_dead_letters_total", destination="zendesk")
    waiting = value(m, "aep_relay_store_pending_deliveries", destination="zendesk")
    assert (stored, delivered, dead, waiting) == (6, 3, 1, 2)
    assert delivered + dead + waiting == stored
    assert value(m, "aep_relay_deliveries_accepted_total", result="duplicate") == 1
    assert value(m, "aep_relay_dead_letters_total", code="destination_rejected") == 1
    assert value(m, "aep_relay_store_dead_letters") == 1
    assert value(m, "aep_relay_store_oldest_pending_age_seconds", destination="zendesk") >= 0

    sent = value(m, "aep_relay_delivery_attempts_total", destination="zendesk")
    assert sent == len(fake_zendesk.posts) == 6  # dead 1, retried 2, batch 2, pending 1
    # the 500 left the outcome unknown: its resend looked for the event first, in vain (the
    # 503's resend waits an hour)
    assert value(m, "aep_relay_readbacks_total", destination="zendesk", result="resent") == 1
    assert len(fake_zendesk.reads) == 1
    assert value(m, "aep_relay_delivery_attempts_total", outcome="delivered", code="ok") == 3
    assert value(m, "aep_relay_delivery_attempts_total", outcome="retry", code="destination_unavailable") == 2
    assert value(m, "aep_relay_delivery_attempts_total", outcome="dead", code="destination_rejected") == 1
    assert value(m, "aep_relay_upstream_duration_seconds_count", destination="zendesk") == sent
    assert value(m, "aep_relay_ratelimit_wait_seconds_count", destination="zendesk") == sent
    assert value(m, "aep_relay_ratelimit_rate_per_minute", destination="zendesk") > 0
    # rendered: 7 matched purchases and the one without identity (rendered, then refused)
    assert value(m, "aep_relay_mapping_render_duration_seconds_count", mapping="order-completed") == 8
    assert value(m, "aep_relay_mappings_loaded") == 3


def test_replayed_dead_letters_are_counted(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    settings = zendesk_settings(fake_zendesk.base_url, relay_admin_token="admin-token-1", **FAST_RETRIES)
    client = relay_client(settings)
    fake_zendesk.enqueue(ERROR_BODIES["errors_array_400"])
    [result] = post(client, purchase("m-replay"), "?wait=10").json()["results"]
    assert result["status"] == "dead"
    admin = {"Authorization": "Bearer admin-token-1"}
    assert client.post(f"/v1/dead-letters/{result['delivery_id']}/replay", headers=admin).status_code == 202
    assert wait_until(lambda: len(fake_zendesk.accepted) == 1, 10)
    assert wait_until(lambda: value(scrape(client), "aep_relay_deliveries_delivered_total") == 1, 10)
    m = scrape(client)
    # with replays: delivered + dead + pending = stored + replayed
    assert value(m, "aep_relay_dead_letters_replayed_total") == 1
    assert value(m, "aep_relay_dead_letters_total") == 1
    assert value(m, "aep_relay_deliveries_accepted_total", result="stored") == 1


LEAKS = ("evt-unique-7f3a", "someone.unique@example.org", "req-unique-42", "intruder@example.org")
ALLOWED_LABELS = {"shape", "result", "mapping", "code", "destination", "outcome", "state", "form"}


def test_no_label_carries_an_event_id_email_or_request_id(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    body = json.loads(purchase("evt-unique-7f3a"))
    body["xdm"]["identityMap"]["Email"][0]["id"] = "someone.unique@example.org"
    post(client, json.dumps(body).encode(), "?wait=10", **{"X-Request-Id": "req-unique-42"})
    bare = json.loads((FIXTURES / "bare-identified-pageview.json").read_bytes())
    bare["_id"] = "evt-unique-7f3a-2"
    post(client, json.dumps(bare).encode(), "?wait=10")
    # a mapping name taken from the URL must not become a label either
    assert client.post("/v1/events/intruder@example.org", content=b"{}", headers=auth()).status_code == 404
    text = client.get("/metrics").text
    m = scrape(client)
    for leak in LEAKS:
        assert leak not in text
    labels: dict[str, set[str]] = defaultdict(set)
    for series in m.values():
        for key in series:
            for name, label_value in key:
                labels[name].add(label_value)
    labels.pop("le", None)  # histogram buckets
    assert set(labels) <= ALLOWED_LABELS
    assert labels["destination"] <= {"zendesk", "yotpo"}
    assert labels["shape"] <= {"single", "wrapped", "batch", "bare"}
    assert labels["state"] <= {"closed", "open", "half_open"}
    assert labels["form"] <= {"method_path", "body_only"}
    assert labels["mapping"] <= {"order-completed", "product-added-to-cart", "identified-page-view"}
    assert "mapping_not_found" in labels["code"]


def test_metrics_speak_openmetrics_when_asked(relay_client: Client) -> None:
    client = relay_client(make_settings())
    plain = client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE aep_relay_events_received_total counter" in plain.text
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
