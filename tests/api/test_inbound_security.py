"""Inbound security in-process: token rotation, signed requests, and the request limits."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from app.signing import sign, sign_body_only
from tests.conftest import EXAMPLES, TOKEN, auth, log_lines, make_settings

Client = Callable[..., TestClient]
PURCHASE = (EXAMPLES / "purchase.json").read_bytes()
SECRET = "signing-secret-1"
ROUTES = ["/v1/events", "/v1/events/order-completed", "/v1/preview"]


def signed(
    body: bytes, secret: str = SECRET, at: float | None = None, path: str = "/v1/events"
) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {
        "X-Relay-Timestamp": stamp,
        "X-Relay-Signature": sign(secret, stamp, body, method="POST", path=path),
    }


def signed_body_only(body: bytes, secret: str = SECRET, ago: int = 0) -> dict[str, str]:
    stamp = str(int(time.time()) - ago)
    return {"X-Relay-Timestamp": stamp, "X-Relay-Signature": sign_body_only(secret, stamp, body)}


def code(response: object) -> tuple[int, str]:
    doc = response.json()  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    return doc["status"], doc["code"]


# --------------------------------------------------------------------------- tokens


def test_tokens_rotate_from_the_environment_and_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RELAY_INGEST_TOKENS", " old-token , new-token ")
    tokens = Settings(_env_file=None).relay_ingest_tokens  # type: ignore[call-arg]
    assert [t.get_secret_value() for t in tokens] == ["old-token", "new-token"]
    monkeypatch.delenv("RELAY_INGEST_TOKENS")
    (tmp_path / "tokens").write_text("old-token\nnew-token\n")
    (tmp_path / "secrets").write_text("s-old,s-new\n")
    monkeypatch.setenv("RELAY_INGEST_TOKENS_FILE", str(tmp_path / "tokens"))
    monkeypatch.setenv("RELAY_SIGNING_SECRETS_FILE", str(tmp_path / "secrets"))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert [t.get_secret_value() for t in settings.relay_ingest_tokens] == ["old-token", "new-token"]
    assert [t.get_secret_value() for t in settings.relay_signing_secrets] == ["s-old", "s-new"]
    assert {"old-token", "new-token", "s-old", "s-new"} <= set(settings.secret_values())


def test_during_rotation_both_tokens_work_and_after_it_only_the_new_one(relay_client: Client) -> None:
    rotating = relay_client(make_settings(relay_ingest_tokens=["old-token", "new-token"]))
    for token in ("old-token", "new-token"):
        assert rotating.post("/v1/events", content=PURCHASE, headers=auth(token)).status_code == 200
    rotated = relay_client(make_settings(relay_ingest_tokens=["new-token"]))
    assert code(rotated.post("/v1/events", content=PURCHASE, headers=auth("old-token"))) == (
        401,
        "unauthorized",
    )
    assert rotated.post("/v1/events", content=PURCHASE, headers=auth("new-token")).status_code == 200


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("path", ROUTES)
def test_a_signed_request_needs_no_token(relay_client: Client, path: str) -> None:
    client = relay_client(make_settings(relay_signing_secrets=["old-secret", SECRET]))
    response = client.post(path, content=PURCHASE, headers=signed(PURCHASE, path=path))
    assert response.status_code == 200, response.text
    assert code(client.post(path, content=PURCHASE)) == (401, "unauthorized")


@pytest.mark.parametrize("path", ROUTES)
def test_a_signature_for_another_route_is_refused(relay_client: Client, path: str) -> None:
    client = relay_client(make_settings(relay_signing_secrets=[SECRET]))
    other = "/v1/preview" if path != "/v1/preview" else "/v1/events"
    response = client.post(path, content=PURCHASE, headers=signed(PURCHASE, path=other))
    assert code(response) == (401, "invalid_signature")
    assert "method, path and body" in response.json()["detail"]


def test_the_body_only_signature_is_accepted_until_its_end_date_and_counted(relay_client: Client) -> None:
    until = {"relay_signing_secrets": [SECRET], "relay_signing_body_only_until": date(2099, 1, 1)}
    client = relay_client(make_settings(**until))
    for ago, path in enumerate(ROUTES):  # one signature per second: the same one twice is a replay
        response = client.post(path, content=PURCHASE, headers=signed_body_only(PURCHASE, ago=ago))
        assert response.status_code == 200, response.text
    metrics = client.get("/metrics").text
    assert 'aep_relay_signatures_accepted_total{form="body_only"} 3.0' in metrics
    assert 'aep_relay_signatures_accepted_total{form="method_path"} 0.0' in metrics
    ended = relay_client(
        make_settings(relay_signing_secrets=[SECRET], relay_signing_body_only_until=date(2020, 1, 1))
    )
    assert code(ended.post("/v1/events", content=PURCHASE, headers=signed_body_only(PURCHASE))) == (
        401,
        "invalid_signature",
    )


def test_a_replayed_signature_is_refused(relay_client: Client) -> None:
    client = relay_client(make_settings(relay_signing_secrets=[SECRET]))
    headers = signed(PURCHASE)
    assert client.post("/v1/events", content=PURCHASE, headers=headers).status_code == 200
    replay = client.post("/v1/events", content=PURCHASE, headers=headers)
    assert code(replay) == (401, "invalid_signature")
    assert "already used" in replay.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "why"),
    [  # built when the test runs: a stamp taken at collection may be 300 s old by then
        (lambda: signed(PURCHASE + b" "), "does not match"),
        (lambda: signed(PURCHASE, secret="someone-else"), "does not match"),
        (lambda: signed(PURCHASE, at=time.time() - 3600), "300 s"),
        (lambda: {"X-Relay-Signature": "sha256=" + "0" * 64}, "both"),
    ],
    ids=["body-changed", "other-secret", "old-stamp", "no-stamp"],
)
def test_a_bad_signature_is_refused_even_next_to_a_good_token(
    relay_client: Client, headers: Callable[[], dict[str, str]], why: str
) -> None:
    client = relay_client(make_settings(relay_signing_secrets=[SECRET]))
    response = client.post("/v1/events", content=PURCHASE, headers={**auth(), **headers()})
    assert code(response) == (401, "invalid_signature")
    assert why in response.json()["detail"]


def test_a_token_alone_still_works_when_signing_is_on(relay_client: Client) -> None:
    client = relay_client(make_settings(relay_signing_secrets=[SECRET]))
    assert client.post("/v1/events", content=PURCHASE, headers=auth()).status_code == 200


def test_signature_headers_are_ignored_when_signing_is_off(relay_client: Client) -> None:
    client = relay_client()
    response = client.post("/v1/events", content=PURCHASE, headers={**auth(), **signed(PURCHASE, "x")})
    assert response.status_code == 200


def test_signing_secrets_alone_make_a_closed_relay(relay_client: Client, logs: io.StringIO) -> None:
    client = relay_client(make_settings(relay_ingest_tokens=[], relay_signing_secrets=[SECRET]))
    assert code(client.post("/v1/events", content=PURCHASE)) == (401, "unauthorized")
    assert client.post("/v1/events", content=PURCHASE, headers=signed(PURCHASE)).status_code == 200
    assert not any(line["event"] == "running_open" for line in log_lines(logs))
    assert SECRET not in logs.getvalue()


# --------------------------------------------------------------------------- repeated headers


@pytest.mark.parametrize("path", [*ROUTES, "/v1/preview/draft"])
@pytest.mark.parametrize(
    "repeated",
    [
        [("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer someone-else")],
        [("Authorization", "Bearer someone-else"), ("Authorization", f"Bearer {TOKEN}")],
        [("X-Relay-Timestamp", "1"), ("X-Relay-Timestamp", "2")],
        [("X-Relay-Anything", "1"), ("X-Relay-Anything", "1")],
    ],
    ids=["auth-good-first", "auth-good-last", "timestamp", "any-x-relay"],
)
def test_a_repeated_credential_header_is_refused_whichever_value_comes_first(
    relay_client: Client, path: str, repeated: list[tuple[str, str]]
) -> None:
    client = relay_client(make_settings(relay_signing_secrets=[SECRET]))
    response = client.post(path, content=PURCHASE, headers=[*auth().items(), *repeated])
    assert code(response) == (400, "invalid_request")
    assert response.headers["x-request-id"]


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (json.dumps({"events": [{"xdm": {"eventType": "x"}}] * 4}).encode(), (413, "too_many_events")),
        (b'{"xdm": {"a": ' + b"[" * 10 + b"]" * 10 + b"}}", (400, "json_too_deep")),
        (b"[" * 2000 + b"]" * 2000, (400, "json_too_deep")),
        (json.dumps({"xdm": {"eventType": "x" * 101}}).encode(), (400, "string_too_long")),
        (json.dumps({"xdm": {"x" * 101: 1}}).encode(), (400, "string_too_long")),
    ],
)
def test_each_limit_has_its_own_problem(
    relay_client: Client, path: str, body: bytes, expected: tuple[int, str]
) -> None:
    limits = {"relay_max_batch_events": 3, "relay_max_json_depth": 8, "relay_max_string_length": 100}
    client = relay_client(make_settings(**limits))
    assert code(client.post(path, content=body, headers=auth())) == expected


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_MAX_BATCH_EVENTS", "7")
    monkeypatch.setenv("RELAY_MAX_JSON_DEPTH", "9")
    monkeypatch.setenv("RELAY_MAX_STRING_LENGTH", "11")
    settings = Settings(_env_file=None, relay_ingest_tokens=[TOKEN])  # type: ignore[call-arg]
    assert (
        settings.relay_max_batch_events,
        settings.relay_max_json_depth,
        settings.relay_max_string_length,
    ) == (7, 9, 11)


def test_the_default_limits_let_every_shipped_example_through(relay_client: Client) -> None:
    client = relay_client()
    for example in sorted(EXAMPLES.glob("*.json")):
        assert client.post("/v1/preview", content=example.read_bytes(), headers=auth()).status_code == 200
