"""``aep-relay trace`` and ``aep-relay erase`` against a real relay process and the fake Zendesk."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES
from tests.e2e.relay_process import RelayProcess
from tests.e2e.test_cli import cli
from tests.fakes.zendesk import FakeZendesk

pytestmark = [pytest.mark.e2e]
TOKEN, ADMIN = "cli-ingest-token", "cli-admin-token"
PURCHASE = (EXAMPLES / "purchase.json").read_bytes()
EVENT_ID = json.loads(PURCHASE)["xdm"]["_id"]


def test_trace_and_erase_from_the_command_line(fake_zendesk: FakeZendesk, tmp_path: Path) -> None:
    env = {
        "RELAY_INGEST_TOKENS": TOKEN,
        "RELAY_ADMIN_TOKEN": ADMIN,
        "ZENDESK_BASE_URL": fake_zendesk.base_url,
        "ZENDESK_EMAIL": "agent@example.com",
        "ZENDESK_API_TOKEN": "test-api-token",
        "RELAY_STORE": f"sqlite:///{tmp_path / 'relay.db'}",
    }
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    try:
        answer = httpx.post(
            f"{relay.url}/v1/events?wait=10", content=PURCHASE, headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
        statuses = {r["destination"]: r["status"] for r in answer["results"]}
        assert statuses["zendesk"] == "delivered"
        admin = {"RELAY_ADMIN_TOKEN": ADMIN}
        traced = cli("trace", EVENT_ID, "--verify", "--url", relay.url, env=admin)
        assert traced.returncode == 0, traced.stdout + traced.stderr
        zendesk = [d for d in json.loads(traced.stdout)["deliveries"] if d["destination"] == "zendesk"]
        assert [(d["status"], d["verified"]) for d in zendesk] == [("delivered", True)]

        refused = cli("trace", EVENT_ID, "--url", relay.url, env={"RELAY_ADMIN_TOKEN": TOKEN})
        assert refused.returncode == 1 and json.loads(refused.stdout)["code"] == "unauthorized"
        assert cli("trace", "never-seen", "--url", relay.url, env=admin).returncode == 1
        assert "RELAY_ADMIN_TOKEN" in cli("trace", EVENT_ID, "--url", relay.url).stderr

        erased = cli("erase", "email:jane.smith@example.com", "--url", relay.url, env=admin)
        assert erased.returncode == 0, erased.stdout + erased.stderr
        report = json.loads(erased.stdout)
        assert report["relay"]["deliveries"] >= 1
        assert [p["result"] for p in report["zendesk"]["profiles_deleted"]] == ["deleted"]
        assert fake_zendesk.profiles == []
        again = json.loads(cli("erase", "email:jane.smith@example.com", "--url", relay.url, env=admin).stdout)
        assert again["relay"]["deliveries"] == 0 and again["zendesk"]["profiles_deleted"] == []
        assert cli("erase", "no-colon", "--url", relay.url, env=admin).returncode == 2
    finally:
        relay.stop()
    assert "jane.smith" not in relay.logs().lower()
