"""Checks on destination base URLs, so configuration cannot point the relay at internal hosts."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from app.settings import ConfigError


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, setting: str) -> str:
    """Return ``url`` if it is https, or http to a loopback address; else ``ConfigError``."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return url
    raise ConfigError(f"{setting} must be an https URL (plain http only to loopback): {url!r}")
