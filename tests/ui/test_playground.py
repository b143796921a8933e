"""The playground at /ui in Debian's chromium, against the relay process and a fake Zendesk.

Each state the issue names is saved as a screenshot under test-output/ui/.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import FIXTURES, ZENDESK_MAPPINGS
from tests.fakes.zendesk import ERROR_BODIES, FakeZendesk
from tests.ui.conftest import ADMIN_TOKEN, INGEST_TOKEN, screenshot

pytestmark = pytest.mark.e2e

ORDER_MAPPING = (ZENDESK_MAPPINGS / "zendesk-order-completed.yaml").read_text()
DESCRIPTION = '    description: "Order {{ xdm.commerce.order.purchaseID }}"'
BROKEN_DESCRIPTION = '    description: "Order {{ xdm.commerce.order. }}"'
DESCRIPTION_LINE = ORDER_MAPPING.splitlines().index(DESCRIPTION) + 1


def playground(page: Page) -> Locator:
    return page.get_by_role("region", name="Playground")


def sign_in(page: Page, admin: bool = False) -> None:
    page.get_by_label("Ingest token").fill(INGEST_TOKEN)
    if admin:
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    expect(playground(page).get_by_label("Mapping", exact=True)).to_contain_text("order-completed")


def test_a_sample_payload_shows_the_rendered_zendesk_body(page: Page) -> None:
    sign_in(page)
    page.get_by_label("Sample payload").select_option("purchase.json")

    card = page.locator("#results article", has_text="order-completed → zendesk")
    expect(card).to_contain_text("would send")
    expect(card).to_contain_text("POST /api/v2/user_profiles/events")
    expect(card.locator("[data-path='event.type']")).to_have_text('    "type": "order_completed",')
    expect(card.locator("[data-path='event.properties.total']")).to_contain_text("539.97")
    expect(page.locator("#preview-state")).to_have_text("single payload, 1 event: 1 matching mapping")
    expect(page.get_by_label("Mapping YAML")).to_be_hidden()  # "all mappings": nothing to edit
    expect(page.get_by_label("Adobe payload", exact=False)).to_have_value(
        json.dumps(json.loads((ZENDESK_MAPPINGS / "examples" / "purchase.json").read_text()), indent=2)
    )
    screenshot(page, "1-sample-rendered")


def test_each_validation_problem_sits_next_to_its_field(page: Page) -> None:
    sign_in(page)
    page.get_by_label("Adobe payload", exact=False).fill(
        (FIXTURES / "purchase-without-identity.json").read_text()
    )

    card = page.locator("#results article", has_text="order-completed → zendesk")
    expect(card).to_contain_text("rejected")
    note = card.locator(".note[data-path='profile.identifiers']")
    expect(note).to_contain_text("profile.identifiers: required, an array of 1 to 20")
    # the note is the line right under the field it is about
    assert note.evaluate("n => n.previousElementSibling.dataset.path") == "profile.identifiers"
    screenshot(page, "2-validation-problem")


def test_a_mapping_error_shows_its_line_and_a_fixed_mapping_is_sent_with_wait(
    page: Page, zendesk: FakeZendesk
) -> None:
    sign_in(page)
    playground(page).get_by_label("Mapping", exact=True).select_option("order-completed")
    editor = page.get_by_label("Mapping YAML")
    expect(editor).to_have_value(ORDER_MAPPING)
    page.get_by_label("Sample payload").select_option("purchase.json")
    expect(page.locator("#results")).to_contain_text('"description": "Order ORD-1001"')

    editor.fill(ORDER_MAPPING.replace(DESCRIPTION, BROKEN_DESCRIPTION))
    error = page.locator("#yaml-errors li")
    expect(error).to_contain_text(f"zendesk-order-completed.yaml:{DESCRIPTION_LINE}: body.event.description")
    expect(page.locator("#gutter .bad")).to_have_text(str(DESCRIPTION_LINE))
    expect(page.locator("#draft-state")).to_have_text("(edited, not saved)")
    expect(page.locator("#results .problem")).to_contain_text("mapping_invalid")
    screenshot(page, "3-mapping-error")

    # the error's link selects the broken line; typing over it fixes the mapping
    error.get_by_role("button").click()
    page.keyboard.insert_text(DESCRIPTION)
    expect(error).to_have_count(0)
    expect(editor).to_have_value(ORDER_MAPPING)
    expect(page.locator("#draft-state")).to_have_text("(as served)")
    expect(page.locator("#results")).to_contain_text('"description": "Order ORD-1001"')
    screenshot(page, "4-mapping-fixed")

    page.get_by_role("button", name="Send through order-completed").click()
    sent = page.locator("#send-result article")
    expect(sent.locator(".badge")).to_have_text("delivered")
    expect(sent).to_contain_text('"profile_id"')
    [request] = zendesk.accepted
    assert request.body["event"]["description"] == "Order ORD-1001"
    screenshot(page, "5-delivered")


def test_the_dead_letter_view_replays_one_and_purges_another(page: Page, zendesk: FakeZendesk) -> None:
    sign_in(page, admin=True)
    zendesk.set_default(ERROR_BODIES["errors_array_400"])
    page.get_by_label("Sample payload").select_option("cart-add.json")
    expect(page.locator("#results")).to_contain_text("product-added-to-cart → zendesk")
    page.get_by_label("New event id").check()
    send = page.get_by_role("button", name="Send", exact=True)
    for _ in range(2):
        send.click()
        expect(page.locator("#send-result .badge")).to_have_text("dead")
    expect(page.locator("#send-result")).to_contain_text("StartTimestampNotValid")
    screenshot(page, "6-dead-on-send")
    zendesk.set_default(None)

    page.get_by_role("link", name="Dead letters").click()
    rows = page.locator("#dl-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("destination_rejected")
    first_id, second_id = (r.get_attribute("id")[len("letter-") :] for r in rows.all())  # type: ignore[index]
    page.get_by_role("button", name=f"Details dead letter {first_id}").click()
    expect(page.locator("#dl-detail")).to_contain_text("StartTimestampNotValid")
    expect(page.locator("#dl-detail")).to_contain_text('"type": "product_added_to_cart"')
    screenshot(page, "7-dead-letters")

    page.get_by_role("button", name=f"Replay dead letter {first_id}").click()
    expect(page.locator("#dl-state")).to_contain_text(f"Replayed {first_id}: delivered")
    expect(rows).to_have_count(1)
    assert [r.body["event"]["type"] for r in zendesk.accepted] == ["product_added_to_cart"]
    screenshot(page, "8-replayed")

    page.get_by_role("button", name=f"Purge dead letter {second_id}").click()
    page.get_by_role("button", name=f"Confirm purge of dead letter {second_id}").click()
    expect(page.locator("#dl-state")).to_have_text("No dead letters match these filters.")
    expect(rows).to_have_count(0)


def test_every_control_has_a_label_and_the_page_needs_a_token(page: Page) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                           && !e.textContent.trim())
              .map(e => e.id || e.outerHTML)"""
    )
    assert unlabelled == []
    expect(page.locator("#preview-state")).to_have_text(
        "Cannot list the mappings. Enter an ingest token above."
    )
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    page.get_by_role("link", name="Dead letters").click()
    expect(page.locator("#dl-state")).to_contain_text("Enter the admin token")
