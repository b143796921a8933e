"""The relay as a real uvicorn process, delivering to the fake Zendesk over loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES
from tests.e2e.relay_process import ROOT, RelayProcess
from tests.fakes.zendesk import FakeZendesk

pytestmark = pytest.mark.e2e


def test_served_relay_delivers_a_purchase_and_stops_cleanly(
    fake_zendesk: FakeZendesk, tmp_path: Path
) -> None:
    relay = RelayProcess(
        {
            "RELAY_INGEST_TOKENS": "e2e-token",
            "ZENDESK_BASE_URL": fake_zendesk.base_url,
            "ZENDESK_EMAIL": "agent@example.com",
            "ZENDESK_API_TOKEN": "test-api-token",
        },
        tmp_path / "relay.log",
    )
    relay.start()
    try:
        response = httpx.post(
            f"{relay.url}/v1/events?wait=10",
            content=(EXAMPLES / "purchase.json").read_bytes(),
            headers={"Authorization": "Bearer e2e-token", "Content-Type": "text/plain"},
            timeout=30,  # the relay answers within its 10 s wait; a loaded machine adds its own
        )
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["status"] == "delivered"
        assert fake_zendesk.accepted[0].body["event"]["type"] == "order_completed"
        assert httpx.get(f"{relay.url}/readyz").json()["dry_run"] == {"zendesk": False, "yotpo": True}
        assert httpx.get(f"{relay.url}/docs").status_code == 200
        assert "/v1/events" in httpx.get(f"{relay.url}/openapi.json").json()["paths"]
    finally:
        # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean stop
        assert relay.stop() in (0, -15)
    logs = relay.logs()
    assert '"event": "stopped"' in logs
    assert '"event": "request"' in logs
    for secret in ("e2e-token", "test-api-token", "jane.smith@example.com", "Jane.Smith@example.com"):
        assert secret not in logs


def test_served_relay_without_credentials_is_dry_run_and_says_so(tmp_path: Path) -> None:
    relay = RelayProcess({"RELAY_INGEST_TOKENS": "t"}, tmp_path / "relay.log")
    relay.start()
    try:
        assert httpx.get(f"{relay.url}/readyz").json()["dry_run"] == {"zendesk": True, "yotpo": True}
        # a TLS proxy on the same host (FORWARDED_ALLOW_IPS): redirects keep its scheme
        moved = httpx.get(f"{relay.url}/readyz/", headers={"X-Forwarded-Proto": "https"})
        assert moved.status_code == 307
        assert moved.headers["location"] == f"https://127.0.0.1:{relay.port}/readyz"
    finally:
        relay.stop()
    assert '"event": "dry_run"' in relay.logs()


def test_serve_refuses_a_broken_mapping_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text('destination: zendesk\nwhen: "xdm.eventType =="\nbody: {}\n')
    env = {"RELAY_INGEST_TOKENS": "t", "RELAY_MAPPINGS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{tmp_path / 'broken.yaml'}:2: `when`" in done.stderr


def test_serve_refuses_to_run_open_without_tokens(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "1"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert done.returncode == 2
    assert "RELAY_INGEST_TOKENS" in done.stderr
