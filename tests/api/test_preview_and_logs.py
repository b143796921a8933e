"""POST /v1/preview, start-up refusals, and what the logs must never contain."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.logs import Redactor
from app.mapping.loader import MappingLoadError
from app.settings import ConfigError
from tests.conftest import EXAMPLES, TOKEN, auth, log_lines, make_settings, zendesk_settings
from tests.fakes.zendesk import CannedResponse, FakeZendesk

Client = Callable[..., TestClient]
PURCHASE = (EXAMPLES / "purchase.json").read_bytes()


def test_preview_renders_and_validates_without_sending(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    response = client.post("/v1/preview", content=PURCHASE, headers=auth())
    assert response.status_code == 200
    doc = response.json()
    assert (doc["shape"], doc["events"]) == ("single", 1)
    [result] = doc["results"]
    assert result["status"] == "dry_run"
    assert result["body"]["event"]["type"] == "order_completed"
    assert fake_zendesk.received == []


def test_preview_of_one_mapping_shows_violations_with_paths(relay_client: Client) -> None:
    client = relay_client()
    payload = {"xdm": {"eventType": "web.webpagedetails.pageViews"}}
    response = client.post("/v1/preview?mapping=identified-page-view", json=payload, headers=auth())
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["body"]["profile"]["identifiers"] == []
    assert result["problem"]["violations"][0]["path"] == "profile.identifiers"
    assert client.post("/v1/preview?mapping=nope", json=payload, headers=auth()).status_code == 404


def test_preview_needs_a_token(relay_client: Client) -> None:
    assert relay_client().post("/v1/preview", content=PURCHASE).status_code == 401


def test_refuses_to_start_without_tokens() -> None:
    with pytest.raises(ConfigError, match="RELAY_INGEST_TOKENS"):
        create_app(make_settings(relay_ingest_tokens=[]))
    create_app(make_settings(relay_ingest_tokens=[], relay_allow_unauthenticated=True))


def test_open_relay_accepts_events_and_says_so(relay_client: Client, logs: io.StringIO) -> None:
    client = relay_client(make_settings(relay_ingest_tokens=[], relay_allow_unauthenticated=True))
    assert client.post("/v1/events", content=PURCHASE).status_code == 200
    assert any(line["event"] == "running_open" for line in log_lines(logs))


def test_a_deprecated_setting_is_named_at_start_up(relay_client: Client, logs: io.StringIO) -> None:
    relay_client(make_settings(yotpo_access_token="new-name-token"))
    assert not [line for line in log_lines(logs) if line["event"] == "deprecated_setting"]
    relay_client(make_settings(yotpo_api_key="old-name-token"))
    [line] = [line for line in log_lines(logs) if line["event"] == "deprecated_setting"]
    assert (line["level"], line["setting"], line["use"]) == ("warning", "YOTPO_API_KEY", "YOTPO_ACCESS_TOKEN")
    assert "old-name-token" not in logs.getvalue()


def test_broken_mapping_stops_start_up_with_its_line(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "bad.yaml").write_text(
        "destination: zendesk\nbody:\n  event:\n    type: '{{ xdm.eventType == }}'\n"
    )
    with pytest.raises(MappingLoadError) as caught:
        create_app(make_settings(relay_mappings_dir=folder))
    assert str(caught.value).startswith(f"{folder / 'bad.yaml'}:4: ")


def test_logs_never_show_emails_or_tokens(
    relay_client: Client, fake_zendesk: FakeZendesk, logs: io.StringIO
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    # a rejected event whose problem text and upstream body carry the e-mail and the token
    fake_zendesk.enqueue(
        CannedResponse(
            400, {"errors": [{"code": "Invalid", "title": "jane.smith@example.com is not allowed"}]}
        )
    )
    client.post("/v1/events?wait=5", content=PURCHASE, headers=auth())
    client.post("/v1/events", content=PURCHASE, headers={"Authorization": "Bearer jane.smith@example.com"})
    client.post("/v1/events?wait=5", content=PURCHASE, headers=auth())
    text = logs.getvalue()
    lines = log_lines(logs)
    assert [line["status"] for line in lines if line["event"] == "request"] == [422, 401, 200]  # one each
    assert any(line["event"] == "upstream_call" for line in lines)
    assert any(line["event"] == "delivery" and line.get("code") == "destination_rejected" for line in lines)
    assert all(line.get("request_id") for line in lines if line["event"] in ("request", "upstream_call"))
    for secret in ("jane.smith@example.com", "Jane.Smith@example.com", TOKEN, "test-api-token"):
        assert secret not in text


def test_redactor_masks_nested_values_and_exception_text() -> None:
    redactor = Redactor(secrets=["s3cret-value"])
    event = {
        "event": "x",
        "nested": {"list": ["mail bob@example.org now", {"auth": "Bearer abc.def-123"}]},
        "exc": ValueError("leaked s3cret-value and +1 (415) 555-0100"),
    }
    out = redactor(None, "info", event)
    dumped = json.dumps(out)
    for leaked in ("bob@example.org", "abc.def-123", "s3cret-value", "555-0100"):
        assert leaked not in dumped
    assert "Bearer ***" in dumped


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_events_full_of_personal_data_and_tokens_leave_none_in_the_logs(
    relay_client: Client, fake_zendesk: FakeZendesk, fmt: str
) -> None:
    from app.logs import configure_logging
    from app.signing import sign

    secret, phone, email = "signing-secret-xyz", "+1 415 555 0100", "pat.doe@example.net"
    buffer = io.StringIO()
    settings = zendesk_settings(fake_zendesk.base_url, relay_signing_secrets=[secret])
    configure_logging("debug", fmt, secrets=settings.secret_values(), stream=buffer)
    client = relay_client(settings)
    # Zendesk echoes everything back in its error, so it reaches the delivery and upstream lines
    fake_zendesk.set_default(
        CannedResponse(400, {"error": f"{email} / {phone} / Bearer leaked-bearer-1 / {TOKEN} / {secret}"})
    )
    event = json.loads(PURCHASE)
    event["xdm"]["identityMap"]["Phone"] = [{"id": phone}]
    event["data"] = {"note": f"call {phone} or mail {email}, token={TOKEN}"}
    body = json.dumps({"events": [event, event | {"xdm": event["xdm"] | {"_id": "second"}}]}).encode()
    stamp = str(int(__import__("time").time()))
    headers = {
        "X-Request-Id": f"req-{email}",
        "X-Relay-Timestamp": stamp,
        "X-Relay-Signature": sign(secret, stamp, body, method="POST", path="/v1/events"),
    }
    assert client.post("/v1/events?wait=5", content=body, headers=headers).status_code == 422
    client.post("/v1/events", content=body, headers={"Authorization": f"Bearer {email}"})
    client.post("/v1/events?wait=5", content=body, headers={**auth(), "Authorization": f"Basic {TOKEN}"})
    client.get("/v1/dead-letters", headers={"Authorization": f"Bearer {TOKEN}"})
    text = buffer.getvalue()
    assert "request" in text and "upstream_call" in text
    for leaked in (email, phone, "555 0100", "leaked-bearer-1", TOKEN, secret, "test-api-token"):
        assert leaked not in text, leaked
