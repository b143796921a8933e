"""One JSON log line per request on every route and one per delivery attempt, carrying the
caller's ``X-Request-Id`` from the ingest request into the delivery's attempt lines."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import auth, log_lines, zendesk_settings
from tests.fakes.zendesk import ERROR_BODIES, FakeZendesk
from tests.load.loadgen import purchase

Client = Callable[..., TestClient]
FAST_RETRIES = {"relay_retry_base_seconds": 0.05, "relay_retry_cap_seconds": 0.2}


def test_one_line_per_request_on_every_route_with_the_callers_request_id(
    relay_client: Client, logs: io.StringIO
) -> None:
    client = relay_client()
    calls = [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/v1/deliveries/nope", 404),
        ("GET", "/no-such-route", 404),
        ("POST", "/v1/events", 400),  # an empty body
        ("POST", "/v1/preview", 400),
    ]
    for index, (method, path, status) in enumerate(calls):
        response = client.request(method, path, headers={**auth(), "X-Request-Id": f"caller-{index}"})
        assert response.status_code == status, path
        assert response.headers["x-request-id"] == f"caller-{index}"
    lines = [line for line in log_lines(logs) if line["event"] == "request"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == calls
    assert [line["request_id"] for line in lines] == [f"caller-{i}" for i in range(len(calls))]
    assert all(isinstance(line["latency_ms"], float | int) for line in lines)


def test_a_request_without_an_id_gets_a_new_one(relay_client: Client, logs: io.StringIO) -> None:
    response = relay_client().get("/healthz")
    [line] = [line for line in log_lines(logs) if line["event"] == "request"]
    assert line["request_id"] == response.headers["x-request-id"]
    assert len(line["request_id"]) >= 16


def test_each_delivery_attempt_logs_one_line_with_the_ingest_request_id(
    relay_client: Client, fake_zendesk: FakeZendesk, logs: io.StringIO
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url, **FAST_RETRIES))
    fake_zendesk.enqueue(ERROR_BODIES["plain_text_500"])
    response = client.post(
        "/v1/events?wait=10", content=purchase("log-order-1"), headers={**auth(), "X-Request-Id": "adobe-77"}
    )
    [result] = response.json()["results"]
    assert result["status"] == "delivered"
    attempts = [line for line in log_lines(logs) if line["event"] == "delivery"]
    assert [(a["attempt"], a["outcome"], a["code"], a["upstream_status"]) for a in attempts] == [
        (1, "retry", "destination_unavailable", 500),
        (2, "delivered", "ok", 202),
    ]
    for line in attempts:
        assert line["request_id"] == "adobe-77"
        assert (line["destination"], line["mapping"]) == ("zendesk", "order-completed")
        assert line["delivery_id"] == result["delivery_id"]
        assert line["event_id"] == "log-order-1"
        assert line["latency_ms"] >= 0
        assert "body" not in line and "request" not in line
    # never the body: the order's items and the buyer's name appear in no log line
    assert "CANON-429" not in logs.getvalue() and "Jane Smith" not in logs.getvalue()


def test_an_address_in_an_upstream_path_is_masked_percent_encoded_too(
    relay_client: Client, fake_zendesk: FakeZendesk, logs: io.StringIO, tmp_path: Path
) -> None:
    """A profile id rendered from the e-mail identity is escaped into the path (`%40`); a
    user id must be digits, so an address never gets there."""
    (tmp_path / "by-profile.yaml").write_text(
        "destination: zendesk\n"
        "endpoint: {name: profile_events, profile_id: \"{{ primary_identity(xdm.identityMap, 'email') }}\"}\n"
        "body:\n"
        "  event: {source: shop, type: order_completed, properties: {}}\n"
    )
    client = relay_client(zendesk_settings(fake_zendesk.base_url, relay_mappings_dir=tmp_path))
    client.post("/v1/events?wait=10", content=purchase("log-path-1"), headers=auth())
    [call] = [line for line in log_lines(logs) if line["event"] == "upstream_call"]
    assert call["path"] == "/api/v2/user_profiles/***/events"
    assert [r.path for r in fake_zendesk.received] == [
        "/api/v2/user_profiles/Jane.Smith%40example.com/events"
    ]
    for leaked in ("Jane.Smith", "jane.smith", "%40example.com"):
        assert leaked not in logs.getvalue()


def test_a_long_path_is_cut_in_its_log_line(relay_client: Client, logs: io.StringIO) -> None:
    client = relay_client()
    assert client.get("/" + "a" * 5000).status_code == 404
    assert client.post("/v1/events/" + "m" * 5000, headers=auth(), content=b"{}").status_code == 404
    lines = [line for line in log_lines(logs) if line["event"] == "request"]
    assert [len(line["path"]) < 1100 for line in lines] == [True, True]
    assert lines[0]["path"].endswith("(3977 more characters)")
