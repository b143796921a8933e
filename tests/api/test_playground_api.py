"""The public routes the playground page uses: mappings, samples and draft previews; the page
itself at /ui. In-process, with the shipped Zendesk mappings and their example payloads."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import EXAMPLES, ZENDESK_MAPPINGS, auth, make_settings

Client = Callable[..., TestClient]
ORDER_FILE = ZENDESK_MAPPINGS / "zendesk-order-completed.yaml"
ORDER_TEXT = ORDER_FILE.read_text()
PURCHASE = json.loads((EXAMPLES / "purchase.json").read_bytes())
PAGEVIEW = json.loads((EXAMPLES / "pageview-anonymous.json").read_bytes())
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def draft(client: TestClient, mapping: str, payload: Any = PURCHASE, **extra: Any) -> Any:
    return client.post(
        "/v1/preview/draft", json={"mapping": mapping, "payload": payload, **extra}, headers=auth()
    )


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = response.json()
    assert doc["code"] == code
    return doc


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


# -- POST /v1/preview/draft ----------------------------------------------------------------------


def test_a_draft_of_a_served_mapping_previews_exactly_as_the_served_one(relay_client: Client) -> None:
    client = relay_client()
    served = client.post("/v1/preview", content=json.dumps(PURCHASE), headers=auth()).json()
    drafted = draft(client, ORDER_TEXT, file="zendesk-order-completed.yaml")
    assert drafted.status_code == 200, drafted.text
    assert drafted.json() == served


def test_a_draft_is_used_as_edited_and_its_when_is_checked(relay_client: Client) -> None:
    client = relay_client()
    edited = ORDER_TEXT.replace("type: order_completed\n", "type: order_placed\n", 1)
    [result] = draft(client, edited).json()["results"]
    assert (result["status"], result["body"]["event"]["type"]) == ("dry_run", "order_placed")
    assert draft(client, ORDER_TEXT, PAGEVIEW).json()["results"] == [{"event_index": 0, "status": "ignored"}]


def test_a_draft_shows_each_violation_with_its_field(relay_client: Client) -> None:
    no_identity = {"xdm": {"_id": "x", "eventType": "commerce.purchases"}}
    [result] = draft(relay_client(), ORDER_TEXT, no_identity).json()["results"]
    assert result["status"] == "rejected"
    assert result["problem"]["violations"][0]["path"] == "profile.identifiers"


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (
            '"Order {{ xdm.commerce.order.purchaseID }}"',
            '"Order {{ xdm.commerce.order. }}"',
            "body.event.description: invalid JMESPath",
        ),
        ("destination: zendesk", "destination: zendisk", "unknown destination 'zendisk'"),
        ('event_id: "xdm._id"', 'event_idd: "xdm._id"', "unknown key `event_idd`"),
        (
            "when: \"xdm.eventType == 'commerce.purchases'\"",
            'when: "xdm.eventType == "',
            "`when`: invalid JMESPath",
        ),
        ("  event:\n    source: shop", "  event: [\n    source: shop", "YAML syntax"),
    ],
)
def test_a_draft_that_does_not_compile_is_a_problem_with_file_and_line(
    relay_client: Client, old: str, new: str, reason: str
) -> None:
    assert old in ORDER_TEXT
    text = ORDER_TEXT.replace(old, new, 1)
    response = draft(relay_client(), text, file="zendesk-order-completed.yaml")
    doc = problem(response, 422, "mapping_invalid")
    [error] = doc["errors"]
    assert error["file"] == "zendesk-order-completed.yaml"
    assert reason in error["reason"]
    if reason != "YAML syntax":  # a syntax error is found further on, where the parser gives up
        assert error["line"] == line_of(text, new.splitlines()[0])
    assert doc["detail"] == f"zendesk-order-completed.yaml:{error['line']}: {error['reason']}"


def test_a_draft_is_named_by_a_bare_file_name(relay_client: Client) -> None:
    response = draft(relay_client(), "destination: nowhere\nbody: {}\n", file="../../etc/some.yaml")
    assert problem(response, 422, "mapping_invalid")["errors"][0]["file"] == "some.yaml"
    response = draft(relay_client(), "destination: nowhere\nbody: {}\n")
    assert problem(response, 422, "mapping_invalid")["errors"][0]["file"] == "draft.yaml"


def test_a_draft_never_reads_the_files_its_examples_name(relay_client: Client, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"not": "json"')  # reading it would fail the draft with its content
    text = ORDER_TEXT.replace("input: examples/purchase.json", f"input: {secret}")
    assert draft(relay_client(), text).status_code == 200


def test_a_draft_with_aliases_is_refused_before_it_can_expand(relay_client: Client) -> None:
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 4))
    text = "destination: zendesk\nl0: &l0 lol\n" + laughs + "body: {event: *l3}\n"
    doc = problem(draft(relay_client(), text), 422, "mapping_invalid")
    assert "aliases" in doc["errors"][0]["reason"]


def test_a_draft_nested_too_deeply_is_a_problem_not_a_crash(relay_client: Client) -> None:
    text = "destination: zendesk\nbody: " + "[" * 3000 + "]" * 3000 + "\n"
    assert "nested too deeply" in problem(draft(relay_client(), text), 422, "mapping_invalid")["detail"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("body:\n  event: !!binary aGVsbG8=\n", "YAML tags such as `!!binary` are not allowed"),
        ("body:\n  event: !!set {a, b}\n", "YAML tags such as `!!set` are not allowed"),
        ('body:\n  event: "{{ foo[' + "9" * 5000 + '] }}"\n', "a number is too long"),
        ("body:\n  event: 99999999999999999999\n", "integers beyond 64 bits are not allowed"),
    ],
)
def test_a_draft_with_values_json_cannot_hold_is_a_problem_with_its_line(
    relay_client: Client, text: str, reason: str
) -> None:
    doc = problem(draft(relay_client(), "destination: zendesk\n" + text), 422, "mapping_invalid")
    [error] = doc["errors"]
    assert error["line"] == 3
    assert reason in error["reason"]


def test_a_draft_payload_is_held_to_the_limits_of_ingest(relay_client: Client) -> None:
    client = relay_client(make_settings(relay_max_batch_events=2))
    nested = '{"a": ' * 1000 + "1" + "}" * 1000
    deep = f'{{"mapping": {json.dumps(ORDER_TEXT)}, "payload": {{"xdm": {{"n": {nested}}}}}}}'
    response = client.post("/v1/preview/draft", content=deep, headers=auth())
    problem(response, 400, "json_too_deep")
    problem(draft(client, ORDER_TEXT, '{"xdm": {"n": ' + nested + "}}"), 400, "json_too_deep")  # as text
    problem(draft(client, ORDER_TEXT, {"xdm": {"s": "x" * 70_000}}), 400, "string_too_long")
    problem(draft(client, ORDER_TEXT, {"events": [PURCHASE] * 3}), 413, "too_many_events")


def test_drafts_beyond_those_running_or_waiting_are_answered_overloaded_at_once(relay_client: Client) -> None:
    client = relay_client(make_settings(relay_draft_timeout=0.5))
    largest = "max_by([@]" + " | [@, @][]" * 21 + ", &length(to_string(@)))"  # seconds of CPU
    slow = f'destination: zendesk\nbody: {{event: "{{{{ length({largest}) }}}}"}}\n'
    with ThreadPoolExecutor(12) as pool:
        codes = [r.json()["code"] for r in pool.map(lambda _: draft(client, slow), range(12))]
    assert set(codes) == {"draft_too_costly", "overloaded"}
    assert codes.count("draft_too_costly") <= 8
    assert draft(client, ORDER_TEXT).status_code == 200


def test_a_draft_payload_may_be_its_text_and_bad_text_is_invalid_json(relay_client: Client) -> None:
    client = relay_client()
    [result] = draft(client, ORDER_TEXT, json.dumps(PURCHASE)).json()["results"]
    assert result["status"] == "dry_run"
    problem(draft(client, ORDER_TEXT, '{"xdm": '), 400, "invalid_json")
    problem(draft(client, ORDER_TEXT, [1, 2]), 400, "unsupported_payload")


@pytest.mark.parametrize(
    "body", [b"[]", b'{"payload": {}}', b'{"mapping": 3, "payload": {}}', b'{"mapping": ""}']
)
def test_a_draft_request_needs_mapping_text_and_a_payload(relay_client: Client, body: bytes) -> None:
    response = relay_client().post("/v1/preview/draft", content=body, headers=auth())
    problem(response, 400, "invalid_request")


def test_drafts_mappings_and_samples_need_an_ingest_token(relay_client: Client) -> None:
    client = relay_client()
    problem(
        client.post("/v1/preview/draft", json={"mapping": ORDER_TEXT, "payload": PURCHASE}),
        401,
        "unauthorized",
    )
    for path in ("/v1/mappings", "/v1/mappings/order-completed", "/v1/samples", "/v1/samples/purchase.json"):
        problem(client.get(path), 401, "unauthorized")
        problem(client.get(path, headers=auth("wrong")), 401, "unauthorized")


# -- GET /v1/mappings ----------------------------------------------------------------------------


def test_mappings_are_listed_and_each_gives_its_yaml_text(relay_client: Client) -> None:
    client = relay_client()
    listed = client.get("/v1/mappings", headers=auth()).json()["mappings"]
    assert [m["name"] for m in listed] == ["identified-page-view", "order-completed", "product-added-to-cart"]
    assert listed[1] == {
        "name": "order-completed",
        "destination": "zendesk",
        "endpoint": None,
        "event_type": "commerce.purchases",
        "file": "zendesk-order-completed.yaml",
    }
    one = client.get("/v1/mappings/order-completed", headers=auth()).json()
    assert (one["file"], one["text"]) == ("zendesk-order-completed.yaml", ORDER_TEXT)
    problem(client.get("/v1/mappings/nope", headers=auth()), 404, "mapping_not_found")


# -- GET /v1/samples -----------------------------------------------------------------------------


def test_samples_are_the_example_payloads_next_to_the_mappings(relay_client: Client) -> None:
    client = relay_client()
    samples = client.get("/v1/samples", headers=auth()).json()["samples"]
    assert [s["name"] for s in samples] == sorted(p.name for p in EXAMPLES.glob("*.json"))
    purchase = next(s for s in samples if s["name"] == "purchase.json")
    assert purchase == {"name": "purchase.json", "shape": "single", "event_types": ["commerce.purchases"]}
    response = client.get("/v1/samples/purchase.json", headers=auth())
    assert response.headers["content-type"] == "application/json"
    assert response.content == (EXAMPLES / "purchase.json").read_bytes()


def test_only_listed_samples_can_be_read(relay_client: Client, tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "good.json").write_text('{"eventType": "web.webpagedetails.pageViews"}')
    (tmp_path / "examples" / "notes.json").write_text('"just a string"')
    (tmp_path / "examples" / "broken.json").write_text("{")
    (tmp_path / "secret.json").write_text('{"xdm": {}}')
    client = relay_client(make_settings(relay_mappings_dir=tmp_path))
    samples = client.get("/v1/samples", headers=auth()).json()["samples"]
    assert samples == [
        {"name": "good.json", "shape": "bare", "event_types": ["web.webpagedetails.pageViews"]}
    ]
    for name in ("notes.json", "broken.json", "..%2Fsecret.json", "../secret.json"):
        assert client.get(f"/v1/samples/{name}", headers=auth()).status_code == 404


def test_no_examples_folder_means_no_samples(relay_client: Client, tmp_path: Path) -> None:
    client = relay_client(make_settings(relay_mappings_dir=tmp_path))
    assert client.get("/v1/samples", headers=auth()).json() == {"samples": []}


# -- the page and the OpenAPI document -----------------------------------------------------------


def test_the_page_is_served_with_a_policy_that_keeps_it_to_the_relay(relay_client: Client) -> None:
    client = relay_client()
    page = client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assets = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text)
    assert {"/ui/static/main.js", "/ui/static/playground.css"} <= set(assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    scripts = [
        "main.js",
        "api.js",
        "dom.js",
        "jsonview.js",
        "playground.js",
        "deadletters.js",
        "deliveries.js",
        "trace.js",
    ]
    for script in scripts:
        response = client.get(f"/ui/static/{script}")
        assert response.headers["content-type"].startswith("text/javascript"), script
        text = response.text.replace(SVG_NAMESPACE, "")  # a name for createElementNS, never fetched
        assert "http://" not in text and "https://" not in text  # nothing from elsewhere
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui"
    problem(client.get("/ui/static/nope.js"), 404, "not_found")


def test_the_new_routes_are_in_the_openapi_document(relay_client: Client) -> None:
    paths = relay_client().get("/openapi.json").json()["paths"]
    assert {
        "/v1/preview/draft",
        "/v1/mappings",
        "/v1/mappings/{name}",
        "/v1/samples",
        "/v1/samples/{name}",
    } <= set(paths)
    draft_doc = paths["/v1/preview/draft"]["post"]
    assert draft_doc["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "mapping",
        "payload",
    ]
    assert "mapping_invalid" in draft_doc["responses"]["422"]["description"]
    assert not any(path.startswith("/ui") for path in paths)
