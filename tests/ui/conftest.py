"""The relay as a real process, a fake Zendesk, and Debian's chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from tests.e2e.relay_process import ROOT, RelayProcess
from tests.fakes.zendesk import FakeZendesk

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = ROOT / "test-output" / "ui"
INGEST_TOKEN = "ui-ingest-token"
ADMIN_TOKEN = "ui-admin-token"
# A laptop screen
VIEWPORT = {"width": 1366, "height": 900}
# How long an `expect` waits for the page to get there (2 cores shared with other test runs)
expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def zendesk() -> Iterator[FakeZendesk]:
    with FakeZendesk() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_zendesk(zendesk: FakeZendesk) -> Iterator[None]:
    zendesk.reset()
    yield
    zendesk.reset()


@pytest.fixture(scope="module")
def relay(zendesk: FakeZendesk, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    folder = tmp_path_factory.mktemp("ui-relay")
    process = RelayProcess(
        {
            "RELAY_INGEST_TOKENS": INGEST_TOKEN,
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "ZENDESK_BASE_URL": zendesk.base_url,
            "ZENDESK_EMAIL": "agent@example.com",
            "ZENDESK_API_TOKEN": "test-api-token",
        },
        folder / "relay.log",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, relay: RelayProcess) -> Iterator[Page]:
    """A fresh browser tab (empty session storage) on ``/ui``; it must load nothing from
    anywhere but the relay, and raise no script error."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    elsewhere: list[str] = []
    script_errors: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(relay.url) else elsewhere.append(r.url))
    page.on("pageerror", lambda e: script_errors.append(str(e)))
    page.goto(f"{relay.url}/ui")
    yield page
    context.close()
    assert elsewhere == []
    assert script_errors == []


def strict_tab(browser: Browser, relay: RelayProcess, view: str, viewport: dict[str, int]) -> Iterator[Page]:
    """A fresh tab on ``/ui#{view}`` that must load nothing from anywhere but the relay, raise
    no script error and break no CSP rule (for a fixture to yield from)."""
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    problems: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(relay.url) else problems.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:  # chromium reports a refusal here only
            problems.append(message.text)

    page.on("console", console)
    page.goto(f"{relay.url}/ui#{view}")
    yield page
    context.close()
    assert problems == []


def screenshot(page: Page, name: str) -> Path:
    """Save the page as ``test-output/ui/{name}.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
