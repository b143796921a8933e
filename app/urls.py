"""Checks on destination URLs, so neither configuration nor a mapping can point the relay at
internal hosts: base URLs are https (plain http only to loopback), never to a literal private,
link-local or otherwise non-public address, and path segments filled from data stay segments."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import quote, urlsplit

from app.settings import ConfigError

DNS_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    address = ip_of(host)
    return address is not None and address.is_loopback


def ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a literal host names, also in the legacy IPv4 forms resolvers accept
    (``10.1``, ``0x0a.0.0.1``, ``167772161``); ``None`` for a DNS name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, UnicodeError, ValueError):
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_base_url(url: str, setting: str) -> str:
    """Return ``url`` if it is https to a public host, or http to loopback; else ``ConfigError``.

    A DNS name is taken as configured (it is not resolved here): the rule is about what a
    setting can literally say.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        host = None
    problem = f"{setting} must be an https URL (plain http only to loopback): {url!r}"
    if not host or parts.scheme not in ("https", "http"):
        raise ConfigError(problem)
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError(
            f"{setting} must be a plain base URL, without credentials, query or fragment: {url!r}"
        )
    loopback = is_loopback_host(host)
    if parts.scheme == "http" and not loopback:
        raise ConfigError(problem)
    address = ip_of(host)
    if address is not None and not loopback and not address.is_global:
        raise ConfigError(f"{setting} points at an internal address ({address}): {url!r}")
    return url


def check_subdomain(subdomain: str, setting: str) -> str:
    """Return ``subdomain`` if it is one DNS label (letters, digits, inner hyphens)."""
    if not DNS_LABEL.match(subdomain):
        raise ConfigError(f"{setting} must be a single DNS label such as `mycompany`: {subdomain!r}")
    return subdomain


def path_segment(value: str) -> str:
    """``value`` escaped as one URL path segment: ``/``, ``?``, ``#`` and a bare ``.`` or
    ``..`` (which a client would resolve away) cannot change the path."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")
