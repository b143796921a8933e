"""The "Trace" view: one Adobe event id in, every delivery the relay made of it out, with its
attempts, the body sent and (asked to verify) whether the fake Zendesk holds the event now."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.conftest import ZENDESK_MAPPINGS
from tests.e2e.relay_process import RelayProcess
from tests.fakes.zendesk import FakeZendesk
from tests.ui.conftest import ADMIN_TOKEN, INGEST_TOKEN, VIEWPORT, screenshot, strict_tab

pytestmark = pytest.mark.e2e

PURCHASE = (ZENDESK_MAPPINGS / "examples" / "purchase.json").read_bytes()
EVENT_ID = json.loads(PURCHASE)["xdm"]["_id"]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def page(browser: Browser, relay: RelayProcess) -> Iterator[Page]:
    """A fresh tab on the view; it must load nothing from elsewhere, raise no script error and
    break no CSP rule."""
    yield from strict_tab(browser, relay, "trace", VIEWPORT)


def search(page: Page, event_id: str, *, verify: bool) -> None:
    page.get_by_label("Adobe event id").fill(event_id)
    page.get_by_label("Verify with Zendesk").set_checked(verify)
    page.get_by_role("button", name="Search").click()


def delivery_card(page: Page) -> Locator:
    return page.locator("#tr-deliveries article", has_text="order-completed → zendesk")


def test_the_trace_view_follows_a_purchase_to_zendesk_and_back(
    page: Page, relay: RelayProcess, zendesk: FakeZendesk
) -> None:
    posted = httpx.post(
        f"{relay.url}/v1/events?wait=10",
        content=PURCHASE,
        headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
        timeout=20,
    )
    assert [r["status"] for r in posted.json()["results"]] == ["delivered"]

    # without the admin token the relay's 401 is shown as its title and detail, not a blank
    search(page, EVENT_ID, verify=True)
    state = page.locator("#tr-state")
    expect(state.get_by_role("alert")).to_contain_text("Missing or invalid bearer token: Send")
    expect(page.locator("#tr-deliveries article")).to_have_count(0)

    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Search").click()
    card = delivery_card(page)
    expect(card.locator("h3 .badge")).to_have_text("delivered")
    expect(card.locator('[data-figure="verified"]')).to_have_text("held by Zendesk")
    expect(card.locator('[data-figure="endpoint"]')).to_have_text("POST /api/v2/user_profiles/events")
    expect(card.locator('[data-figure="attempts"]')).to_have_text("1")
    expect(state).to_have_text(f"1 delivery of {EVENT_ID}, read back from the destinations.")
    [attempt] = card.locator("table.attempts tbody tr").all()
    cells = attempt.locator("td")
    expect(cells).to_have_count(5)
    expect(cells.nth(0)).to_have_text(ISO_UTC)
    expect(cells.nth(1)).to_have_text("delivered")
    expect(cells.nth(2)).to_have_text("ok")
    expect(cells.nth(3)).to_have_text("202")
    expect(cells.nth(4)).to_have_text(re.compile(r"^\d+\.\d$"))
    expect(card.locator(".last-problem")).to_have_count(0)
    assert zendesk.reads, "verifying reads the event back from Zendesk"

    body = card.locator("details", has_text="Body sent")
    expect(body.locator("pre.json")).to_be_hidden()  # folded until asked for
    body.locator("summary").click()
    expect(body.locator("[data-path='event.type']")).to_have_text('    "type": "order_completed",')
    screenshot(page, "trace")

    # Zendesk loses the event: the same search now says so
    assert zendesk.forget_events() == 1
    page.get_by_role("button", name="Search").click()
    expect(card.locator('[data-figure="verified"]')).to_have_text("not held by Zendesk")
    expect(card.locator('[data-figure="verified-note"]')).to_contain_text("never arrived, or was deleted")
    expect(card.locator("h3 .badge")).to_have_text("delivered")  # what the relay did stays the same

    # without verify the card says nothing about what Zendesk holds
    search(page, EVENT_ID, verify=False)
    expect(state).to_have_text(f"1 delivery of {EVENT_ID}.")
    expect(card.locator('[data-figure="endpoint"]')).to_be_visible()
    expect(card.locator('[data-figure="verified"]')).to_have_count(0)

    search(page, "no-such-event-id", verify=True)
    expect(state.get_by_role("alert")).to_have_text(
        "No such resource: The relay holds no delivery of that event id. (not_found)"
    )
    expect(page.locator("#tr-deliveries article")).to_have_count(0)
