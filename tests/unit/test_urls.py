"""Destination URLs (app/urls.py): no setting and no mapping can aim the relay at an internal host."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.destinations.yotpo import YotpoConfig
from app.destinations.zendesk import ZendeskConfig, ZendeskDestination
from app.problems import Problem
from app.settings import ConfigError
from app.urls import check_base_url, path_segment
from tests.conftest import make_settings
from tests.fakes.zendesk import FakeZendesk

EVENT = {"event": {"source": "shop", "type": "order_completed", "properties": {}}}


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.zendesk.com",
        "https://api.yotpo.com:443",
        "https://8.8.8.8",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:9",
        "http://[::1]:9",
        "https://127.0.0.1",
    ],
)
def test_public_https_and_loopback_http_are_accepted(url: str) -> None:
    assert check_base_url(url, "ZENDESK_BASE_URL") == url


@pytest.mark.parametrize(
    "url",
    [
        "http://acme.zendesk.com",  # plain http off loopback
        "http://127.0.0.1.nip.io",  # a name, not loopback
        "https://10.0.0.5",
        "https://172.16.0.1",
        "https://192.168.1.1:8443",
        "https://169.254.169.254",  # cloud metadata
        "https://100.64.0.1",  # carrier-grade NAT
        "https://0.0.0.0",
        "https://[fd00::1]",
        "https://[fe80::1]",
        "https://[::ffff:10.0.0.1]",  # IPv4-mapped
        "https://167772161",  # 10.0.0.1 as one number
        "https://0x0a.0.0.1",  # hex
        "https://012.0.0.1",  # octal
        "https://10.1",  # short form
        "https://user:pw@acme.zendesk.com",
        "https://acme.zendesk.com@10.0.0.5",
        "https://acme.zendesk.com?x=1",
        "https://acme.zendesk.com#frag",
        "https://acme.zendesk.com:notaport",
        "ftp://acme.zendesk.com",
        "file:///etc/passwd",
        "https://",
        "acme.zendesk.com",
        "",
    ],
)
def test_everything_else_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="ZENDESK_BASE_URL"):
        check_base_url(url, "ZENDESK_BASE_URL")


@pytest.mark.parametrize(
    "subdomain", ["169.254.169.254#", "evil.example/", "a.b", "-acme", "acme-", "x@10.0.0.5", "a" * 64]
)
def test_the_zendesk_subdomain_is_one_dns_label(subdomain: str) -> None:
    with pytest.raises(ConfigError, match="ZENDESK_SUBDOMAIN"):
        ZendeskConfig.from_settings(make_settings(zendesk_subdomain=subdomain))
    assert (
        ZendeskConfig.from_settings(make_settings(zendesk_subdomain="acme-2")).base_url
        == "https://acme-2.zendesk.com"
    )


@pytest.mark.parametrize("setting", ["zendesk_base_url", "yotpo_base_url"])
def test_both_destinations_check_their_base_url(setting: str) -> None:
    config = ZendeskConfig if setting.startswith("zendesk") else YotpoConfig
    with pytest.raises(ConfigError, match=setting.upper()):
        config.from_settings(make_settings(**{setting: "https://169.254.169.254"}))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("../../admin", "..%2F..%2Fadmin"),
        ("a?b#c", "a%3Fb%23c"),
        ("...", "..."),
    ],
)
def test_values_from_data_stay_one_path_segment(value: str, segment: str) -> None:
    assert path_segment(value) == segment


@pytest.mark.parametrize("user_id", ["..", ".", "../../../api/v2/users", "x/../../y", "//10.0.0.5/x"])
def test_a_mapped_id_cannot_move_the_request_off_its_path(fake_zendesk: FakeZendesk, user_id: str) -> None:
    """Over loopback, with the real HTTP client: what arrives is still /api/v2/users/{one segment}/events."""
    values: dict[str, Any] = {"zendesk_base_url": fake_zendesk.base_url, "zendesk_oauth_token": "t0ken-value"}
    destination = ZendeskDestination(ZendeskConfig.from_settings(make_settings(**values)), dry_run=False)
    request, _ = destination.prepare({**EVENT, "profile": {}}, "user_events", {"user_id": user_id})

    async def run() -> None:
        try:
            await destination.send(request)
        except Problem:  # the fake may refuse the id; the path it saw is what matters
            pass
        finally:
            await destination.aclose()

    asyncio.run(run())
    [received] = fake_zendesk.received
    assert received.path == f"/api/v2/users/{path_segment(user_id)}/events"
    prefix, _, rest = received.path.partition("/api/v2/users/")
    assert prefix == "" and rest.count("/") == 1
