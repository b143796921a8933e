"""Schemathesis against the relay's own OpenAPI document, served by a real `aep-relay serve`:
every documented route, no 500, every error a problem document, responses match their schemas.
`make test` runs a bounded number of examples per route; `make fuzz` runs many more."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.app import create_app
from tests.conftest import make_settings
from tests.e2e.relay_process import RelayProcess

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
TOKEN = "fuzz-token-0123456789"
PROBLEM_MEMBERS = {"type": str, "title": str, "status": int, "code": str, "retryable": bool}


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    process = RelayProcess(
        {"RELAY_INGEST_TOKENS": TOKEN, "RELAY_ADMIN_TOKEN": TOKEN, "RELAY_LOG_LEVEL": "warning"},
        folder / "relay.log",
    )
    process.start()
    yield process
    process.stop()


# The document the served relay publishes at /openapi.json (a test below checks they agree);
# built in-process because schemathesis parametrizes at collection time.
schema = schemathesis.openapi.from_dict(create_app(make_settings()).openapi())


def test_the_fuzzed_document_is_the_served_one(relay: RelayProcess) -> None:
    served = httpx.get(f"{relay.url}/openapi.json", timeout=10).json()
    assert served == schema.raw_schema


def problem_document(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx/5xx is an RFC 9457 problem document with our members."""
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/problem+json"), response.text
    doc = response.json()
    for member, kind in PROBLEM_MEMBERS.items():
        assert isinstance(doc.get(member), kind), f"{member} missing or not {kind.__name__}: {doc}"
    assert doc["status"] == response.status_code
    assert doc["type"] == "/problems/" + doc["code"].replace("_", "-")
    return None


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_within_its_schema(relay: RelayProcess, case: Any) -> None:
    case.call_and_validate(
        base_url=relay.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            problem_document,
        ],
        timeout=30,
    )
