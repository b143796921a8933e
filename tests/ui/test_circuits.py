"""The dead-letter view shows each destination's circuit: open while Zendesk answers 503, closed
again once it answers 2xx. A relay of its own (a low threshold, quick probes) so the open
circuit never reaches the other UI tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.relay_process import RelayProcess
from tests.fakes.zendesk import CannedResponse, FakeZendesk
from tests.load.loadgen import purchase, wait_until
from tests.ui.conftest import ADMIN_TOKEN, INGEST_TOKEN, VIEWPORT, screenshot

pytestmark = pytest.mark.e2e


@pytest.fixture
def relay(fake_zendesk: FakeZendesk, tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(
        {
            "RELAY_INGEST_TOKENS": INGEST_TOKEN,
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "ZENDESK_BASE_URL": fake_zendesk.base_url,
            "ZENDESK_EMAIL": "agent@example.com",
            "ZENDESK_API_TOKEN": "test-api-token",
            "RELAY_CIRCUIT_FAILURES": "2",
            "RELAY_CIRCUIT_PROBE_SECONDS": "3",
            "RELAY_RETRY_BASE_SECONDS": "0.05",
            "RELAY_RETRY_CAP_SECONDS": "0.2",
        },
        tmp_path / "relay.log",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def page(browser: Browser, relay: RelayProcess) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda e: script_errors.append(str(e)))
    page.goto(f"{relay.url}/ui#dead-letters")
    yield page
    context.close()
    assert script_errors == []


def zendesk_circuit(relay: RelayProcess) -> str:
    state: str = httpx.get(f"{relay.url}/readyz", timeout=10).json()["circuits"]["zendesk"]["state"]
    return state


def test_the_dead_letter_view_shows_an_open_circuit_and_its_closing(
    page: Page, relay: RelayProcess, fake_zendesk: FakeZendesk
) -> None:
    fake_zendesk.set_default(CannedResponse(503, {"error": "down"}))
    for index in range(3):
        posted = httpx.post(
            f"{relay.url}/v1/events",
            content=purchase(f"ui-circuit-{index}"),
            headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
            timeout=10,
        )
        assert posted.status_code == 202
    assert wait_until(lambda: zendesk_circuit(relay) != "closed", 15)

    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    zendesk = page.locator("#dl-circuits #circuit-zendesk")
    expect(zendesk).to_contain_text("circuit open")
    expect(zendesk).to_contain_text("one probe at a time until one succeeds")
    expect(page.locator("#dl-circuits li")).to_have_count(1)  # Yotpo is dry-run here: it sends nothing
    screenshot(page, "9-circuit-open")

    fake_zendesk.set_default(None)
    assert wait_until(lambda: zendesk_circuit(relay) == "closed", 15)
    page.get_by_role("button", name="Show").click()
    expect(zendesk).to_contain_text("circuit closed")
    expect(zendesk).not_to_contain_text("since")
    assert wait_until(lambda: len(fake_zendesk.accepted) == 3, 15)
