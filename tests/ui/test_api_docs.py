"""Swagger UI at /docs, against the relay process: everything it loads comes from the relay,
under the playground's Content-Security-Policy; in Debian's chromium it renders the operations
with every request off the loopback blocked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Route, expect

from tests.e2e.relay_process import RelayProcess
from tests.ui.conftest import VIEWPORT, screenshot

pytestmark = pytest.mark.e2e

LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy")


class References(HTMLParser):
    """Every URL an HTML page makes the browser fetch or link to (src, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script_without_src = tag == "script" and not values.get("src")

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1


def operation(page: Page, method: str, path: str) -> Locator:
    """Swagger UI's block for one operation."""
    summary = page.locator(".opblock-summary-path", has_text=re.compile(f"^{re.escape(path)}$"))
    return page.locator(f".opblock-{method}", has=summary)


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


def test_the_docs_page_references_only_the_relay_and_each_asset_is_served(relay: RelayProcess) -> None:
    page = httpx.get(f"{relay.url}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert re.findall(r"https?://[^\s\"'<>]+", page.text) == []  # no absolute URL at all, not even in text
    found = references(page.text)
    assert found.inline_scripts == 0  # the CSP allows no inline script, and needs none
    assert {".js", ".css"} <= {"." + url.rsplit(".", 1)[-1] for url in found.urls}
    for url in found.urls:
        absolute = urljoin(str(page.url), url)
        assert urlsplit(absolute).netloc == urlsplit(relay.url).netloc, url
        asset = httpx.get(absolute)
        assert asset.status_code == 200, url
        suffix = "." + urlsplit(absolute).path.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].split(";")[0] in CONTENT_TYPES[suffix], url


def test_the_docs_page_has_the_playgrounds_security_headers(relay: RelayProcess) -> None:
    docs = httpx.get(f"{relay.url}/docs")
    ui = httpx.get(f"{relay.url}/ui")
    assert "default-src 'none'" in docs.headers["content-security-policy"]
    for name in SECURITY_HEADERS:
        assert docs.headers[name] == ui.headers[name], name


def test_redoc_and_the_oauth2_redirect_page_are_not_served(relay: RelayProcess) -> None:
    # ReDoc's styles are injected inline, which the CSP refuses; the API has no OAuth2 flow
    for path in ("/redoc", "/docs/oauth2-redirect"):
        assert httpx.get(f"{relay.url}{path}").status_code == 404, path


@pytest.fixture
def docs_page(browser: Browser, relay: RelayProcess) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A fresh tab; every request off the loopback is recorded and aborted, and so is every
    Content-Security-Policy violation and console error."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    elsewhere: list[str] = []
    complaints: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK or route.request.url.startswith("data:"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("blockedbyclient")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            complaints.append(message.text)

    context.route("**/*", only_loopback)
    # the browser's own report of each refusal, whether or not the console shows it
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));"
    )
    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda e: complaints.append(f"page error: {e}"))
    yield page, elsewhere, complaints
    context.close()


def test_swagger_ui_renders_the_operations_from_the_relay_alone(
    docs_page: tuple[Page, list[str], list[str]], relay: RelayProcess
) -> None:
    page, elsewhere, complaints = docs_page
    page.goto(f"{relay.url}/docs")

    ingest = operation(page, "post", "/v1/events")
    expect(ingest).to_be_visible()
    expect(operation(page, "get", "/readyz")).to_be_visible()
    ingest.locator(".opblock-summary").click()  # opening one lays out its parameters and answers
    expect(ingest.locator(".responses-wrapper")).to_contain_text("202")
    # "Try it out" calls the relay from the page, which the CSP allows (connect-src 'self')
    healthz = operation(page, "get", "/healthz")
    healthz.locator(".opblock-summary").click()
    healthz.get_by_role("button", name="Try it out").click()
    healthz.get_by_role("button", name="Execute").click()
    expect(healthz.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
    page.wait_for_load_state("networkidle")
    screenshot(page, "docs-swagger-ui")
    assert elsewhere == []
    assert complaints == []
