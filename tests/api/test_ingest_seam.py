"""The ingest shortcut (``app/api/fast_ingest.py``) is a seam: deleting it changes no answer.

The same requests go to a relay as built and to one without the shortcut, where FastAPI's own
routes serve ingest; every status, content type and body (request ids aside) must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.api.fast_ingest import IngestShortcut
from tests.conftest import EXAMPLES, auth, make_settings

PURCHASE = (EXAMPLES / "purchase.json").read_bytes()
PAGEVIEW = (EXAMPLES / "pageview-anonymous.json").read_bytes()

REQUESTS: list[tuple[str, bytes, dict[str, str]]] = [
    ("/v1/events", PURCHASE, auth()),
    ("/v1/events?wait=0.1", PURCHASE.replace(b"a1b2c3d4", b"b1b2c3d4"), auth()),
    ("/v1/events", PURCHASE, {**auth(), "Prefer": "wait=abc"}),
    ("/v1/events", PAGEVIEW, auth()),
    ("/v1/events", b"{not json", auth()),
    ("/v1/events", b"[]", auth()),
    ("/v1/events", PURCHASE, {}),
    ("/v1/events", PURCHASE, {"Authorization": "Bearer wrong"}),
    ("/v1/events/order-completed", PAGEVIEW, auth()),
    ("/v1/events/no-such-mapping", PURCHASE, auth()),
    ("/v1/events/a/b", PURCHASE, auth()),
    ("/v1/events/", PURCHASE, auth()),
]


def without_shortcut(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not IngestShortcut]
    return app


@pytest.fixture
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(create_app(make_settings()), raise_server_exceptions=False) as fast,
        TestClient(without_shortcut(create_app(make_settings())), raise_server_exceptions=False) as plain,
    ):
        yield fast, plain


def answer(client: TestClient, path: str, body: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
    response = client.post(
        path, content=body, headers={"Content-Type": "text/plain", **headers}, follow_redirects=False
    )
    content: Any = response.content
    if response.headers.get("content-type", "").endswith("json"):
        content = response.json()
        content.pop("request_id", None)
        for result in content.get("results", []) if isinstance(content, dict) else []:
            result.pop("delivery_id", None)  # new for each stored delivery
    kept = {name: response.headers.get(name) for name in ("content-type", "preference-applied", "location")}
    return response.status_code, kept, content


def test_the_shortcut_is_in_the_app_as_built() -> None:
    assert any(m.cls is IngestShortcut for m in create_app(make_settings()).user_middleware)


@pytest.mark.parametrize(
    ("path", "body", "headers"), REQUESTS, ids=[r[0] + f"-{i}" for i, r in enumerate(REQUESTS)]
)
def test_every_answer_is_the_same_without_the_shortcut(
    clients: tuple[TestClient, TestClient], path: str, body: bytes, headers: dict[str, str]
) -> None:
    fast, plain = clients
    assert answer(fast, path, body, headers) == answer(plain, path, body, headers)
