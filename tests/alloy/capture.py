"""Drive Adobe's Web SDK (@adobe/alloy from npm, in Debian's chromium through Playwright) through
a shop visit and keep the bodies it sends to Edge.

The browser resolves ``www.shop.example`` to the loopback shop and every other name (Edge's
``edge.example``, and Adobe's own domains should alloy reach for them) to the loopback fake
Edge, so nothing leaves the machine. ``python -m tests.alloy.capture`` rewrites the saved
captures in ``tests/data/alloy/``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, sync_playwright

from tests.alloy.servers import (
    ALLOY_DIST,
    ORG_ID,
    EdgeRequest,
    FakeEdge,
    alloy_version,
    self_signed_certificate,
    shop_server,
)
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
SAVED = ROOT / "tests" / "data" / "alloy"
SHOP = "http://www.shop.example"
EMAIL = "Jane.Smith@example.com"
CRM_ID = "CRM-0987654321"
LEGACY_ECID = "48213457208765432109876543210987654321"  # in the returning visitor's AMCV_ cookie

EMAIL_IDENTITY = {"Email": [{"id": EMAIL, "authenticatedState": "authenticated", "primary": True}]}
CART_ITEM = {
    "SKU": "SD-64",
    "name": "SD card 64 GB",
    "quantity": 2,
    "priceTotal": 39.98,
    "currencyCode": "USD",
}
CAMERA = {"SKU": "CAM-1", "name": "Camera", "quantity": 1, "priceTotal": 499.99, "currencyCode": "USD"}


@dataclass(frozen=True)
class Step:
    """One page of a visit and the event sent on it (``sendEvent`` options)."""

    name: str  # the saved capture is tests/data/alloy/{name}.json
    path: str
    options: dict[str, Any]


KNOWN_CUSTOMER = (
    Step(
        "01-pageview-identified",
        "/",
        {
            "xdm": {
                "eventType": "web.webpagedetails.pageViews",
                "web": {"webPageDetails": {"name": "home", "pageViews": {"value": 1}}},
                "identityMap": EMAIL_IDENTITY,
            }
        },
    ),
    Step(
        "02-cart-add",  # sent as the page unloads: the beacon to /collect
        "/products/sd-64",
        {
            "xdm": {
                "eventType": "commerce.productListAdds",
                "commerce": {"productListAdds": {"value": 1}, "cart": {"cartID": "cart-7f3a"}},
                "productListItems": [CART_ITEM],
                "identityMap": EMAIL_IDENTITY,
            },
            "documentUnloading": True,
        },
    ),
    Step(
        "03-purchase",
        "/checkout/complete",
        {
            "xdm": {
                "eventType": "commerce.purchases",
                "commerce": {
                    "purchases": {"value": 1},
                    "order": {"purchaseID": "ORD-1001", "priceTotal": 539.97, "currencyCode": "USD"},
                },
                "productListItems": [CAMERA, CART_ITEM],
                "identityMap": {
                    **EMAIL_IDENTITY,
                    "CRMID": [{"id": CRM_ID, "authenticatedState": "authenticated", "primary": False}],
                },
            },
            "data": {"customer": {"name": "Jane Smith", "tier": "gold"}},
        },
    ),
)
ANONYMOUS_RETURNING = (  # a visitor known to the older Visitor ID service (an AMCV_ cookie)
    Step(
        "04-pageview-anonymous-legacy-cookie",
        "/",
        {"xdm": {"eventType": "web.webpagedetails.pageViews", "web": {"webPageDetails": {"name": "home"}}}},
    ),
    Step(
        "05-pageview-anonymous",
        "/pricing",
        {
            "xdm": {
                "eventType": "web.webpagedetails.pageViews",
                "web": {"webPageDetails": {"name": "pricing"}},
            }
        },
    ),
)
VISITS = (KNOWN_CUSTOMER, ANONYMOUS_RETURNING)


@dataclass(frozen=True)
class Capture:
    """What alloy sent for one step."""

    step: Step
    request: EdgeRequest


def missing() -> str | None:
    """Why the capture cannot run here, or ``None``."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)"
    if not (ALLOY_DIST / "alloy.min.js").exists():
        return "tests/alloy/node_modules is missing: `make test` installs it (npm ci in tests/alloy)"
    if shutil.which("openssl") is None:
        return "openssl is missing: `make test` installs it (apt-get install openssl)"
    return None


def capture(folder: Path) -> list[Capture]:
    """Run every visit in a fresh browser profile and return what alloy sent, step by step."""
    cert, key = self_signed_certificate(folder)
    captures: list[Capture] = []
    with shop_server() as shop, FakeEdge(cert, key) as edge, sync_playwright() as driver:
        rules = f"MAP www.shop.example 127.0.0.1:{shop.port}, MAP * 127.0.0.1:{edge.port}"
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"]
        )
        try:
            for visit in VISITS:
                captures += _visit(browser, edge, visit)
        finally:
            browser.close()
    return captures


def _visit(browser: Browser, edge: FakeEdge, steps: tuple[Step, ...]) -> list[Capture]:
    context = browser.new_context(ignore_https_errors=True)  # the fake Edge's own certificate
    errors: list[str] = []
    try:
        if steps is ANONYMOUS_RETURNING:
            _add_legacy_cookie(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        captures: list[Capture] = []
        for step in steps:
            before = len(edge.requests)
            # as if the visitor followed a link from the previous page (alloy sends the referrer)
            page.goto(SHOP + step.path, referer=SHOP + captures[-1].step.path if captures else None)
            page.evaluate("options => window.alloy('sendEvent', options).then(() => true)", step.options)
            sent = edge.wait_for(before + 1)[before:]
            if len(sent) != 1:
                raise AssertionError(f"{step.name}: alloy sent {len(sent)} requests: {sent}")
            captures.append(Capture(step, sent[0]))
    finally:
        context.close()
    if errors:
        raise AssertionError(f"script errors on the shop page: {errors}")
    return captures


def _add_legacy_cookie(context: BrowserContext) -> None:
    """The AMCV_ cookie the Visitor ID service (VisitorAPI.js) leaves, URL-encoded as it writes it."""
    value = f"179643557%7CMCIDTS%7C19845%7CMCMID%7C{LEGACY_ECID}%7CvVersion%7C5.5.0"
    context.add_cookies([{"name": f"AMCV_{ORG_ID}", "value": value, "url": SHOP + "/"}])


def save(captures: list[Capture], folder: Path = SAVED) -> None:
    """Write each capture as ``{name}.json`` (the body as alloy sent it, indented) and
    SOURCES.md saying where they came from."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    for item in captures:
        text = json.dumps(item.request.payload, indent=2, ensure_ascii=False) + "\n"
        (folder / f"{item.step.name}.json").write_text(text)
    rows = "\n".join(
        f"| `{c.step.name}.json` | `{c.request.host}{c.request.path}` | {_describe(c.step)} |"
        for c in captures
    )
    (folder / "SOURCES.md").write_text(SOURCES.format(version=alloy_version(), rows=rows))


def _describe(step: Step) -> str:
    xdm = step.options["xdm"]
    identities = ", ".join(xdm.get("identityMap", {})) or "no identity"
    return f"`{xdm['eventType']}` on `{step.path}` ({identities})"


SOURCES = """\
# Bodies Adobe's Web SDK sent

Captured from `@adobe/alloy` {version} (npm, `tests/alloy/package-lock.json`), the standalone
build loaded by a page in Debian's chromium, by `python -m tests.alloy.capture` (the test
`tests/alloy/test_alloy.py` captures them afresh on every run and compares). Each file is
one request body exactly as alloy sent it to Edge, indented: to the page's `edgeDomain`
(`edge.example`) or, for a visitor's first request, Adobe's third-party id domain (alloy's
default `thirdPartyCookiesEnabled`); the browser resolves both to a loopback fake Edge.
Two visits, each in a fresh browser profile: a customer who signs in (files 01-03), and an
anonymous visitor who carries the older Visitor ID service's `AMCV_` cookie (04-05).

| file | Edge host and path | event |
|---|---|---|
{rows}
"""


def main() -> None:
    reason = missing()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as folder:
        captures = capture(Path(folder))
    save(captures)
    print(f"saved {len(captures)} captures of @adobe/alloy {alloy_version()} in {SAVED.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
