"""The "Deliveries" view, live: per destination the backlog and its oldest age, deliveries per
minute drawn against the rate limit, the circuit and the last hour's dead letters, refreshed by
the page itself as Zendesk goes down and comes back. A relay of its own (a low circuit threshold,
quick probes) so the open circuit never reaches the other UI tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.relay_process import RelayProcess
from tests.fakes.zendesk import ERROR_BODIES, CannedResponse, FakeZendesk
from tests.load.loadgen import purchase, wait_until
from tests.ui.conftest import ADMIN_TOKEN, INGEST_TOKEN, VIEWPORT, screenshot, strict_tab

pytestmark = pytest.mark.e2e
SHORT_SCREEN = {**VIEWPORT, "height": 560}  # the view is short: no empty half in the screenshot


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
            "RELAY_CIRCUIT_PROBE_SECONDS": "2",
            "RELAY_RETRY_BASE_SECONDS": "0.05",
            "RELAY_RETRY_CAP_SECONDS": "0.2",
            "RELAY_MAX_ATTEMPTS": "100",
        },
        tmp_path / "relay.log",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def page(browser: Browser, relay: RelayProcess) -> Iterator[Page]:
    """A tab on the view; it must load nothing from elsewhere, raise no script error and break
    no CSP rule (the chart is drawn by the page's own script, with no inline style)."""
    yield from strict_tab(browser, relay, "deliveries", SHORT_SCREEN)


def post(relay: RelayProcess, event_id: str, query: str = "") -> httpx.Response:
    return httpx.post(
        f"{relay.url}/v1/events{query}",
        content=purchase(event_id),
        headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
        timeout=20,
    )


def zendesk_circuit(relay: RelayProcess) -> str:
    state: str = httpx.get(f"{relay.url}/readyz", timeout=10).json()["circuits"]["zendesk"]["state"]
    return state


def delivered_in_chart(page: Page) -> int:
    counts: list[str] = page.locator("#deliveries-zendesk rect.bar").evaluate_all(
        "bars => bars.map(b => b.getAttribute('data-count'))"
    )
    return sum(int(c) for c in counts)


def test_the_deliveries_view_follows_backlog_pace_circuit_and_dead_letters(
    page: Page, relay: RelayProcess, fake_zendesk: FakeZendesk
) -> None:
    expect(page.locator("#dv-state")).to_contain_text("Enter the admin token")
    for index in range(4):
        assert post(relay, f"ui-dv-ok-{index}", "?wait=10").json()["results"][0]["status"] == "delivered"
    fake_zendesk.set_default(ERROR_BODIES["errors_array_400"])
    for index in range(2):
        assert post(relay, f"ui-dv-dead-{index}", "?wait=10").json()["results"][0]["status"] == "dead"
    fake_zendesk.set_default(CannedResponse(503, {"error": "down"}))
    for index in range(3):
        assert post(relay, f"ui-dv-wait-{index}").status_code == 202
    assert wait_until(lambda: zendesk_circuit(relay) != "closed", 15)

    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    card = page.locator("#deliveries-zendesk")
    expect(card).to_contain_text("circuit open")
    expect(card.locator('[data-figure="backlog"]')).to_have_text("3 waiting")
    expect(card.locator('[data-figure="dead"]')).to_have_text("2")
    expect(card.locator('[data-figure="dead-note"]')).to_have_text(re.compile(r"^\w+ \u00d7 2$"))
    expect(card.locator('[data-figure="delivered"]')).to_have_text(re.compile(r"^4 \(\d this minute\)$"))
    expect(card.locator('[data-figure="limit"]')).to_contain_text("/ min")
    expect(card.locator("rect.bar")).to_have_count(15)
    expect(card.locator("line.limit")).to_have_count(1)
    expect(card.get_by_role("img")).to_have_attribute(
        "aria-label",
        re.compile(r"^zendesk: 4 delivered in the last 15 minutes, \d this minute so far; the rate limit"),
    )
    screenshot(page, "10-deliveries")

    # Zendesk answers again: the page sees the circuit close and the backlog drain by itself
    fake_zendesk.set_default(None)
    expect(card).to_contain_text("circuit closed", timeout=30_000)
    expect(card.locator('[data-figure="backlog"]')).to_have_text("0 waiting", timeout=30_000)
    assert wait_until(lambda: delivered_in_chart(page) == 7, 15)
