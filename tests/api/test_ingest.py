"""POST /v1/events in-process, delivering to the fake Zendesk over loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES, TOKEN, auth, make_settings, zendesk_settings
from tests.fakes.zendesk import FakeZendesk

PURCHASE = (EXAMPLES / "purchase.json").read_bytes()
Client = Callable[..., TestClient]


def post(client: TestClient, body: bytes | str | dict[str, Any], **kwargs: Any) -> Any:
    content = json.dumps(body) if isinstance(body, dict) else body
    headers = {**auth(), "Content-Type": "text/plain", **kwargs.pop("headers", {})}
    path = kwargs.pop("path", "/v1/events") + "?wait=10"  # wait for the outcome of each delivery
    return client.post(path, content=content, headers=headers, **kwargs)


def test_purchase_is_delivered_to_zendesk(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    response = post(client, PURCHASE)
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["status"] == "delivered"
    assert result["mapping"] == "order-completed"
    assert result["event_id"] == "a1b2c3d4-0000-4000-8000-000000000001"
    assert result["profile_id"] and result["user_id"]
    [sent] = fake_zendesk.accepted
    assert sent.path == "/api/v2/user_profiles/events"
    assert sent.body["event"]["properties"]["total"] == 539.97
    assert sent.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "payload",
    [
        {
            "xdm": {
                "eventType": "commerce.purchases",
                "_id": "s1",
                "identityMap": {"Email": [{"id": "a@example.com"}]},
            }
        },
        {
            "event": {
                "xdm": {
                    "eventType": "commerce.purchases",
                    "_id": "w1",
                    "identityMap": {"Email": [{"id": "a@example.com"}]},
                }
            }
        },
        {"eventType": "commerce.purchases", "_id": "b1", "identityMap": {"Email": [{"id": "a@example.com"}]}},
        {
            "events": [{"xdm": {"eventType": "commerce.purchases", "_id": "e1"}}],
            "xdm": {"identityMap": {"Email": [{"id": "a@example.com", "primary": True}]}},
        },
    ],
    ids=["single", "wrapped", "bare", "batch-with-request-identity"],
)
def test_every_shape_reaches_zendesk(
    relay_client: Client, fake_zendesk: FakeZendesk, payload: dict[str, Any]
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    response = post(client, payload)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["delivered"]
    [sent] = fake_zendesk.accepted
    assert sent.body["profile"]["identifiers"] == [{"type": "email", "value": "a@example.com"}]


def test_batch_answers_one_result_per_event_and_mapping(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    purchase = json.loads(PURCHASE)
    batch = {
        "events": [
            purchase,
            {"xdm": {"eventType": "web.webpagedetails.pageViews"}},
            {"xdm": {"eventType": "commerce.purchases", "_id": "x2"}},  # no identity: rejected
        ]
    }
    response = post(client, batch)
    assert response.status_code == 207
    results = response.json()["results"]
    assert [(r["event_index"], r["status"]) for r in results] == [
        (0, "delivered"), (1, "ignored"), (2, "rejected"),
    ]  # fmt: skip
    assert results[2]["problem"]["code"] == "validation_failed"
    assert results[2]["problem"]["violations"][0]["path"] == "profile.identifiers"
    assert len(fake_zendesk.accepted) == 1


def test_fan_out_sends_one_delivery_per_matching_mapping(
    relay_client: Client, fake_zendesk: FakeZendesk, tmp_path: Any
) -> None:
    for name, event_type in (("a", "order_completed"), ("b", "purchase_copy")):
        (tmp_path / f"{name}.yaml").write_text(
            "destination: zendesk\n"
            "when: \"xdm.eventType == 'commerce.purchases'\"\n"
            "body:\n"
            "  profile: {source: shop, type: customer, identifiers: [{type: email, value: a@example.com}]}\n"
            f"  event: {{source: shop, type: {event_type}, properties: {{n: 1}}}}\n"
        )
    client = relay_client(zendesk_settings(fake_zendesk.base_url, relay_mappings_dir=tmp_path))
    response = post(client, {"xdm": {"eventType": "commerce.purchases"}})
    assert response.status_code == 200
    assert [(r["mapping"], r["status"]) for r in response.json()["results"]] == [
        ("a", "delivered"), ("b", "delivered"),
    ]  # fmt: skip
    assert sorted(r.body["event"]["type"] for r in fake_zendesk.accepted) == [
        "order_completed",
        "purchase_copy",
    ]


def test_falsy_values_are_kept_and_null_keys_dropped(
    relay_client: Client, fake_zendesk: FakeZendesk, tmp_path: Any
) -> None:
    (tmp_path / "m.yaml").write_text(
        "destination: zendesk\n"
        "body:\n"
        "  profile: {source: shop, type: customer, identifiers: [{type: email, value: a@example.com}]}\n"
        "  event:\n"
        "    source: shop\n"
        "    type: t\n"
        "    description: '{{ data.missing }}'\n"
        "    properties:\n"
        "      zero: '{{ data.zero }}'\n"
        "      no: '{{ data.no }}'\n"
        "      empty_list: '{{ data.list }}'\n"
        "      empty_object: '{{ data.obj }}'\n"
        "      empty_text: '{{ data.text }}'\n"
        "      gone: '{{ data.missing }}'\n"
        "      text: 'n={{ data.zero }} ok={{ data.no }}'\n"
    )
    client = relay_client(zendesk_settings(fake_zendesk.base_url, relay_mappings_dir=tmp_path))
    data = {"zero": 0, "no": False, "list": [], "obj": {}, "text": ""}
    response = post(client, {"xdm": {"eventType": "x"}, "data": data})
    assert response.status_code == 200, response.text
    [sent] = fake_zendesk.accepted
    assert "description" not in sent.body["event"]
    assert sent.body["event"]["properties"] == {
        "zero": 0, "no": False, "empty_list": [], "empty_object": {}, "empty_text": "",
        "text": "n=0 ok=false",
    }  # fmt: skip


def test_text_plain_non_ascii_and_nul_characters_survive(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    purchase = json.loads(PURCHASE)
    purchase["data"]["customer"]["name"] = "Zoë Tōkyō \u0000 🎉"
    response = post(client, json.dumps(purchase, ensure_ascii=False).encode("utf-8"))
    assert response.status_code == 200, response.text
    assert fake_zendesk.accepted[0].body["profile"]["name"] == "Zoë Tōkyō \u0000 🎉"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"xdm": ', 400, "invalid_json"),
        (b"\xff\xfe not utf-8", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[1, 2]", 400, "unsupported_payload"),
        (b"42", 400, "unsupported_payload"),
        (b'{"hello": "world"}', 400, "unsupported_payload"),
        (b'{"events": {"not": "a list"}}', 400, "unsupported_payload"),
    ],
)
def test_bad_input_gets_a_problem_document(relay_client: Client, body: bytes, status: int, code: str) -> None:
    response = post(relay_client(), body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["type"] == f"/problems/{code.replace('_', '-')}"
    assert problem["title"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("relay_max_identities", 3),
        ("relay_max_identity_namespaces", 2),
        ("relay_max_identities_per_namespace", 1),
    ],
)
def test_the_identity_caps_are_settings(relay_client: Client, setting: str, value: int) -> None:
    purchase = json.loads((EXAMPLES / "purchase.json").read_text())  # three namespaces of one
    purchase["xdm"]["identityMap"]["Email"].append({"id": "second@example.com"})  # four in all
    assert post(relay_client(), purchase).status_code == 200
    response = post(relay_client(make_settings(**{setting: value})), purchase)
    assert response.status_code == 413, response.text
    problem = response.json()
    assert (problem["code"], problem["title"]) == (
        "too_many_identities",
        "An identity map has too many identities",
    )
    assert setting.upper() in problem["detail"]


def test_a_batch_planned_in_slices_answers_every_event_in_order(relay_client: Client) -> None:
    """Planning gives the event loop back every 100 events; the answer is the whole batch's."""
    purchase = json.loads((EXAMPLES / "purchase.json").read_text())
    events = [{**purchase, "xdm": {**purchase["xdm"], "_id": f"slice-{n}"}} for n in range(250)]
    events[150] = {"xdm": {"eventType": "nothing.matches"}}
    response = post(relay_client(), {"events": events})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["event_index"] for r in results] == list(range(250))
    assert [r["status"] for r in results].count("ignored") == 1 and results[150]["status"] == "ignored"
    assert results[249]["event_id"] == "slice-249"


def test_body_over_the_limit_is_refused_before_it_is_read(relay_client: Client) -> None:
    client = relay_client(make_settings(relay_max_body_bytes=1000))
    response = post(client, b'{"xdm": {"pad": "' + b"x" * 5000 + b'"}}')
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: the limit must hold while streaming
        yield b'{"xdm": {"pad": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}}'

    response = client.post("/v1/events", content=chunks(), headers=auth())
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
)
def test_ingest_needs_a_valid_token(relay_client: Client, headers: dict[str, str]) -> None:
    client = relay_client()
    response = client.post("/v1/events", content=PURCHASE, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_any_of_several_tokens_is_accepted(relay_client: Client) -> None:
    client = relay_client(make_settings(relay_ingest_tokens=["old-token", "new-token"]))
    for token in ("old-token", "new-token"):
        response = client.post("/v1/events", content=PURCHASE, headers=auth(token))
        assert response.status_code == 200


def test_no_credentials_means_dry_run_with_the_rendered_body(relay_client: Client) -> None:
    client = relay_client()
    assert client.get("/readyz").json()["dry_run"] == {"zendesk": True, "yotpo": True}
    [result] = post(client, PURCHASE).json()["results"]
    assert result["status"] == "dry_run"
    assert result["endpoint"] == "POST /api/v2/user_profiles/events"
    assert result["body"]["event"]["type"] == "order_completed"


def test_named_mapping_route_skips_when(relay_client: Client, fake_zendesk: FakeZendesk) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    payload = json.loads(PURCHASE)
    payload["xdm"]["eventType"] = "something.else"
    assert post(client, payload).json()["results"][0]["status"] == "ignored"
    response = post(client, payload, path="/v1/events/order-completed")
    assert response.json()["results"][0]["status"] == "delivered"
    missing = post(client, payload, path="/v1/events/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == "mapping_not_found"


def test_single_rejected_result_is_answered_with_its_problem(
    relay_client: Client, fake_zendesk: FakeZendesk
) -> None:
    client = relay_client(zendesk_settings(fake_zendesk.base_url))
    response = post(client, {"xdm": {"eventType": "commerce.purchases", "_id": "no-identity"}})
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert problem["mapping"] == "order-completed"
    assert problem["event_id"] == "no-identity"
    assert problem["violations"] == [
        {"path": "profile.identifiers", "message": "required, an array of 1 to 20 {type, value} objects"}
    ]
    assert problem["results"][0]["status"] == "rejected"
    assert fake_zendesk.received == []  # nothing is sent


def test_unknown_route_and_method_are_problem_documents(relay_client: Client) -> None:
    client = relay_client()
    assert client.get("/nope").json()["code"] == "not_found"
    response = client.get("/v1/events")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_request_id_is_propagated(relay_client: Client) -> None:
    response = relay_client().get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert len(relay_client().get("/healthz").headers["x-request-id"]) == 32
